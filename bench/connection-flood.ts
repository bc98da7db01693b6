/**
 * Bench (issue #18): a flood of idle TLS connections against espm's default connection
 * limits (`[server] max_connections_per_address` 256, `max_connections` 1024), from a real
 * `bin/espm` on sandbox backends:
 *
 * 1. idle: the platform's call (`GET /v1/status` on a new TLS connection each, from
 *    127.0.0.1, made by a separate process) — p50 latency; espm's RSS and file descriptors;
 * 2. one address (127.0.1.2) opens `--attempts` TLS connections, `--batch` at a time, and
 *    keeps every one espm accepts (idle, never a request) while the platform calls every
 *    50 ms: accepted, refused, RSS peak, the platform's p50 during the flood vs idle;
 * 3. many addresses (127.0.1.3 …) add connections until `max_connections` refuses them too
 *    (skipped when this process's `ulimit -n` cannot hold them): accepted, refused by reason,
 *    RSS peak, and whether the platform got through;
 * 4. every connection closed: RSS and file descriptors 2 s and 15 s later — by then espm has
 *    given the freed memory back (`[server] release_memory_after`, default 128: `malloc_trim(0)`
 *    5 s after the count settled; its log line's RSS before/after and durations are reported).
 *    `--no-release` sets `release_memory_after = 0`, to compare.
 *
 * Phases 2–4 run `--rounds` times, so a growing RSS would show. The counts come from espm's
 * own `GET /v1/status` (`connections`). With `--results` a section is appended to
 * bench/RESULTS.md.
 *
 *   npm run build && npx tsx bench/connection-flood.ts [--attempts 5000] [--batch 250] [--rounds 3] [--no-release] [--results]
 *
 * Loopback only; bounded by the attempts and rounds.
 *
 * @packageDocumentation
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, readdir, readFile } from 'node:fs/promises';
import https from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Command } from 'commander';
import { CONNECTION_DEFAULTS } from '../src/http/connection-guard.js';
import { Daemon, formatSummary, loadAverage, machine, RESULTS_PATH, round, runAlone, summarize, type BenchResult, type Figure } from './support.js';

/** Options of {@link connectionFloodBench}. */
export interface FloodOptions {
  /** Connection attempts from the one flooding address per round (default 5000). */
  attempts?: number;
  /** Connection attempts in flight at once (default 250). */
  batch?: number;
  /** Rounds of phases 2–4 (default 3). */
  rounds?: number;
  /** Leave `[server] release_memory_after` at its default (true) or set it to 0 (false). */
  release?: boolean;
}

/** espm's log line of one memory release (src/system/malloc-trim.ts). */
interface ReleaseLine {
  rss_before_mb: number;
  rss_after_mb: number;
  gc_ms: number;
  trim_ms: number;
}

/** RSS within this of idle after a flood counts as "back near idle", MB (test/http/connection-limits.test.ts). */
const NEAR_IDLE_MB = 15;

const PLATFORM = '127.0.0.1';
const FLOODER = '127.0.1.2';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** This process's soft limit of open files (`ulimit -n`). */
function openFileLimit(): number {
  const out = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim();
  return out === 'unlimited' ? Infinity : Number(out);
}

/** A TLS connection from `from` (handshake done), or null when espm refused it. */
export function openTls(daemon: Daemon, from: string): Promise<TLSSocket | null> {
  return new Promise((resolve) => {
    const raw = netConnect({ host: '127.0.0.1', port: daemon.port, localAddress: from });
    raw.on('error', () => undefined);
    const socket = tlsConnect({ socket: raw, ca: daemon.certificate, servername: 'localhost' });
    socket.once('secureConnect', () => {
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', () => resolve(null));
    socket.once('close', () => resolve(null));
  });
}

/** `attempts` connections from `from`, `batch` at a time; those espm kept are returned. */
export async function flood(daemon: Daemon, from: string, attempts: number, batch: number): Promise<{ kept: TLSSocket[]; refused: number }> {
  const kept: TLSSocket[] = [];
  let refused = 0;
  for (let done = 0; done < attempts; done += batch) {
    const got = await Promise.all(Array.from({ length: Math.min(batch, attempts - done) }, () => openTls(daemon, from)));
    for (const s of got) {
      if (s === null) refused += 1;
      else kept.push(s);
    }
  }
  return { kept, refused };
}

/** The platform's call: `GET /v1/status` on a new TLS connection; status (0: refused) and ms. */
function platformCall(daemon: Daemon): Promise<{ status: number; ms: number; body: string }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = https.request(
      { host: '127.0.0.1', port: daemon.port, path: '/v1/status', localAddress: PLATFORM, ca: daemon.certificate, servername: 'localhost', agent: false, headers: { authorization: daemon.authorization } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - started) / 1e6, body }));
      },
    );
    req.on('error', () => resolve({ status: 0, ms: Number(process.hrtime.bigint() - started) / 1e6, body: '' }));
    req.end();
  });
}

