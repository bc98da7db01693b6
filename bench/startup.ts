/**
 * Bench 4 (issue #8): start-up and memory. The time from spawning `bin/espm` (`node bin/espm
 * -c espm.ini`) to its first answered `GET /healthz` (polled every 5 ms over TLS; goal ≤ 0.5 s,
 * median of 10 starts after one unmeasured start), and its idle RSS 2 s after that answer
 * (`/proc/<pid>/status` VmRSS; goal ≤ 80 MB). Sandbox backends (`[classifier] worker = off`),
 * so no console or Puppet is needed; log level info to a file.
 *
 * To show where start-up time and memory go, the same run also measures a bare `node` (exit
 * time and idle RSS), `node` importing espm's CLI module (dist/cli/espm.js, i.e. every module
 * the daemon loads) without starting it, and the RSS each top-level dependency adds to a bare
 * `node` on its own.
 *
 *   npm run build && npx tsx bench/startup.ts [--starts 10]
 *
 * Loopback only; bounded by the number of starts.
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { setUpDir } from '../test/support/espm.js';
import { Daemon, ESPM_NODE_FLAGS, msSince, ROOT, round, runAlone, summarize, formatSummary, type BenchResult } from './support.js';

/** Options of {@link startupBench}. */
export interface StartupOptions {
  /** Measured starts (default 10). */
  starts?: number;
  /** Idle time after the first answer before RSS is read, ms (default 2000). */
  idleMs?: number;
  /** Goal for the median start, ms (default 500). */
  goalMs?: number;
  /** Goal for the idle RSS, MB (default 80). */
  goalMb?: number;
}

/** What {@link nodeProbe} saw. */
interface Probe {
  /** VmRSS 1 s after the code ran, kB. */
  rssKb: number;
  /** Spawn → the code ran, ms. */
  readyMs: number;
  /** `process.memoryUsage()` at the same moment, MB. */
  memory: Record<string, number>;
}

/**
 * Runs `node [flags] --input-type=module -e <code>`; 1 s after the code ran, reads its RSS and
 * `process.memoryUsage()`, then kills it.
 */
async function nodeProbe(code: string, flags: string[] = []): Promise<Probe> {
  const started = process.hrtime.bigint();
  const report = "setTimeout(() => { const m = process.memoryUsage(); console.log('mem ' + JSON.stringify(m)); setTimeout(() => {}, 60000); }, 1000);";
  const child = spawn(process.execPath, [...flags, '--input-type=module', '-e', `${code}\nconsole.log('ready');\n${report}`], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let readyMs = NaN;
  let output = '';
  const memory = await new Promise<Record<string, number>>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (Number.isNaN(readyMs) && output.includes('ready')) readyMs = msSince(started);
      const m = /mem (\{.*\})/.exec(output);
      if (m) resolve(JSON.parse(m[1]!) as Record<string, number>);
    });
    child.once('exit', (c) => reject(new Error(`node probe exited ${c}: ${code}`)));
  });
  child.kill('SIGKILL');
  await once(child, 'exit').catch(() => undefined);
  const mb = Object.fromEntries(Object.entries(memory).map(([k, v]) => [k, round(v / 2 ** 20, 1)]));
  return { rssKb: (memory['rss'] ?? NaN) / 1024, readyMs, memory: mb };
}

/** espm's runtime dependencies (package.json `dependencies`). */
async function dependencies(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  return Object.keys(pkg.dependencies);
}

/**
 * Runs bench 4.
 *
 * @param options - number of starts, idle time, goals
 * @returns figures (median start-up, idle RSS) vs goals, the raw numbers, and where the time
 *   and memory go when a goal is missed
 */
