/**
 * Diagnostic (issue #18): where espm's RSS sits after a flood of idle TLS connections. A real
 * `bin/espm` (sandbox backends) started with `--expose-gc` and bench/flood-memory-probe.mjs;
 * the flood of bench/connection-flood.ts (one address 5000 attempts, then five addresses
 * 306 each: ≈ 1000 connections held), all closed, and 15 s later:
 *
 * - `process.memoryUsage()` before and after two forced full GCs (V8 heap, external, array
 *   buffers) — what JavaScript and V8 still hold;
 * - `/proc/<pid>/smaps` split into the brk heap (glibc's main malloc arena), other anonymous
 *   mappings (V8's pages, thread arenas, stacks) and file mappings (node and its libraries);
 * - with `--trim`: glibc's own `malloc_stats()` (bytes the allocator holds vs bytes in use,
 *   per arena; printed to espm's stderr, i.e. its log) and the RSS before and after a
 *   `malloc_trim(0)`, both called in espm by `gdb -p` (needs gdb and ptrace rights) — if the
 *   trim brings RSS back to idle, nothing live holds the memory: the allocator does.
 *
 * espm releases that memory itself 5 s after each flood (`[server] release_memory_after`, on by
 * default: a full GC and `malloc_trim(0)`); its log lines (RSS before/after, durations) are
 * printed after each round. `--no-release` sets `release_memory_after = 0`, to see what glibc
 * alone keeps.
 *
 * The environment is passed on to espm, so glibc tunables can be compared:
 *
 *   npm run build && [MALLOC_ARENA_MAX=2 | MALLOC_MMAP_THRESHOLD_=8192 …] npx tsx bench/flood-memory.ts [--rounds 1] [--trim] [--no-release]
 *
 * Prints its figures; writes nothing to RESULTS.md. Loopback only.
 *
 * @packageDocumentation
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { flood, openTls } from './connection-flood.js';
import { Daemon, ROOT } from './support.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resident MB of `/proc/<pid>/smaps` by kind of mapping. */
async function smaps(pid: number): Promise<{ total: number; brkHeap: number; anon: number; file: number }> {
  const maps: Array<{ path: string; rssKb: number }> = [];
  for (const line of (await readFile(`/proc/${pid}/smaps`, 'utf8')).split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header !== null) maps.push({ path: header[1] ?? '', rssKb: 0 });
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) maps.at(-1)!.rssKb = Number(rss[1]);
  }
  const mb = (pick: (path: string) => boolean): number => Math.round(maps.filter((m) => pick(m.path)).reduce((a, m) => a + m.rssKb, 0) / 102.4) / 10;
  return { total: mb(() => true), brkHeap: mb((p) => p === '[heap]'), anon: mb((p) => p === ''), file: mb((p) => p.startsWith('/')) };
}

/** Prints the probe's figures (SIGUSR2 to espm), the smaps split, fds and threads. */
async function report(daemon: Daemon, probeOut: string, tag: string): Promise<void> {
  const vmRss = (await daemon.rssKb()) / 1024;
  process.kill(daemon.pid, 'SIGUSR2');
  await sleep(1500);
  const probe = JSON.parse((await readFile(probeOut, 'utf8')).trim().split('\n').at(-1)!) as Record<'before' | 'after', Record<string, number>>;
  const line = (p: Record<string, number>): string => `rss ${p['rss']} heapTotal ${p['heapTotal']} heapUsed ${p['heapUsed']} external ${p['external']} arrayBuffers ${p['arrayBuffers']}`;
  const sm = await smaps(daemon.pid);
  console.log(`${tag}: VmRSS ${vmRss.toFixed(1)} MB, ${(await readdir(`/proc/${daemon.pid}/fd`)).length} fds, ${(await readdir(`/proc/${daemon.pid}/task`)).length} threads`);
  console.log(`  memoryUsage, MB: ${line(probe.before)}; after forced GC: ${line(probe.after)}`);
  console.log(`  smaps after GC, MB: total ${sm.total} = brk heap (glibc main arena) ${sm.brkHeap} + other anonymous ${sm.anon} + files ${sm.file}`);
}