interface Connections {
  open: number;
  refused: { total: number; per_address_limit: number; total_limit: number; not_allowed: number };
  timed_out: Record<string, number>;
  memory_releases: number;
}

async function connections(daemon: Daemon): Promise<Connections> {
  for (let i = 0; i < 50; i++) {
    const answer = await platformCall(daemon);
    if (answer.status === 200) return (JSON.parse(answer.body) as { connections: Connections }).connections;
    await sleep(100);
  }
  throw new Error('GET /v1/status never answered');
}

async function fds(daemon: Daemon): Promise<number> {
  return (await readdir(`/proc/${daemon.pid}/fd`)).length;
}

/**
 * The platform's calls as a separate process (so the flood's client-side TLS work in this
 * process does not delay them): `GET /v1/status` on a new TLS connection every 50 ms from
 * 127.0.0.1, one JSON line per answer on stdout.
 */
const PLATFORM_LOOP = `
import https from 'node:https';
const [port, authorization] = process.argv.slice(1);
const ca = process.env.ESPM_BENCH_CA;
let running = true;
process.stdin.on('end', () => (running = false));
process.stdin.resume();
while (running) {
  const started = process.hrtime.bigint();
  const line = await new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', port: Number(port), path: '/v1/status', localAddress: '${PLATFORM}', ca, servername: 'localhost', agent: false, headers: { authorization } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6, open: JSON.parse(body).connections?.open ?? 0 }));
    });
    req.on('error', () => resolve({ status: 0, ms: Number(process.hrtime.bigint() - started) / 1e6, open: 0 }));
    req.end();
  });
  process.stdout.write(JSON.stringify(line) + '\\n');
  await new Promise((r) => setTimeout(r, 50));
}
`;

/** Runs `work` while the platform calls every 50 ms (another process) and RSS is sampled every 50 ms. */
async function whilePlatformCalls<T>(daemon: Daemon, work: () => Promise<T>): Promise<{ result: T; latencies: number[]; failed: number; peakMb: number; maxOpen: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', PLATFORM_LOOP, String(daemon.port), daemon.authorization], {
    env: { ...process.env, ESPM_BENCH_CA: daemon.certificate },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  let peakKb = await daemon.rssKb();
  const sampler = setInterval(() => void daemon.rssKb().then((kb) => (peakKb = Math.max(peakKb, kb)), () => undefined), 50);
  // The loop's first answer: it is running.
  while (!out.includes('\n')) await sleep(10);
  const result = await work();
  peakKb = Math.max(peakKb, await daemon.rssKb());
  clearInterval(sampler);
  child.stdin!.end();
  await once(child, 'exit');
  const answers = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { status: number; ms: number; open: number });
  return {
    result,
    latencies: answers.filter((a) => a.status === 200).map((a) => a.ms),
    failed: answers.filter((a) => a.status !== 200).length,
    peakMb: peakKb / 1024,
    maxOpen: Math.max(0, ...answers.map((a) => a.open)),
  };
}

/**
 * Runs the bench.
 *
 * @param options - attempts, batch size, rounds
 * @returns figures and raw lines for RESULTS.md
 */
