/**
 * Shared pieces of the benchmarks (issue #8): an espm daemon spawned from `bin/espm` (a real
 * process, so its latency, RSS and CPU are its own), a keep-alive HTTPS client pinned to its
 * certificate, percentiles, the machine's description, and a summary of a V8 CPU profile.
 * Loopback only. Not a benchmark itself.
 *
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, closeSync, statSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setUpDir, type SetUpDir } from '../test/support/espm.js';
import { freePort } from '../test/support/net.js';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** bench/RESULTS.md */
export const RESULTS_PATH = join(ROOT, 'bench', 'RESULTS.md');

/** One figure of a benchmark, printed next to its goal. */
export interface Figure {
  /** What it is, e.g. `list: espm p50 / direct p50`. */
  label: string;
  /** The measured value (already rounded for display). */
  value: number | string;
  /** Unit, e.g. `×`, `ms`, `/s`, `MB`; '' for none. */
  unit: string;
  /** The goal as text, e.g. `≤ 1.10`; '' when the figure is informational. */
  goal: string;
  /** Whether the goal is met; undefined for informational figures. */
  met?: boolean;
}

/** What one benchmark returns to the runner. */
export interface BenchResult {
  /** Short name, e.g. `overhead`. */
  name: string;
  /** Section title, e.g. `1. Overhead vs the backend command run directly`. */
  title: string;
  /** The command that runs it alone. */
  command: string;
  /** Figures with goals. */
  figures: Figure[];
  /** Markdown lines with the raw numbers (p50/p99, counts, samples) for RESULTS.md. */
  raw: string[];
  /** Where a missed goal's time goes and what would close it (markdown lines). */
  analysis: string[];
  /** Set when the bench did not run (e.g. puppetserver not installed). */
  skipped?: string;
  /** Wall time of the bench, s. */
  wallS?: number;
}

/** Order statistics of a sample, ms. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Rounds to `digits` decimals. */
export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Order statistics of `values` (any order). */
export function summarize(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { n: s.length, min: s[0] ?? NaN, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), max: s[s.length - 1] ?? NaN, mean };
}

/** `n=200 p50 12.3 p90 … p99 … max … mean …` (ms, one decimal). */
export function formatSummary(s: Summary, unit = 'ms'): string {
  return `n=${s.n} min ${round(s.min)} / p50 ${round(s.p50)} / p90 ${round(s.p90)} / p99 ${round(s.p99)} / max ${round(s.max)} / mean ${round(s.mean)} ${unit}`;
}

/** Now on the monotonic clock, µs (comparable with a V8 CPU profile's sample times). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Milliseconds since `start` (a `process.hrtime.bigint()`), with µs resolution. */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The machine, for RESULTS.md: cores, memory, OS, Node, load average now. */
export async function machine(): Promise<{ text: string; cores: number; load: string }> {
  const os = (await readFile('/etc/os-release', 'utf8').catch(() => '')).match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? process.platform;
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const cores = cpus().length;
  return {
    text: `${cores} cores (${cpus()[0]?.model.trim() ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, ${os}, Node ${process.version}, load average ${load}`,
    cores,
    load,
  };
}

/** Load average (1, 5, 15 min) as text. */
export function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/**
 * Refuses to run against a missing build (bin/espm runs dist/); warns when a source file is
 * newer than the build.
 *
 * @throws Error when dist/cli/espm.js does not exist
 */
export function assertBuilt(): void {
  const entry = join(ROOT, 'dist', 'cli', 'espm.js');
  if (!existsSync(entry)) throw new Error('dist/ is missing: run `npm run build` first (bin/espm runs dist/)');
  const built = statSync(entry).mtimeMs;
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)),
    );
  if (newest(join(ROOT, 'src')) > built + 1000) console.warn('warning: src/ is newer than dist/: run `npm run build` to measure the current code');
}

/** An answer of espm. */
export interface Answer {
  status: number;
  body: string;
  /** Client-side latency, ms. */
  ms: number;
}