/** Calls `malloc_stats()` and `malloc_trim(0)` inside espm through gdb; prints the effect. */
async function trim(daemon: Daemon): Promise<void> {
  const before = (await daemon.rssKb()) / 1024;
  execFileSync('gdb', ['-p', String(daemon.pid), '-batch', '-ex', 'call (void)malloc_stats()', '-ex', 'call (int)malloc_trim((unsigned long)0)', '-ex', 'detach'], { stdio: 'ignore', timeout: 60_000 });
  await sleep(300);
  console.log(`malloc_trim(0) in espm: RSS ${before.toFixed(1)} → ${((await daemon.rssKb()) / 1024).toFixed(1)} MB`);
  const stats = (await daemon.log()).split('\n').filter((l) => /^(Arena \d+:|Total|system bytes|in use bytes)/.test(l));
  console.log(`  malloc_stats() before the trim: ${stats.join(' ').replace(/\s+/g, ' ')}`);
}

const opts = new Command()
  .option('--rounds <n>', 'floods, each followed by the measurement', '1')
  .option('--trim', 'also malloc_stats() and malloc_trim(0) in espm through gdb')
  .option('--no-release', 'set [server] release_memory_after = 0 (espm leaves freed memory to glibc)')
  .parse()
  .opts<{ rounds: string; trim?: boolean; release: boolean }>();
// Where the probe in espm writes (espm inherits this process's environment).
const probeOut = join(tmpdir(), `espm-flood-memory-${process.pid}.jsonl`);
process.env['ESPM_PROBE_OUT'] = probeOut;
await writeFile(probeOut, '');
const daemon = await Daemon.start({
  nodeArgs: ['--expose-gc', '--import', join(ROOT, 'bench', 'flood-memory-probe.mjs')],
  config: {
    ...(opts.release ? {} : { server: { release_memory_after: 0 } }),
    classifier: { backend: 'sandbox', worker: 'off' },
    ca: { backend: 'sandbox' },
    log: { level: 'info' },
  },
});
/** espm's `freed memory released to the system` lines so far. */
const releases = async (): Promise<string[]> => (await daemon.log()).split('\n').filter((l) => l.includes('freed memory released to the system'));
try {
  console.log(`glibc tunables in espm's environment: ${Object.keys(process.env).filter((k) => k.startsWith('MALLOC_') || k === 'GLIBC_TUNABLES').map((k) => `${k}=${process.env[k]}`).join(' ') || 'none'}`);
  await sleep(2000);
  for (let i = 0; i < 20; i++) (await openTls(daemon, '127.0.0.1'))?.destroy();
  await sleep(1000);
  await report(daemon, probeOut, 'idle');
  for (let r = 1; r <= Number(opts.rounds); r++) {
    const { kept: held } = await flood(daemon, '127.0.1.2', 5000, 250);
    for (let i = 0; i < 5; i++) held.push(...(await flood(daemon, `127.0.1.${3 + i}`, 306, 250)).kept);
    console.log(`round ${r}: ${held.filter((s) => !s.destroyed).length} connections held, RSS ${((await daemon.rssKb()) / 1024).toFixed(1)} MB`);
    for (const s of held) s.destroy();
    await sleep(15_000);
    await report(daemon, probeOut, `round ${r}, 15 s after closing`);
    console.log(`  espm's memory releases so far: ${(await releases()).map((l) => { const j = JSON.parse(l) as Record<string, number>; return `RSS ${j['rss_before_mb']} → ${j['rss_after_mb']} MB (GC ${j['gc_ms']} ms, trim ${j['trim_ms']} ms)`; }).join('; ') || 'none'}`);
  }
  if (opts.trim === true) {
    await trim(daemon);
    await report(daemon, probeOut, 'after malloc_trim(0)');
  }
} finally {
  await daemon.stop();
  await rm(probeOut, { force: true });
}