export async function connectionFloodBench(options: FloodOptions = {}): Promise<BenchResult> {
  const attempts = options.attempts ?? 5000;
  const batch = options.batch ?? 250;
  const rounds = options.rounds ?? 3;
  const release = options.release ?? true;
  const limits = { ...CONNECTION_DEFAULTS, releaseMemoryAfter: release ? CONNECTION_DEFAULTS.releaseMemoryAfter : 0 };
  const fileLimit = openFileLimit();
  const manyAddresses = fileLimit >= limits.maxConnections + 2 * batch + 100;
  const started = Date.now();
  const daemon = await Daemon.start({
    config: { server: { release_memory_after: limits.releaseMemoryAfter }, classifier: { backend: 'sandbox', worker: 'off' }, ca: { backend: 'sandbox' }, log: { level: 'info' } },
  });
  const releaseLines = async (): Promise<ReleaseLine[]> =>
    (await daemon.log())
      .split('\n')
      .filter((l) => l.includes('freed memory released to the system'))
      .map((l) => JSON.parse(l) as ReleaseLine);
  const raw: string[] = [];
  const figures: Figure[] = [];
  const trims: ReleaseLine[] = [];
  try {
    await sleep(2000);
    const quiet = await whilePlatformCalls(daemon, () => sleep(3000));
    const idle = { rssMb: (await daemon.rssKb()) / 1024, fds: await fds(daemon), latency: summarize(quiet.latencies) };
    raw.push(
      `- espm from \`bin/espm\` (sandbox backends, default limits: ${limits.maxConnectionsPerAddress} connections per address, ${limits.maxConnections} in all; first request within ${limits.firstRequestTimeoutMs / 1000} s of the handshake; \`release_memory_after\` ${limits.releaseMemoryAfter}); this process's \`ulimit -n\` ${fileLimit}.`,
      `- Idle: RSS ${round(idle.rssMb)} MB, ${idle.fds} fds; the platform's call (\`GET /v1/status\`, a new TLS connection each, from ${PLATFORM}, in a process of its own during the floods) ${formatSummary(idle.latency)}.`,
    );
    for (let r = 1; r <= rounds; r++) {
      const before = await connections(daemon);
      const one = await whilePlatformCalls(daemon, () => flood(daemon, FLOODER, attempts, batch));
      const afterOne = await connections(daemon);
      const during = summarize(one.latencies);
      raw.push(
        `- Round ${r}, one address (${FLOODER}): ${attempts} attempts, ${batch} at a time: handshakes completed ${one.result.kept.length}, refused at accept ${one.result.refused} (espm counted per_address_limit +${afterOne.refused.per_address_limit - before.refused.per_address_limit}, first_request timeouts +${afterOne.timed_out['first_request']! - before.timed_out['first_request']!}: an idle connection frees its slot after ${limits.firstRequestTimeoutMs / 1000} s); open at once at most ${one.maxOpen} (the platform's own included), ${one.result.kept.filter((s) => !s.destroyed).length} still open at the end; RSS peak ${round(one.peakMb)} MB; the platform during the flood: ${one.latencies.length} answered, ${one.failed} failed, ${formatSummary(during)}.`,
      );
      const held = [...one.result.kept];
      let many: Awaited<ReturnType<typeof whilePlatformCalls<Array<{ kept: TLSSocket[]; refused: number }>>>> | undefined;
      if (manyAddresses) {
        const addresses = Array.from({ length: Math.ceil(limits.maxConnections / limits.maxConnectionsPerAddress) + 1 }, (_, i) => `127.0.1.${3 + i}`);
        many = await whilePlatformCalls(daemon, async () => {
          const results = [];
          for (const from of addresses) results.push(await flood(daemon, from, limits.maxConnectionsPerAddress + 50, batch));
          return results;
        });
        for (const f of many.result) held.push(...f.kept);
        const afterMany = await connections(daemon);
        raw.push(
          `- Round ${r}, many addresses (${addresses[0]} … ${addresses.at(-1)}, ${limits.maxConnectionsPerAddress + 50} attempts each) on top: ${held.length} held in all, espm open ${afterMany.open}; refused total_limit +${afterMany.refused.total_limit - afterOne.refused.total_limit}, per_address_limit +${afterMany.refused.per_address_limit - afterOne.refused.per_address_limit}; RSS peak ${round(many.peakMb)} MB; the platform meanwhile: ${many.latencies.length} answered, ${many.failed} refused (the total is shared: only \`[server] allow\` or a firewall keeps other addresses out).`,
        );
      }
      const releasesBefore = (await releaseLines()).length;
      for (const s of held) s.destroy();
      await sleep(2000);
      const after2 = { rssMb: (await daemon.rssKb()) / 1024, fds: await fds(daemon) };
      await sleep(13_000);
      const after15 = { rssMb: (await daemon.rssKb()) / 1024, fds: await fds(daemon) };
      const released = (await releaseLines()).slice(releasesBefore);
      const counted = (await connections(daemon)).memory_releases;
      raw.push(
        `- Round ${r}, all closed: 2 s later RSS ${round(after2.rssMb)} MB, ${after2.fds} fds; 15 s later RSS ${round(after15.rssMb)} MB, ${after15.fds} fds; memory releases meanwhile ${released.length} (${counted} since start-up)${released
          .map((l) => `: RSS ${l.rss_before_mb} → ${l.rss_after_mb} MB, full GC ${l.gc_ms} ms + malloc_trim(0) ${l.trim_ms} ms`)
          .join('')}.`,
      );
      trims.push(...released);
      if (r === 1 || r === rounds) {
        const suffix = rounds > 1 ? ` (round ${r})` : '';
        figures.push(
          { label: `one address, ${attempts} attempts: accepted (handshakes completed)${suffix}`, value: one.result.kept.length, unit: '', goal: '' },
          { label: `one address: refused at accept${suffix}`, value: one.result.refused, unit: '', goal: '' },
          { label: `one address: its connections open at once, at most${suffix}`, value: one.maxOpen - 1, unit: '', goal: `≤ max_connections_per_address (${limits.maxConnectionsPerAddress})`, met: one.maxOpen - 1 <= limits.maxConnectionsPerAddress },
          { label: `RSS idle → peak (one address${manyAddresses ? `; ${limits.maxConnections} connections in all` : ''})${suffix}`, value: `${round(idle.rssMb)} → ${round(one.peakMb)}${many === undefined ? '' : ` (${round(many.peakMb)})`}`, unit: 'MB', goal: '' },
          {
            label: `RSS 15 s after closing${suffix}`,
            value: `${round(after15.rssMb)} (idle + ${round(after15.rssMb - idle.rssMb)})`,
            unit: 'MB',
            goal: `within ${NEAR_IDLE_MB} MB of idle`,
            met: after15.rssMb - idle.rssMb < NEAR_IDLE_MB,
          },
          { label: `fds idle → 15 s after closing${suffix}`, value: `${idle.fds} → ${after15.fds}`, unit: '', goal: 'back to idle', met: after15.fds <= idle.fds + 1 },
          { label: `the platform's p50 during the one-address flood / idle${suffix}`, value: `${round(during.p50)} / ${round(idle.latency.p50)}`, unit: 'ms', goal: 'every call answered', met: one.failed === 0 },
        );
      }
    }
    if (trims.length > 0) {
      const ms = trims.map((t) => t.trim_ms).sort((a, b) => a - b);
      figures.push({ label: `one malloc_trim(0) at ${round(Math.max(...trims.map((t) => t.rss_before_mb)))} MB RSS at most (${trims.length} releases)`, value: `${ms[0]} – ${ms.at(-1)}`, unit: 'ms', goal: '' });
    }
    const log = await daemon.log();
    const summaries = log.split('\n').filter((l) => l.includes('connections refused or timed out')).length;
    raw.push(`- espm's log: ${summaries} summary lines \`connections refused or timed out before authentication\` for all the refusals above (one per 10 s window at most), ${log.split('\n').length} lines in all.`);
    if (!manyAddresses) raw.push(`- The many-address phase did not run: \`ulimit -n\` ${fileLimit} cannot hold ${limits.maxConnections} connections plus a batch.`);
  } finally {
    await daemon.stop();
  }
  return {
    name: 'connection-flood',
    title: 'Connection flood before authentication (bench/connection-flood.ts, issue #18)',
    command: `npx tsx bench/connection-flood.ts --attempts ${attempts} --batch ${batch} --rounds ${rounds}${release ? '' : ' --no-release'}`,
    figures,
    raw,
    analysis: [],
    wallS: round((Date.now() - started) / 1000),
  };
}