/** A keep-alive HTTPS client of one espm, pinned to its certificate. */
export class EspmClient {
  readonly agent: https.Agent;

  /**
   * @param port - espm's port on 127.0.0.1
   * @param ca - espm's certificate (PEM), the only one trusted
   * @param authorization - `Bearer <psk>`
   * @param agentOptions - e.g. `{ maxSockets: 32 }`; keep-alive is always on
   */
  constructor(
    readonly port: number,
    readonly ca: string,
    private readonly authorization: string,
    agentOptions: https.AgentOptions = {},
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 8, ...agentOptions, ca, servername: 'localhost' });
  }

  /**
   * One request; resolves with status, body and latency (never rejects on an HTTP status).
   *
   * @param method - GET, POST, DELETE
   * @param path - e.g. `/v1/groups?refresh=true`
   * @param body - JSON body (POST)
   * @param auth - send the PSK (default true)
   */
  request(method: string, path: string, body?: unknown, auth = true): Promise<Answer> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (auth) headers['Authorization'] = this.authorization;
    if (text !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(text));
    }
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: this.port, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: msSince(started) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(text);
    });
  }

  /** Closes the idle connections. */
  close(): void {
    this.agent.destroy();
  }
}

/** Options of {@link startDaemon}. */
export interface DaemonOptions {
  /** espm.ini changes, section → key → value (on top of espm_setup's defaults). */
  config: Record<string, Record<string, string | number | boolean>>;
  /** Node flags added to bin/espm's own ({@link ESPM_NODE_FLAGS}), e.g. `['--cpu-prof', '--cpu-prof-dir', dir]`. */
  nodeArgs?: string[];
  /** Replace bin/espm's own node flags (e.g. `[]` to measure without them); default {@link ESPM_NODE_FLAGS}. */
  espmNodeFlags?: string[];
  /** Reuse a set-up directory (kept at stop). */
  setup?: SetUpDir;
  /** Wait for this text in the log before resolving (e.g. `console found`). */
  waitForLog?: string;
}

/**
 * The node flags of bin/espm's shebang (`#!/usr/bin/env -S node FLAGS`): what an init system
 * running `/usr/local/bin/espm` gets. The benches spawn `process.execPath FLAGS bin/espm`, i.e.
 * the same flags with this very node.
 */
