// Diagnostic preload for bench/flood-memory.ts (never loaded by espm itself): on SIGUSR2 the
// daemon appends one JSON line to $ESPM_PROBE_OUT with process.memoryUsage() and V8's heap
// spaces (MB), before and — with --expose-gc — after two forced full GCs.
import { appendFileSync } from 'node:fs';
import v8 from 'node:v8';

const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
function snapshot() {
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, mb(s.physical_space_size)]));
  return { rss: mb(m.rss), heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers), spaces };
}
process.on('SIGUSR2', () => {
  const before = snapshot();
  let after;
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
    after = snapshot();
  }
  appendFileSync(process.env.ESPM_PROBE_OUT, `${JSON.stringify({ before, after })}\n`);
});