/** Appends a result as its own RESULTS.md section (the same layout as bench/run.ts's). */
async function appendResults(result: BenchResult, host: { text: string }): Promise<void> {
  const lines = [
    '',
    `## ${result.title} — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `- Machine: ${host.text} at the start; ${loadAverage()} at the end.`,
    `- Command: \`npm run build && ${result.command}\` (${result.wallS} s).`,
    '',
    '| figure | value | goal | verdict |',
    '|---|---|---|---|',
    ...result.figures.map((f) => `| ${f.label} | ${f.value}${f.unit === '' ? '' : ` ${f.unit}`} | ${f.goal} | ${f.met === undefined ? '' : f.met ? 'met' : '**missed**'} |`),
    '',
    ...result.raw,
    '',
  ];
  const before = await readFile(RESULTS_PATH, 'utf8').catch(() => '');
  await appendFile(RESULTS_PATH, `${before.endsWith('\n') || before === '' ? '' : '\n'}${lines.join('\n')}`);
}

runAlone(import.meta.url, async () => {
  const opts = new Command()
    .option('--attempts <n>', 'attempts from the flooding address per round', '5000')
    .option('--batch <n>', 'attempts in flight at once', '250')
    .option('--rounds <n>', 'rounds', '3')
    .option('--no-release', 'set [server] release_memory_after = 0 (freed memory left to glibc)')
    .option('--results', 'append a section to bench/RESULTS.md')
    .parse()
    .opts<{ attempts: string; batch: string; rounds: string; release: boolean; results?: boolean }>();
  const host = await machine();
  const result = await connectionFloodBench({ attempts: Number(opts.attempts), batch: Number(opts.batch), rounds: Number(opts.rounds), release: opts.release });
  if (opts.results === true) await appendResults(result, host);
  return result;
});