export const ESPM_NODE_FLAGS: readonly string[] = readFileSync(join(ROOT, 'bin', 'espm'), 'utf8')
  .split('\n', 1)[0]!
  .replace(/^#!\S*env\s+(?:-S\s+)?node\b/, '')
  .trim()
  .split(/\s+/)
  .filter((flag) => flag !== '');

/** An espm daemon: `node FLAGS bin/espm -c espm.ini` (FLAGS: {@link ESPM_NODE_FLAGS}), stdout to a log file. */
export class Daemon {
  private exited: Promise<number | null>;

  private constructor(
    readonly process: ChildProcess,
    readonly setup: SetUpDir,
    readonly port: number,
    readonly logPath: string,
    private readonly ownSetup: boolean,
    /** ms from spawn to the first answered /healthz */
    readonly startMs: number,
  ) {
    this.exited = once(process, 'exit').then(([code]) => code as number | null);
  }

  /** The daemon's pid. */
  get pid(): number {
    return this.process.pid!;
  }

  /** The daemon's certificate (PEM). */
  get certificate(): string {
    return this.setup.plan.certificate;
  }

  /** `Bearer <psk>` */
  get authorization(): string {
    return `Bearer ${this.setup.plan.psk}`;
  }

  /** A new keep-alive client of this daemon. */
  client(agentOptions: https.AgentOptions = {}): EspmClient {
    return new EspmClient(this.port, this.certificate, this.authorization, agentOptions);
  }

  /** The daemon's log so far. */
  log(): Promise<string> {
    return readFile(this.logPath, 'utf8').catch(() => '');
  }

  /** Resident set size, kB (/proc/<pid>/status VmRSS). */
  async rssKb(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  }

  /** CPU time used so far (user + system), ms (/proc/<pid>/stat). */
  async cpuMs(): Promise<number> {
    const stat = await readFile(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at 100 Hz
  }

  /**
   * Spawns espm with the given config on a free port and waits for its first answered
   * `/healthz` (and, optionally, a log line).
   *
   * @throws Error when it exits or does not answer within 30 s (with the log's tail)
   */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const setup = options.setup ?? (await setUpDir());
    const port = await freePort();
    await setup.editConfig({ ...options.config, server: { host: '127.0.0.1', port, ...(options.config['server'] ?? {}) } });
    const logPath = join(setup.dir, `espm-${port}.log`);
    const fd = openSync(logPath, 'a');
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [...(options.espmNodeFlags ?? ESPM_NODE_FLAGS), ...(options.nodeArgs ?? []), join(ROOT, 'bin', 'espm'), '-c', setup.plan.configPath], {
      cwd: setup.dir,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    let exitCode: number | null | undefined;
    child.once('exit', (code) => (exitCode = code));
    const probe = new EspmClient(port, setup.plan.certificate, '', { keepAlive: false });
    try {
      for (;;) {
        if (exitCode !== undefined) throw new Error(`espm exited ${exitCode} before answering /healthz:\n${(await readFile(logPath, 'utf8')).slice(-3000)}`);
        const answer = await probe.request('GET', '/healthz', undefined, false).catch(() => undefined);
        if (answer?.status === 200) break;
        if (msSince(started) > 30_000) throw new Error(`espm did not answer /healthz within 30 s:\n${(await readFile(logPath, 'utf8')).slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    } catch (err) {
      child.kill('SIGKILL');
      if (options.setup === undefined) await setup.remove();
      throw err;
    } finally {
      probe.close();
    }
    const daemon = new Daemon(child, setup, port, logPath, options.setup === undefined, msSince(started));
    if (options.waitForLog !== undefined) {
      const deadline = Date.now() + 60_000;
      while (!(await daemon.log()).includes(options.waitForLog)) {
        if (Date.now() > deadline) throw new Error(`espm never logged "${options.waitForLog}":\n${(await daemon.log()).slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    return daemon;
  }

  /**
   * SIGTERM, then waits for the exit (SIGKILL after 20 s); removes its directory unless it
   * was passed in.
   *
   * @returns the exit code (null when killed by a signal)
   */
  async stop(): Promise<number | null> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 20_000);
    const code = await this.exited;
    clearTimeout(timer);
    if (this.ownSetup) await this.setup.remove();
    return code;
  }
}

/**
 * Measures `n` rounds of espm's call and the same work done directly, alternating which side
 * goes first so that neither always runs right after the other (a warm cache, a connection just
 * used). Each function gets the round's index and returns its duration, ms.
 *
 * @returns the durations of each side, ms, in round order
 */
export async function interleaved(
  n: number,
  espm: (i: number) => Promise<number>,
  direct: (i: number) => Promise<number>,
): Promise<{ espmMs: number[]; directMs: number[] }> {
  const espmMs: number[] = [];
  const directMs: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      espmMs.push(await espm(i));
      directMs.push(await direct(i));
    } else {
      directMs.push(await direct(i));
      espmMs.push(await espm(i));
    }
  }
  return { espmMs, directMs };
}

/** A fresh temp dir. */
export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `espm-bench-${prefix}-`));
}

/** Removes a directory tree. */
export function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** One row of a CPU profile summary. */
export interface ProfileRow {
  /** `function (file:line)` or a package name. */
  what: string;
  /** Self time, ms. */
  selfMs: number;
  /** Share of all samples, %. */
  percent: number;
}