export async function startupBench(options: StartupOptions = {}): Promise<BenchResult> {
  const starts = options.starts ?? 10;
  const idleMs = options.idleMs ?? 2000;
  const goalMs = options.goalMs ?? 500;
  const goalMb = options.goalMb ?? 80;
  const started = Date.now();
  const result: BenchResult = {
    name: 'startup',
    title: '4. Start-up and idle memory',
    command: `npx tsx bench/startup.ts --starts ${starts}`,
    figures: [],
    raw: [],
    analysis: [],
  };
  const setup = await setUpDir();
  const config = {
    classifier: { backend: 'sandbox', worker: 'off' },
    ca: { backend: 'sandbox' },
    log: { level: 'info' },
  };
  /** `n` measured starts (after one unmeasured start) with these node flags in place of bin/espm's own. */
  const measureStarts = async (n: number, espmNodeFlags: readonly string[]): Promise<{ startMs: number[]; rssKb: number[]; listeningMs: number[] }> => {
    const out = { startMs: [] as number[], rssKb: [] as number[], listeningMs: [] as number[] };
    for (let i = 0; i <= n; i++) {
      const spawnedAt = Date.now();
      const daemon = await Daemon.start({ config, setup, espmNodeFlags: [...espmNodeFlags] });
      await new Promise((r) => setTimeout(r, idleMs));
      const rss = await daemon.rssKb();
      const log = await daemon.log();
      await daemon.stop();
      // The 'listening' line's time (ms since the epoch) against the spawn time.
      const listening = log
        .split('\n')
        .filter((l) => l.includes('"listening"'))
        .map((l) => (JSON.parse(l) as { time: number }).time)
        .at(-1);
      if (i === 0) continue; // the first start (sandbox seeding, cold caches) is not measured
      out.startMs.push(daemon.startMs);
      out.rssKb.push(rss);
      if (listening !== undefined) out.listeningMs.push(listening - spawnedAt);
    }
    return out;
  };
  let measured: Awaited<ReturnType<typeof measureStarts>>;
  /** The baseline of the same run: bin/espm without its node flags (V8's default young generation). */
  let unflagged: Awaited<ReturnType<typeof measureStarts>>;
  const flags = ESPM_NODE_FLAGS.join(' ');
  try {
    measured = await measureStarts(starts, ESPM_NODE_FLAGS);
    unflagged = await measureStarts(3, []);
  } finally {
    await setup.remove();
  }
  const { startMs, rssKb, listeningMs } = measured;
  const start = summarize(startMs);
  const rss = summarize(rssKb.map((k) => k / 1024));
  result.figures.push(
    { label: `spawn → first answered /healthz, median of ${starts}`, value: Math.round(start.p50), unit: 'ms', goal: `≤ ${goalMs} ms`, met: start.p50 <= goalMs },
    { label: `idle RSS ${idleMs / 1000} s after start, median of ${starts}`, value: round(rss.p50, 1), unit: 'MB', goal: `≤ ${goalMb} MB`, met: rss.p50 <= goalMb },
  );

  // Where time and memory go: bare node, node + espm's modules, each dependency alone.
  const bare = await nodeProbe('');
  const cli = pathToFileURL(join(ROOT, 'dist', 'cli', 'espm.js')).href;
  const loaded = await nodeProbe(`await import(${JSON.stringify(cli)});`, [...ESPM_NODE_FLAGS]);
  const loadedUnflagged = await nodeProbe(`await import(${JSON.stringify(cli)});`);
  const plain = { start: summarize(unflagged.startMs), rss: summarize(unflagged.rssKb.map((k) => k / 1024)) };
  const deps: Array<{ name: string; rssKb: number; readyMs: number }> = [];
  for (const name of await dependencies()) {
    const p = await nodeProbe(`await import(${JSON.stringify(name)});`).catch(() => undefined);
    if (p !== undefined) deps.push({ name, ...p });
  }
  deps.sort((a, b) => b.rssKb - a.rssKb);
  const mb = (kb: number): number => round(kb / 1024, 1);

  result.raw.push(
    `- espm from \`bin/espm\` (node flags of its shebang: \`${flags}\`) on sandbox backends (\`worker = off\`), log level info to a file, one state directory reused; ${starts} measured starts after one unmeasured start.`,
    `- Spawn → first answered \`/healthz\` (TLS, polled every 5 ms): ${formatSummary(start)}; raw: ${startMs.map((m) => Math.round(m)).join(' ')} ms.`,
    `- Spawn → espm's own \`listening\` log line: ${formatSummary(summarize(listeningMs))}.`,
    `- Idle RSS ${idleMs / 1000} s after the first answer: ${formatSummary(rss, 'MB')}; raw: ${rssKb.map((k) => mb(k)).join(' ')} MB.`,
    `- Baseline of the same run, bin/espm WITHOUT \`${flags}\` (V8's default young generation), 3 starts: idle RSS p50 ${round(plain.rss.p50, 1)} MB (raw ${unflagged.rssKb.map((k) => mb(k)).join(' ')}), start-up p50 ${Math.round(plain.start.p50)} ms; importing dist/cli/espm.js without them: ${mb(loadedUnflagged.rssKb)} MB (heap ${loadedUnflagged.memory['heapTotal']} MB allocated). Lazily loaded since issue #8: node-forge (sandbox CA, puppetserver-api CSRs), pino-pretty (\`[log] format = text\`); since issue #19: undici (the Puppet HTTPS client, at its first request).`,
    `- For comparison: bare \`node\` is ready in ${Math.round(bare.readyMs)} ms at ${mb(bare.rssKb)} MB RSS (heap ${bare.memory['heapTotal']} MB allocated, ${bare.memory['heapUsed']} used); \`node ${flags}\` importing dist/cli/espm.js (every module the daemon loads, nothing started) in ${Math.round(loaded.readyMs)} ms at ${mb(loaded.rssKb)} MB (heap ${loaded.memory['heapTotal']} MB allocated, ${loaded.memory['heapUsed']} used, external ${loaded.memory['external']}).`,
    `- RSS above a bare node's of each runtime dependency imported alone (MB; import time ms): ${deps.map((d) => `${d.name} +${mb(d.rssKb - bare.rssKb)} (${Math.max(0, Math.round(d.readyMs - bare.readyMs))} ms)`).join(', ')} (import times are differences of single runs: noisy).`,
  );
  if (start.p50 > goalMs) {
    result.analysis.push(
      `- Start-up goal missed: of the median ${Math.round(start.p50)} ms, Node itself takes ≈ ${Math.round(bare.readyMs)} ms and loading espm's modules ≈ ${Math.round(loaded.readyMs - bare.readyMs)} ms more; the rest (${Math.round(start.p50 - loaded.readyMs)} ms) is config, TLS context, ledger, listen and the first TLS handshake. What would close it: load rarely used modules lazily (the heaviest imports above), or a Node compile cache / snapshot.`,
    );
  }
  if (rss.p50 > goalMb) {
    result.analysis.push(
      `- Memory goal missed: a bare Node already holds ${mb(bare.rssKb)} MB; espm's modules bring it to ${mb(loaded.rssKb)} MB before anything starts (V8 heap ${loaded.memory['heapTotal']} MB allocated of which ${loaded.memory['heapUsed']} MB used; the rest is code and Node's own); the running daemon idles at ${round(rss.p50, 1)} MB. Heaviest imports alone: ${deps
        .slice(0, 5)
        .map((d) => `${d.name} +${mb(d.rssKb - bare.rssKb)} MB`)
        .join(', ')} (they share Node's base, so they do not add up). What would close it: fewer or lighter runtime dependencies on the daemon's path, or a smaller old generation.`,
    );
  }
  result.analysis.push(
    `- The young generation: \`${flags}\` (bin/espm's shebang) keeps it small; without it the daemon idled at ${round(plain.rss.p50, 1)} MB in this run (${round(plain.rss.p50 - rss.p50, 1)} MB more). It costs more frequent scavenges under load: the discovery bench (2.) measures its cached answers/s with the same flags.`,
  );
  result.wallS = round((Date.now() - started) / 1000);
  return result;
}

runAlone(import.meta.url, async () => {
  const o = new Command('startup').option('--starts <n>', 'measured starts', '10').parse().opts<{ starts: string }>();
  return startupBench({ starts: Number(o.starts) });
});