/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time by package / espm file
 * (`node_modules/<pkg>`, `dist/<file>`, `node:<module>`, `(garbage collector)`, …), and the
 * top functions by self time, and time by the innermost espm function on the stack (what
 * espm code the time is spent under). `(idle)` samples are left out of the shares (reported apart).
 *
 * @param path - the .cpuprofile file
 * @param top - rows of each list
 * @param window - only samples taken in this interval (µs of the monotonic clock, which the
 *   profile and `process.hrtime.bigint()` share); default all
 */
export async function summarizeCpuProfile(
  path: string,
  top = 12,
  window?: { fromUs: number; toUs: number },
): Promise<{ totalMs: number; idleMs: number; byOrigin: ProfileRow[]; byFunction: ProfileRow[]; byEspmFrame: ProfileRow[] }> {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }
  const profile = JSON.parse(await readFile(path, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  /** The innermost espm (dist/) frame on a sample's stack. */
  const espmFrame = (id: number): string => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parentOf.get(cur)) {
      const f = byId.get(cur)?.callFrame;
      const own = f === undefined || f.url.includes('/node_modules/') ? null : /\/dist\/(.*)$/.exec(f.url);
      if (f !== undefined && own) return `${f.functionName || '(anonymous)'} (dist/${own[1]}:${f.lineNumber + 1})`;
    }
    return '(no espm frame: event loop, I/O callbacks, GC, libraries on their own)';
  };
  const frames = new Map<string, number>();
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const origin = (url: string, name: string): string => {
    if (url === '') return name.startsWith('(') ? name : '(native/V8)';
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (pkg) return pkg[1]!;
    if (url.startsWith('node:')) return url;
    const own = /\/dist\/(.*)$/.exec(url);
    if (own) return `espm dist/${own[1]}`;
    return url.replace(pathToFileURL(ROOT).href, '');
  };
  const origins = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const o = origin(url, functionName);
    origins.set(o, (origins.get(o) ?? 0) + us);
    const f = `${functionName || '(anonymous)'} (${url === '' ? o : `${o}:${lineNumber + 1}`})`;
    functions.set(f, (functions.get(f) ?? 0) + us);
    const e = espmFrame(id);
    frames.set(e, (frames.get(e) ?? 0) + us);
  }
  const rows = (m: Map<string, number>): ProfileRow[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([what, us]) => ({ what, selfMs: round(us / 1000), percent: round((100 * us) / Math.max(1, total)) }));
  return { totalMs: round(total / 1000), idleMs: round(idle / 1000), byOrigin: rows(origins), byFunction: rows(functions), byEspmFrame: rows(frames) };
}

/** The first `.cpuprofile` in a directory. */
export function findProfile(dir: string): string | undefined {
  const name = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  return name === undefined ? undefined : join(dir, name);
}

/** Prints a bench result (figures vs goals, then raw lines and analysis). */
export function printResult(result: BenchResult): void {
  console.log(`\n== ${result.title}${result.skipped ? ` — SKIPPED: ${result.skipped}` : ''}`);
  for (const f of result.figures) console.log(`  ${figureLine(f)}`);
  for (const line of [...result.raw, ...result.analysis]) console.log(`  ${line}`);
}

/** `label: value unit (goal …: met|MISSED)` */
export function figureLine(f: Figure): string {
  const verdict = f.met === undefined ? '' : f.met ? 'met' : 'MISSED';
  return `${f.label}: ${f.value}${f.unit === '' ? '' : ` ${f.unit}`}${f.goal === '' ? '' : ` — goal ${f.goal}: ${verdict}`}`;
}

/**
 * True when `import.meta.url` of the caller is the script node was started with (a bench run
 * alone rather than imported by bench/run.ts).
 */
export function isMain(metaUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  return metaUrl === pathToFileURL(script).href || fileURLToPath(metaUrl).replace(/\.ts$/, '') === script.replace(/\.ts$/, '');
}

/** Runs a bench's main when its file is the script started, exiting 0 or 1. */
export function runAlone(metaUrl: string, main: () => Promise<BenchResult>): void {
  if (!isMain(metaUrl)) return;
  assertBuilt();
  main().then(
    (result) => {
      printResult(result);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

export { freePort };
