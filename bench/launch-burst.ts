/**
 * Launch burst (not run in CI): N launches against one espm, with the warm console worker on
 * and off, in one run. Two benches share this script, told apart by `--ca`:
 *
 * - **issue #9** (`--ca sandbox`, the default): the console boots slowly (the console double
 *   sleeps `--boot` seconds, default 10, in its `environment` task, as a PE console's Rails
 *   boot + MySQL connect takes several to tens of seconds); certificates come from the sandbox
 *   CA (no Puppet needed, milliseconds). Goal: cold (start-up + burst) with the worker < 60 s.
 * - **issue #8, bench 3** (`--ca puppet-cert`): every console call a launch makes takes
 *   `--console-sleep` seconds (default 1: the double's per-task `faults` sleep on `node:add`,
 *   `node:parameters`, `nodegroup:list` and `nodeclass:list`, so it holds for a task in the
 *   worker and in its own rake process alike; `--boot` defaults to 0 here), and the CA — the
 *   Puppet 2.7 `puppet cert` double (test/fixtures/puppet-cert) behind `[ca] backend =
 *   puppet-cert` — takes `--ca-sleep` seconds per call (default 0.5, its `sleep` knob for every
 *   action). Counted during the burst: console tasks by name, rake processes, CA processes by
 *   action (the double's invocations.log). Timed: the burst's wall time against the
 *   **serialized-CA floor** measured in the same run, right before each mode's burst: one
 *   direct create (`rake … node:add`, then `rake … node:parameters`, each with the same
 *   console sleep) + the direct CA calls (`puppet cert generate NAME --color false --config
 *   puppet.conf`, the argv, environment and runner espm uses), one after the other, for every
 *   launch (`--floor-calls` fewer, at least 10, are scaled up to the launches). espm signs one
 *   certificate at a time (its CA mutex) and runs creates concurrently (with the worker, their
 *   console tasks queue for it), so no schedule can beat the floor: the first certificate needs
 *   its node created, and the CA calls cannot overlap.
 *   Goals: node:add = parameters tasks = CA calls = launches, nothing else per launch; wall ≤
 *   1.15 × floor. When a goal is missed, "Where the time goes" splits the wall time from the
 *   CA's side (waiting for a create, between CA processes, in them, after the last).
 *
 * A launch is what the reference platform does before it starts an instance: create the node
 * with groups, classes and a parameter (`POST /v1/nodes` → `node:add`, then `node:parameters`),
 * then pre-sign its certificate (`POST /v1/certificates`; its certname = the node's name).
 * `--concurrency` launches are in flight at a time. Each (mode, concurrency) run gets a fresh
 * console, a fresh CA and a fresh espm (in this process, so that its runner counts what it
 * spawns); the burst starts with espm's list cache cold. "Cold" includes espm's start-up (the
 * task list and, with the worker, its boot and self-check).
 *
 *   npx tsx bench/launch-burst.ts [--ca sandbox|puppet-cert] [--ca-sleep 0.5] [--console-sleep 1]
 *     [--launches 50] [--boot 10] [--concurrency 50,10] [--modes worker,process]
 *     [--floor-calls 50] [--max-minutes 15] [--no-results]
 *
 * Prints one summary line per run (bench/run.ts parses them: the issue #9 line, and for
 * `--ca puppet-cert` also {@link formatCaSummary}'s), then a markdown section, which it also
 * appends to bench/RESULTS.md unless `--no-results`. Needs ruby and rake (both doubles).
 * Bounded: a burst that takes longer than `--max-minutes` is stopped and reported as such.
 *
 * @packageDocumentation
 */
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { execa } from 'execa';
import { ExecaCommandRunner, type CommandSpec } from '../src/exec/command.js';
import { neverOverlapping, PUPPET_CERT_DOUBLE, PuppetCertMaster } from '../test/support/ca.js';
import { ConsoleDouble, CONSOLE_RAKEFILE, findRake, type ConsoleKnobs, type Invocation, type WorkerMode } from '../test/support/console.js';
import { apiClient, startEspm } from '../test/support/espm.js';
import { CountingRunner } from '../test/support/runner.js';
import { formatSummary, isMain, loadAverage, machine, msSince, quantile, RESULTS_PATH, round, summarize } from './support.js';

/** Which CA signs the burst's certificates: the sandbox (issue #9) or the `puppet cert` 2.7 double (issue #8, bench 3). */
export type BurstCa = 'sandbox' | 'puppet-cert';

/** Console tasks a launch can run that `--console-sleep` slows (the double's per-task `faults` sleep). */
export const CONSOLE_SLEEP_TASKS = ['node:add', 'node:parameters', 'nodegroup:list', 'nodeclass:list'] as const;

/** Goal of bench 3: burst wall time / serialized-CA floor at most this. */
export const FLOOR_RATIO_GOAL = 1.15;

/** What one (mode, concurrency) run is asked to do. */
interface RunSettings {
  /** Absolute path of rake (runs the console double). */
  rake: string;
  mode: WorkerMode;
  concurrency: number;
  launches: number;
  /** The console double's `boot_sleep`, s. */
  bootS: number;
  /** Seconds each of {@link CONSOLE_SLEEP_TASKS} sleeps (0: none). */
  consoleSleepS: number;
  ca: BurstCa;
  /** Seconds the `puppet cert` double sleeps per call (puppet-cert only). */
  caSleepS: number;
  /** Direct CA calls timed for the floor (puppet-cert only). */
  floorCalls: number;
  /** A burst is stopped after this long, ms. */
  maxMs: number;
}

/** One launch as the client saw it; times are ms since the epoch. */
interface LaunchTimes {
  /** The node's name, which is also the certificate's certname. */
  name: string;
  /** `POST /v1/nodes` sent. */
  sentAt: number;
  /** `POST /v1/nodes` answered (the certificate request is sent at once if it was 201). */
  createdAt?: number;
  /** `POST /v1/certificates` answered (or the create, when it failed). */
  answeredAt?: number;
  createStatus?: number;
  certificateStatus?: number;
}

/** The serialized-CA floor, measured directly (no espm) right before a burst. */
interface Floor {
  /** `rake … node:add`, s. */
  addS: number;
  /** `rake … node:parameters`, s. */
  parametersS: number;
  /** The direct create: node:add + node:parameters, s. */
  createS: number;
  /** Wall time of each direct CA call (`puppet cert generate`), s, in order. */
  callsS: number[];
  /** The duration each of those CA processes logged itself (script start to exit), s. */
  selfS: number[];
  /** Per call: the runner's spawn → the double's first log line (spawn + Ruby start-up), s. */
  spawnToStartS: number[];
  /** Per call: the double's last log line → the runner returned (exit, pipes closed), s. */
  endToReturnS: number[];
  /** CPU while the floor was measured. */
  cpu: CpuUse;
  /** Σ CA call times, scaled to the launches when fewer were timed, s. */
  caS: number;
  /** createS + caS. */
  totalS: number;
  /** Fewer calls than launches were timed (and the sum scaled). */
  scaled: boolean;
}

/** CPU used over an interval, ms of CPU time (from /proc; 100 ticks a second). */
interface CpuUse {
  /** Wall time of the interval, ms. */
  wallMs: number;
  /** The whole machine's busy time (every core). */
  machineMs: number;
  /** This process (espm + the client) and its children (rake, puppet, the console worker). */
  oursMs: number;
  /** The rest: other jobs on the machine. */
  othersMs: number;
}

/** How a burst's wall time splits, seen from the CA (ms; the four parts add up to the wall time). */
interface Timeline {
  /** No certificate request was waiting: the CA was idle while creates ran (from the first launch sent). */
  starvedMs: number;
  /** A certificate request was waiting but no CA process ran: espm's work between CA calls (ledger, mutex hand-off, reading the last call's files) + spawn + Ruby start-up. */
  handoffMs: number;
  /** CA processes running (as they logged themselves). */
  busyMs: number;
  /** The last CA process ended → the last launch answered. */
  tailMs: number;
  /** CA processes timed. */
  calls: number;
  /** First launch sent → first create answered. */
  firstCreateMs: number;
  /** First launch sent → the cold-cache lists done (NaN when none ran). */
  listsDoneMs: number;
  /** Mean number of rake processes running alongside a CA process. */
  rakeAlongsideCa: number;
  /** Most console tasks running at once. */
  maxTasksInFlight: number;
  /** Σ console task durations (as the double logged them), ms. */
  consoleTaskMs: number;
  /** The first certificate's way from its create's answer (or the burst's start) to its CA process: the HTTP request, the ledger's write-ahead, the mutex, the spawn, ms. */
  firstHandoffMs: number;
  /** Consecutive CA calls whose next request was already waiting when the previous command returned. */
  handoffPairs: number;
  /** Over those pairs: previous CA command returned to espm → espm started the next (espm's own work between CA calls), ms. */
  espmBetweenMs: number;
  /** Over every CA call: espm's runner started it → the double's first log line (spawn + Ruby start-up), ms. */
  spawnToStartMs: number;
  /** Over every CA call: the double's last log line → espm's runner returned, ms. */
  endToReturnMs: number;
}

/** CA-side results of a puppet-cert run. */
interface CaDetail {
  floor: Floor;
  /** CA processes started during the burst, by action (`generate`, `clean`, `list`, `configprint`, …; the double's invocations.log). */
  caByAction: Record<string, number>;
  /** CA processes espm's runner spawned during the burst (cross-check of the log). */
  caSpawned: number;
  /** CA processes espm ran between its start and the burst (e.g. an ssldir look-up). */
  caAtStartup: number;
  /** No two CA processes of the burst overlapped. */
  serialized: boolean;
  timeline: Timeline;
  /** CPU during the burst. */
  cpu: CpuUse;
  /** Load average (1, 5, 15 min) before and after the burst. */
  loadBefore: string;
  loadAfter: string;
}

/** One (mode, concurrency) run. */
interface RunResult {
  mode: WorkerMode;
  concurrency: number;
  launches: number;
  /** espm start until its start-up console check logged `console found`, s. */
  startupS: number;
  /** First launch sent until the last answered, s. */
  burstS: number;
  /** Per launch (create + certificate), s, sorted. */
  latenciesS: number[];
  /** Per node create alone (the console part of a launch), s, sorted. */
  createLatenciesS: number[];
  /** Launches answered 201 + 201. */
  ok: number;
  /** Rake processes espm spawned during the burst. */
  processes: number;
  /** Console tasks run during the burst (in processes or the worker), `rake -T` excluded. */
  tasks: number;
  /** Console tasks run during the burst by name (`-T` for a task listing). */
  tasksByName: Record<string, number>;
  /** puppet-cert runs only. */
  ca?: CaDetail;
  /** Set when the run hit --max-minutes. */
  stopped?: string;
}

/** The one-line summary of a puppet-cert run (issue #8, bench 3), as bench/run.ts reads it. */
export interface CaBurstSummary {
  /** Console worker on (`worker`) or one rake process per console call (`process`). */
  mode: WorkerMode;
  /** Launches in flight at a time. */
  concurrency: number;
  /** Seconds the CA took per call (`--ca-sleep`). */
  caSleepS: number;
  /** First launch sent → last launch answered, s. */
  wallS: number;
  /** The serialized-CA floor: direct create + Σ direct CA calls, s. */
  floorS: number;
  /** wallS / floorS. */
  ratio: number;
  /** Launches answered 201 (node) + 201 (certificate). */
  ok: number;
  /** Launches in the burst (each: one node with one parameter, then its certificate). */
  launches: number;
  /** `node:add` tasks run during the burst. */
  nodeAdd: number;
  /** Parameters tasks (`node:parameters`, or `node:variables` on 2.0) run during the burst. */
  parameters: number;
  /** List tasks (`nodegroup:list`, `nodeclass:list`, `node:list`): espm's group/class check, cached. */
  lists: number;
  /** Any other console task (or `rake -T`) during the burst. */
  otherTasks: number;
  /** Rake processes espm spawned during the burst (0 when every task ran in the worker). */
  rakeProcesses: number;
  /** `puppet cert generate` processes during the burst. */
  caGenerate: number;
  /** Any other CA process during the burst (`clean`, `list`, `--configprint`, …). */
  caOther: number;
  /** No two CA processes overlapped (espm's CA mutex held). */
  serialized: boolean;
}

const seconds = (ms: number): number => round(ms / 1000, 2);
const count = (byName: Record<string, number>, ...names: string[]): number => names.reduce((n, name) => n + (byName[name] ?? 0), 0);
const tally = (names: readonly string[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
};
const showTally = (byName: Record<string, number>): string =>
  Object.entries(byName)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name, n]) => `${name} ${n}`)
    .join(', ') || 'none';

/**
 * The one-line summary of a puppet-cert run that bench/run.ts parses back with
 * {@link parseCaSummary}.
 *
 * @param s - the run's figures
 * @returns e.g. `worker, concurrency 50, CA puppet-cert at 0.5 s: wall 40.1 s, floor 37.2 s, ratio 1.078×, 50/50 ok; console tasks: node:add 50, parameters 50, lists 2, other 0; 100 rake processes; CA processes: generate 50, other 0, serialized yes`
 */
export function formatCaSummary(s: CaBurstSummary): string {
  return (
    `${s.mode}, concurrency ${s.concurrency}, CA puppet-cert at ${s.caSleepS} s: wall ${s.wallS} s, floor ${s.floorS} s, ratio ${s.ratio.toFixed(3)}×, ${s.ok}/${s.launches} ok; ` +
    `console tasks: node:add ${s.nodeAdd}, parameters ${s.parameters}, lists ${s.lists}, other ${s.otherTasks}; ${s.rakeProcesses} rake processes; ` +
    `CA processes: generate ${s.caGenerate}, other ${s.caOther}, serialized ${s.serialized ? 'yes' : 'no'}`
  );
}

const CA_SUMMARY =
  /^(worker|process), concurrency (\d+), CA puppet-cert at ([\d.]+) s: wall ([\d.]+) s, floor ([\d.]+) s, ratio ([\d.]+|NaN|Infinity)×, (\d+)\/(\d+) ok; console tasks: node:add (\d+), parameters (\d+), lists (\d+), other (\d+); (\d+) rake processes; CA processes: generate (\d+), other (\d+), serialized (yes|no)$/gm;

/**
 * Every {@link formatCaSummary} line in a text (the script's stdout).
 *
 * @param text - what bench/launch-burst.ts printed
 * @returns the summaries, in order
 */
export function parseCaSummary(text: string): CaBurstSummary[] {
  return [...text.matchAll(CA_SUMMARY)].map((m) => ({
    mode: m[1] as WorkerMode,
    concurrency: Number(m[2]),
    caSleepS: Number(m[3]),
    wallS: Number(m[4]),
    floorS: Number(m[5]),
    ratio: Number(m[6]),
    ok: Number(m[7]),
    launches: Number(m[8]),
    nodeAdd: Number(m[9]),
    parameters: Number(m[10]),
    lists: Number(m[11]),
    otherTasks: Number(m[12]),
    rakeProcesses: Number(m[13]),
    caGenerate: Number(m[14]),
    caOther: Number(m[15]),
    serialized: m[16] === 'yes',
  }));
}

/** The {@link CaBurstSummary} of a puppet-cert run. */
function caSummary(r: RunResult, caSleepS: number): CaBurstSummary {
  const ca = r.ca!;
  const lists = count(r.tasksByName, 'nodegroup:list', 'nodeclass:list', 'node:list');
  const nodeAdd = count(r.tasksByName, 'node:add');
  const parameters = count(r.tasksByName, 'node:parameters', 'node:variables');
  const allTasks = Object.values(r.tasksByName).reduce((a, b) => a + b, 0);
  const caAll = Object.values(ca.caByAction).reduce((a, b) => a + b, 0);
  const caGenerate = ca.caByAction['generate'] ?? 0;
  return {
    mode: r.mode,
    concurrency: r.concurrency,
    caSleepS,
    wallS: r.burstS,
    floorS: round(ca.floor.totalS, 2),
    ratio: r.burstS / ca.floor.totalS,
    ok: r.ok,
    launches: r.launches,
    nodeAdd,
    parameters,
    lists,
    otherTasks: allTasks - nodeAdd - parameters - lists,
    rakeProcesses: r.processes,
    caGenerate,
    caOther: caAll - caGenerate,
    serialized: ca.serialized,
  };
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One line of the `puppet cert` double's invocations.log (the fields used here). */
interface CaLogLine {
  event: 'start' | 'end';
  pid: number;
  argv: string[];
  action: string | null;
  start_ms?: number;
  end_ms?: number;
}

async function caLog(master: PuppetCertMaster): Promise<CaLogLine[]> {
  const text = await readFile(join(master.dir, 'invocations.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as CaLogLine);
}

const clearCaLog = (master: PuppetCertMaster): Promise<void> => writeFile(join(master.dir, 'invocations.log'), '');

/** A CPU reading: machine busy ticks, and this process's with its children's (exited and live). */
interface CpuReading {
  at: number;
  machineTicks: number;
  oursTicks: number;
}

/** utime + stime (+ cutime + cstime) of a /proc/<pid>/stat text, ticks. */
function statTicks(stat: string, withChildren: boolean): { ppid: number; ticks: number } {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const own = Number(f[11]) + Number(f[12]);
  return { ppid: Number(f[1]), ticks: withChildren ? own + Number(f[13]) + Number(f[14]) : own };
}

async function cpuReading(): Promise<CpuReading> {
  const at = Date.now();
  const cpuLine = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
  const machineTicks = cpuLine.slice(0, 8).reduce((a, b) => a + b, 0) - (cpuLine[3] ?? 0) - (cpuLine[4] ?? 0);
  let oursTicks = statTicks(await readFile('/proc/self/stat', 'utf8'), true).ticks;
  // Live children (the console worker; rake and puppet processes still running) count as ours.
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const child = statTicks(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ') x 0'), false);
    if (child.ppid === process.pid) oursTicks += child.ticks;
  }
  return { at, machineTicks, oursTicks };
}

function cpuUse(from: CpuReading, to: CpuReading): CpuUse {
  const machineMs = (to.machineTicks - from.machineTicks) * 10;
  const oursMs = (to.oursTicks - from.oursTicks) * 10;
  return { wallMs: to.at - from.at, machineMs, oursMs, othersMs: Math.max(0, machineMs - oursMs) };
}

/** `ours 12.3 CPU-s, other jobs 4.5 CPU-s (11% of 2 cores)` */
function showCpu(c: CpuUse, cores: number): string {
  return `ours ${seconds(c.oursMs)} CPU-s, other jobs on the machine ${seconds(c.othersMs)} CPU-s (${round((100 * c.othersMs) / Math.max(1, c.wallMs * cores), 0)}% of ${cores} cores over ${seconds(c.wallMs)} s)`;
}

/**
 * The serialized-CA floor: one direct create, then `floorCalls` direct CA calls one after the
 * other, with espm's own runner (src/exec: execa, the same argv, scrubbed environment and
 * timeouts) and nothing else of espm.
 */
async function measureFloor(settings: RunSettings, consoleDouble: ConsoleDouble, master: PuppetCertMaster): Promise<Floor> {
  const runner = new ExecaCommandRunner();
  const cpuFrom = await cpuReading();
  const timed = async (spec: CommandSpec, ok: (stdout: string) => boolean): Promise<number> => {
    const t = process.hrtime.bigint();
    const r = await runner.run(spec);
    const ms = msSince(t);
    if (r.exitCode !== 0 || !ok(r.stdout)) throw new Error(`floor: ${spec.file} ${spec.args.join(' ')} failed (exit ${r.exitCode}): ${r.stdout}${r.stderr}`);
    return ms;
  };
  // src/classifier/dashboard-rake.ts rakeProcess(): rake -s -f <Rakefile> RAILS_ENV=<env> <task> k=v…
  const rake = (task: string, ...args: string[]): CommandSpec => ({
    file: settings.rake,
    args: ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', task, ...args],
    cwd: consoleDouble.dir,
    timeoutMs: 120_000,
    env: { RAILS_ENV: 'production' },
  });
  const node = `floor-${settings.mode}.example.test`;
  const addMs = await timed(rake('node:add', `name=${node}`, 'groups=default', 'classes=ntp'), (out) => out.includes('Node successfully created!'));
  const parametersMs = await timed(rake('node:parameters', `name=${node}`, 'parameters=role=web'), (out) => out.includes('Node parameters successfully edited'));
  // src/ca/puppet-cert.ts issue(): puppet cert generate NAME --color false --config <puppet.conf>, [ca] timeout 60 s.
  const callsMs: number[] = [];
  const spans: Array<{ start: number; end: number }> = [];
  for (let i = 0; i < settings.floorCalls; i++) {
    const certname = `floor-${settings.mode}-${i}.example.test`;
    const spec = { file: PUPPET_CERT_DOUBLE, args: ['cert', 'generate', certname, '--color', 'false', '--config', master.confPath], timeoutMs: 60_000 };
    const start = Date.now();
    callsMs.push(await timed(spec, (out) => !/^err:/m.test(out)));
    spans.push({ start, end: Date.now() });
  }
  const cpu = cpuUse(cpuFrom, await cpuReading());
  const logged = (await caLog(master)).filter((l) => l.event === 'end' && l.action === 'generate');
  const selfMs = logged.map((l) => (l.end_ms ?? 0) - (l.start_ms ?? 0));
  const caMs = (callsMs.reduce((a, b) => a + b, 0) * settings.launches) / settings.floorCalls;
  return {
    spawnToStartS: logged.map((l, i) => ((l.start_ms ?? 0) - (spans[i]?.start ?? NaN)) / 1000),
    endToReturnS: logged.map((l, i) => ((spans[i]?.end ?? NaN) - (l.end_ms ?? 0)) / 1000),
    cpu,
    addS: addMs / 1000,
    parametersS: parametersMs / 1000,
    createS: (addMs + parametersMs) / 1000,
    callsS: callsMs.map((ms) => ms / 1000),
    selfS: selfMs.map((ms) => ms / 1000),
    caS: caMs / 1000,
    totalS: (addMs + parametersMs + caMs) / 1000,
    scaled: settings.floorCalls !== settings.launches,
  };
}

/** Sum of the overlaps of `a` with each of `others`, ms. */
function overlapMs(a: { start: number; end: number }, others: ReadonlyArray<{ start: number; end: number }>): number {
  return others.reduce((sum, o) => sum + Math.max(0, Math.min(a.end, o.end) - Math.max(a.start, o.start)), 0);
}

/**
 * Splits a burst's wall time from the CA's side: before each CA process, the time no
 * certificate request was waiting (starved) vs one was (hand-off); the CA processes; and what
 * follows the last one.
 */
function timeline(
  launches: readonly LaunchTimes[],
  ca: ReadonlyArray<{ action: string; name: string | undefined; start: number; end: number }>,
  spawned: ReadonlyArray<{ name: string | undefined; start: number; end: number }>,
  rakeProcesses: ReadonlyArray<{ start: number; end: number }>,
  tasks: ReadonlyArray<{ task: string; start: number; end: number }>,
  burstStart: number,
  burstEnd: number,
): Timeline {
  const readyAt = new Map(launches.filter((l) => l.createStatus === 201).map((l) => [l.name, l.createdAt!]));
  const sorted = [...ca].sort((a, b) => a.start - b.start);
  // When each CA process's request was ready (a process not serving a launch: when it started).
  const ready = sorted.map((p) => (p.name !== undefined ? (readyAt.get(p.name) ?? p.start) : p.start));
  const earliestFrom = [...ready];
  for (let i = earliestFrom.length - 2; i >= 0; i--) earliestFrom[i] = Math.min(earliestFrom[i]!, earliestFrom[i + 1]!);
  let cursor = burstStart;
  let starvedMs = 0;
  let handoffMs = 0;
  let busyMs = 0;
  let firstHandoffMs = 0;
  sorted.forEach((p, i) => {
    const gap = Math.max(0, p.start - cursor);
    const starved = Math.min(gap, Math.max(0, earliestFrom[i]! - cursor));
    starvedMs += starved;
    handoffMs += gap - starved;
    if (i === 0) firstHandoffMs = gap - starved;
    busyMs += p.end - p.start;
    cursor = Math.max(cursor, p.end);
  });
  // espm's side of each CA call (its runner's start and return), matched by certname.
  const byName = new Map(spawned.filter((c) => c.name !== undefined).map((c) => [c.name!, c]));
  let handoffPairs = 0;
  let espmBetweenMs = 0;
  let spawnToStartMs = 0;
  let endToReturnMs = 0;
  sorted.forEach((p, i) => {
    const mine = p.name === undefined ? undefined : byName.get(p.name);
    if (mine === undefined) return;
    spawnToStartMs += p.start - mine.start;
    endToReturnMs += mine.end - p.end;
    const previous = i > 0 && sorted[i - 1]!.name !== undefined ? byName.get(sorted[i - 1]!.name!) : undefined;
    if (previous !== undefined && ready[i]! <= previous.end) {
      handoffPairs += 1;
      espmBetweenMs += mine.start - previous.end;
    }
  });
  const creates = launches.filter((l) => l.createdAt !== undefined).map((l) => l.createdAt!);
  const lists = tasks.filter((t) => /list$/.test(t.task)).map((t) => t.end);
  const caTotal = sorted.reduce((s, p) => s + (p.end - p.start), 0);
  const edges = tasks.flatMap((t) => [
    { at: t.start, d: 1 },
    { at: t.end, d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let inFlight = 0;
  let maxTasksInFlight = 0;
  for (const e of edges) maxTasksInFlight = Math.max(maxTasksInFlight, (inFlight += e.d));
  return {
    starvedMs,
    handoffMs,
    busyMs,
    tailMs: Math.max(0, burstEnd - cursor),
    calls: sorted.length,
    firstCreateMs: creates.length > 0 ? Math.min(...creates) - burstStart : NaN,
    listsDoneMs: lists.length > 0 ? Math.max(...lists) - burstStart : NaN,
    rakeAlongsideCa: caTotal > 0 ? sorted.reduce((s, p) => s + overlapMs(p, rakeProcesses), 0) / caTotal : NaN,
    maxTasksInFlight,
    consoleTaskMs: tasks.reduce((s, t) => s + (t.end - t.start), 0),
    firstHandoffMs,
    handoffPairs,
    espmBetweenMs,
    spawnToStartMs,
    endToReturnMs,
  };
}

async function run(settings: RunSettings): Promise<RunResult> {
  const { rake, mode, concurrency, launches, bootS, consoleSleepS, maxMs } = settings;
  const knobs: ConsoleKnobs = { version: '1.2.10', boot_sleep: bootS };
  const consoleDouble = await ConsoleDouble.create(knobs);
  await consoleDouble.store(); // seed it now (a plain rake run), not during the measurement
  if (consoleSleepS > 0) await consoleDouble.setKnobs({ ...knobs, faults: Object.fromEntries(CONSOLE_SLEEP_TASKS.map((t) => [t, { sleep: consoleSleepS }])) });
  let master: PuppetCertMaster | undefined;
  let floor: Floor | undefined;
  const result: RunResult = { mode, concurrency, launches, startupS: NaN, burstS: NaN, latenciesS: [], createLatenciesS: [], ok: 0, processes: 0, tasks: 0, tasksByName: {} };
  try {
    if (settings.ca === 'puppet-cert') {
      master = await PuppetCertMaster.create();
      // A master has its CA already: create it now (any action does), outside every measurement.
      const created = await master.puppet('cert', 'list', '--all');
      if (created.exitCode !== 0) throw new Error(`puppet cert double: creating the CA failed: ${created.stdout}`);
      await master.setKnobs({ sleep: { '*': settings.caSleepS } });
      await clearCaLog(master);
      floor = await measureFloor(settings, consoleDouble, master);
      await clearCaLog(master);
      await consoleDouble.clearInvocations();
    }
    const runner = new CountingRunner();
    const t0 = Date.now();
    // [ca] ssldir set, as espm_setup writes it (empty, espm would ask puppet once per daemon).
    const ca: Record<string, string> = master === undefined ? { backend: 'sandbox' } : { ...master.caConfig(), ssldir: master.ssldir };
    const espm = await startEspm({ classifier: { ...consoleDouble.classifierConfig(rake, mode), timeout: Math.max(120, bootS * 6) }, ca, log: { level: 'info' } }, { runner });
    try {
      await waitFor(() => espm.logs.text().includes('console found') || espm.logs.text().includes('console not usable'), maxMs, 'start-up');
      result.startupS = seconds(Date.now() - t0);
      const caAtStartup = master === undefined ? 0 : (await caLog(master)).filter((l) => l.event === 'start').length;
      if (master !== undefined) await clearCaLog(master);
      await consoleDouble.clearInvocations();
      const callsBefore = runner.calls.length;
      const api = apiClient(espm);
      const times: LaunchTimes[] = [];
      let next = 0;
      const loadBefore = loadAverage();
      const cpuBefore = await cpuReading();
      const deadline = Date.now() + maxMs;
      const started = Date.now();
      const launch = async (i: number): Promise<void> => {
        const l: LaunchTimes = { name: `burst-${mode}-${concurrency}-${i}.example.test`, sentAt: Date.now() };
        times.push(l);
        const node = await api.post('/v1/nodes', { name: l.name, groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
        l.createdAt = Date.now();
        l.createStatus = node.status;
        result.createLatenciesS.push(seconds(l.createdAt - l.sentAt));
        if (node.status === 201) l.certificateStatus = (await api.post('/v1/certificates', { certname: l.name })).status;
        l.answeredAt = Date.now();
        result.latenciesS.push(seconds(l.answeredAt - l.sentAt));
        if (node.status === 201 && l.certificateStatus === 201) result.ok += 1;
      };
      const client = async (): Promise<void> => {
        while (next < launches && Date.now() < deadline) await launch(next++);
      };
      const all = Promise.all(Array.from({ length: Math.min(concurrency, launches) }, client));
      const timedOut = new Promise<'stopped'>((resolve) => setTimeout(() => resolve('stopped'), maxMs + 5_000).unref());
      if ((await Promise.race([all, timedOut])) === 'stopped') result.stopped = `stopped after ${maxMs / 60_000} min`;
      const ended = Date.now();
      const cpu = cpuUse(cpuBefore, await cpuReading());
      result.burstS = seconds(ended - started);
      result.latenciesS.sort((a, b) => a - b);
      result.createLatenciesS.sort((a, b) => a - b);
      const spawned = runner.calls.slice(callsBefore);
      result.processes = spawned.filter((c) => c.file === rake).length;
      const tasksRun = await consoleDouble.tasksRun();
      result.tasksByName = tally(tasksRun);
      result.tasks = tasksRun.filter((t) => t !== '-T').length;
      if (master !== undefined && floor !== undefined) {
        const log = await caLog(master);
        const ends = log.filter((l) => l.event === 'end').map((l) => ({ action: l.action ?? '?', name: l.action === 'generate' ? l.argv[2] : undefined, start: l.start_ms!, end: l.end_ms! }));
        const rakeEnds = (await consoleDouble.invocations()).filter((i): i is Invocation & { start_ts: number } => i.event === 'end' && i.start_ts !== undefined);
        const taskEnds = (await consoleDouble.taskLog()).filter((i) => i.event === 'task_end' && i.start_ts !== undefined);
        result.ca = {
          floor,
          caByAction: tally(log.filter((l) => l.event === 'start').map((l) => l.action ?? '?')),
          caSpawned: spawned.filter((c) => c.file === PUPPET_CERT_DOUBLE).length,
          caAtStartup,
          serialized: neverOverlapping(ends),
          timeline: timeline(
            times,
            ends,
            runner.intervals.filter((c) => c.start >= started && c.file === PUPPET_CERT_DOUBLE).map((c) => ({ name: c.args[1] === 'generate' ? c.args[2] : undefined, start: c.start, end: c.end })),
            rakeEnds.map((i) => ({ start: i.start_ts, end: i.ts })),
            taskEnds.map((i) => ({ task: i.task ?? '?', start: i.start_ts!, end: i.ts })),
            started,
            ended,
          ),
          cpu,
          loadBefore,
          loadAfter: loadAverage(),
        };
      }
    } finally {
      await espm.stop();
    }
  } finally {
    await consoleDouble.remove();
    await master?.remove();
  }
  return result;
}

/** The markdown section of issue #9's runs (sandbox CA). */
function bootSection(results: readonly RunResult[], host: string, command: string, bootS: number, consoleSleepS: number, concurrencies: readonly number[]): string[] {
  const lines = [
    '',
    `## Launch burst — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (issue #9)`,
    '',
    `- Machine: ${host}.`,
    `- Command: \`${command}\`.`,
    `- A launch: \`POST /v1/nodes\` (groups, classes, one parameter → \`node:add\` + \`node:parameters\`), then \`POST /v1/certificates\` (sandbox CA). Console double 1.2.10 with \`boot_sleep: ${bootS}\` (every Rails boot sleeps ${bootS} s)${consoleSleepS > 0 ? ` and ${CONSOLE_SLEEP_TASKS.join(', ')} sleeping ${consoleSleepS} s each (\`faults\`)` : ''}. Fresh console and espm per run; "cold" = espm start-up (task list; with the worker: its boot and self-check) + burst.`,
    '',
    '| mode | in flight | start-up s | burst s | cold total s | ok | launch p50 / p95 / max s | node create p50 / p95 / max s | rake processes | tasks |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.mode} | ${r.concurrency} | ${r.startupS} | ${r.burstS}${r.stopped ? ` (${r.stopped})` : ''} | ${seconds((r.startupS + r.burstS) * 1000)} | ${r.ok}/${r.launches} | ${quantile(r.latenciesS, 0.5)} / ${quantile(r.latenciesS, 0.95)} / ${r.latenciesS[r.latenciesS.length - 1] ?? NaN} | ${quantile(r.createLatenciesS, 0.5)} / ${quantile(r.createLatenciesS, 0.95)} / ${r.createLatenciesS[r.createLatenciesS.length - 1] ?? NaN} | ${r.processes} | ${r.tasks} |`,
    ),
    '',
  ];
  for (const concurrency of concurrencies) {
    const on = results.find((r) => r.mode === 'worker' && r.concurrency === concurrency);
    const off = results.find((r) => r.mode === 'process' && r.concurrency === concurrency);
    if (on === undefined || off === undefined) continue;
    const cold = (r: RunResult) => r.startupS + r.burstS;
    lines.push(
      `- ${concurrency} in flight: burst ${off.burstS} s without the worker / ${on.burstS} s with it = **${(off.burstS / on.burstS).toFixed(1)}×**; ` +
        `cold ${seconds(cold(off) * 1000)} s / ${seconds(cold(on) * 1000)} s = **${(cold(off) / cold(on)).toFixed(1)}×**; ` +
        `goal (cold, with the worker, under 60 s): ${cold(on) < 60 ? 'met' : 'NOT met'}.`,
    );
  }
  lines.push(
    '- Raw launch latencies (s, sorted):',
    ...results.map((r) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.latenciesS.join(' ')}`),
    '- Raw node create latencies (s, sorted):',
    ...results.map((r) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.createLatenciesS.join(' ')}`),
    '',
  );
  return lines;
}

/** Where a puppet-cert run's wall time went, against its floor (markdown lines). */
function whereTheTimeGoes(r: RunResult, s: CaBurstSummary, cores: number, consoleSleepS: number): string[] {
  const ca = r.ca!;
  const t = ca.timeline;
  const f = ca.floor;
  const n = Math.max(1, t.calls);
  const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const ms = (x: number): number => round(x, 0);
  // Per direct CA call, s: the whole call, the process's own logged time, and the rest (spawn + Ruby start-up + exit).
  const directCall = mean(f.callsS);
  const directBusy = mean(f.selfS);
  const directOutside = directCall - directBusy;
  const over = (burstS: number, floorS: number): string => `${burstS - floorS >= 0 ? '+' : '−'}${round(Math.abs(burstS - floorS), 1)} s`;
  const missed = !(s.ratio <= FLOOR_RATIO_GOAL && s.ok === s.launches);
  const creates = r.createLatenciesS;
  const lines = [
    `- **${r.mode}** (${s.ratio.toFixed(3)}×, goal ≤ ${FLOOR_RATIO_GOAL}: ${missed ? 'missed' : 'met'}): wall ${s.wallS} s = ` +
      `CA idle, no certificate request waiting ${seconds(t.starvedMs)} s (first create answered after ${seconds(t.firstCreateMs)} s${Number.isNaN(t.listsDoneMs) ? '' : `; the cold-cache group and class lists done after ${seconds(t.listsDoneMs)} s`}) + ` +
      `CA processes running ${seconds(t.busyMs)} s (${t.calls} × ${ms(t.busyMs / n)} ms) + ` +
      `between CA processes with a request waiting ${seconds(t.handoffMs)} s (${ms(t.handoffMs / n)} ms per call) + ` +
      `after the last CA process ${seconds(t.tailMs)} s. ` +
      `Floor ${s.floorS} s = direct create ${round(f.createS, 2)} s + ${s.launches} × ${ms(directCall * 1000)} ms (the CA process itself ${ms(directBusy * 1000)} ms, spawn + Ruby start-up + exit ${ms(directOutside * 1000)} ms).`,
    `  - Against the floor: waiting for creates ${over(t.starvedMs / 1000, f.createS)} (vs the direct create), CA work ${over(t.busyMs / 1000, directBusy * s.launches)} (${ms(t.busyMs / n)} vs ${ms(directBusy * 1000)} ms per call), ` +
      `between calls ${over(t.handoffMs / 1000, directOutside * s.launches)} (${ms(t.handoffMs / n)} vs ${ms(directOutside * 1000)} ms per call), after the last ${over(t.tailMs / 1000, 0)}.`,
    `  - Between CA calls, per call: espm's runner starting the command → the double's first log line ${ms(t.spawnToStartMs / n)} ms (direct ${ms(mean(f.spawnToStartS) * 1000)} ms: spawn + Ruby start-up); its last log line → the runner returning ${ms(t.endToReturnMs / n)} ms (direct ${ms(mean(f.endToReturnS) * 1000)} ms); ` +
      (t.handoffPairs > 0
        ? `espm's own work from one CA command returning to starting the next ${ms(t.espmBetweenMs / t.handoffPairs)} ms (over the ${t.handoffPairs} call${t.handoffPairs === 1 ? '' : 's'} whose request was already waiting: reading the certificate, key and CA certificate, removing the key, parsing the certificate, the mutex hand-off, the next request's check of the CA's signed copy; none in the direct loop).`
        : `espm's own work from one CA command returning to starting the next: not seen (no certificate request was ever waiting when a CA command returned).`),
    `  - Machine: CPU during the burst ${showCpu(ca.cpu, cores)}; during its floor ${showCpu(f.cpu, cores)}. Load average ${ca.loadBefore} before the burst, ${ca.loadAfter} after. On average ${round(t.rakeAlongsideCa, 1)} rake processes ran alongside each CA process.`,
    `  - Console: ${Object.values(r.tasksByName).reduce((a, b) => a + b, 0)} tasks (${showTally(r.tasksByName)}), at most ${t.maxTasksInFlight} running at once, ${seconds(t.consoleTaskMs)} s of task time in all; ${r.processes} rake processes. Node creates answered after ${creates[0] ?? NaN} s (first) / ${quantile(creates, 0.5)} s (p50) / ${creates[creates.length - 1] ?? NaN} s (last).`,
  ];
  if (!missed) return lines;
  const excessS = s.wallS - s.floorS;
  const starvedExcessS = t.starvedMs / 1000 - f.createS;
  if (t.maxTasksInFlight <= 1 && starvedExcessS > 0.5 * excessS) {
    const tasks = s.nodeAdd + s.parameters + s.lists;
    lines.push(
      `  - Why: the console worker runs one task at a time (issue #9's design: one warm Rails process), so ${tasks} tasks of ${consoleSleepS} s each take ≥ ${round(tasks * consoleSleepS, 0)} s end to end whatever the CA does — more than the whole floor — and each certificate waits for its own create. ` +
        `Its queue is first come, first served: every launch's node:add (all queued at once, behind the lists) runs before the first node:parameters, so the first create is answered only after ${seconds(t.firstCreateMs)} s and the CA sat idle ${seconds(t.starvedMs)} s in all (another order would start the CA sooner, not end the burst sooner: the ${round(tasks * consoleSleepS, 0)} s of console work in one queue bound it). ` +
        `The worker pays a slow Rails boot once (issue #9) but serializes a slow task. What would close it (src/, not changed here): run console tasks concurrently when one is already running — a small pool of warm workers, or a rake process for a task that would otherwise queue behind the worker (a Rails boot each, which is what the worker saves).`,
    );
  } else if (starvedExcessS > 0.5 * excessS) {
    lines.push(
      `  - Why: the first certificate could start only after ${seconds(t.firstCreateMs)} s (its create; ${round(f.createS, 2)} s direct). The ${s.launches} creates start together${s.lists > 0 ? `, behind the cold-cache group and class lists (one after the other: done after ${seconds(t.listsDoneMs)} s)` : ''}, and their ${s.nodeAdd + s.parameters} rake processes (up to ${t.maxTasksInFlight} console tasks at once) share ${cores} cores: each Ruby + rake start-up is CPU-bound, the kernel shares the cores among all of them, so they progress together and the creates are answered together — between ${creates[0] ?? NaN} and ${creates[creates.length - 1] ?? NaN} s — instead of one after another. ` +
        `The CA, which needs just one create to start, idles meanwhile. What would close it (src/, not changed here): cap the rake processes running at once (about the number of cores) so that creates finish in order from about the direct create's time on and the CA starts after the first; more than one warm worker would do the same without the start-ups; a warm list cache at burst time (the platform's discovery calls within cache_ttl) takes the lists off the front.`,
    );
  }
  if (!Number.isNaN(t.listsDoneMs) && t.maxTasksInFlight > 1) {
    lines.push(
      `  - The cold-cache lists alone put ${seconds(t.listsDoneMs)} s in front of every create; with a warm cache the wall would be ≈ ${round(s.wallS - t.listsDoneMs / 1000, 1)} s ≈ ${((s.wallS - t.listsDoneMs / 1000) / s.floorS).toFixed(3)}× the floor (an estimate: this run's wall minus the lists, not measured).`,
    );
  }
  if (t.busyMs / n > directBusy * 1000 * 1.05) {
    lines.push(
      `  - The CA's own work (its processes, mostly Ruby start-up and RSA key generation) took ${round((t.busyMs / n / (directBusy * 1000) - 1) * 100, 0)}% longer per call than in the floor: it shared ${cores} cores with ${round(t.rakeAlongsideCa, 1)} rake processes on average and with other jobs (${round((100 * ca.cpu.othersMs) / Math.max(1, ca.cpu.wallMs * cores), 0)}% of the machine during the burst, ${round((100 * f.cpu.othersMs) / Math.max(1, f.cpu.wallMs * cores), 0)}% during the floor).`,
    );
  }
  const perCallExtraMs = t.handoffMs / n - directOutside * 1000;
  if (perCallExtraMs > 20) {
    lines.push(
      `  - Between CA calls espm spends ${ms(perCallExtraMs)} ms per call more than the bare spawn of the floor (× ${s.launches} = ${round((perCallExtraMs * s.launches) / 1000, 1)} s). Per call: ${t.handoffPairs > 0 ? `espm's own work between one CA command returning and the next starting ${ms(t.espmBetweenMs / t.handoffPairs)} ms, ` : ''}spawn + Ruby start-up ${ms(t.spawnToStartMs / n - mean(f.spawnToStartS) * 1000)} ms more than direct, exit ${ms(t.endToReturnMs / n - mean(f.endToReturnS) * 1000)} ms more (both stretch with the machine's load); ` +
        `and once, the first certificate's way from its create's answer to its CA process, ${seconds(t.firstHandoffMs)} s (the certificate request on a new TLS connection from the bench's client, the ledger's write-ahead with fsync, the spawn — while the other creates' rake processes still ran) = ${ms(t.firstHandoffMs / n)} ms per call.`,
    );
  }
  return lines;
}

/** The markdown section of bench 3 (puppet-cert CA). */
function caSection(results: readonly RunResult[], host: string, cores: number, command: string, settings: { bootS: number; consoleSleepS: number; caSleepS: number; floorCalls: number; launches: number }): string[] {
  const summaries = results.filter((r) => r.ca !== undefined).map((r) => ({ r, s: caSummary(r, settings.caSleepS) }));
  const lines = [
    '',
    `## Launch burst with the puppet cert CA — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (issue #8, bench 3)`,
    '',
    `- Machine: ${host}.`,
    `- Command: \`${command}\`.`,
    `- A launch: \`POST /v1/nodes\` (groups, classes, one parameter → \`node:add\` + \`node:parameters\`), then \`POST /v1/certificates\` (\`[ca] backend = puppet-cert\`: the Puppet 2.7 \`puppet cert\` double, 2048-bit keys, \`sleep\` ${settings.caSleepS} s for every action; \`[ca] ssldir\` set, as espm_setup writes it). ` +
      `Console double 1.2.10: ${CONSOLE_SLEEP_TASKS.join(', ')} each sleep ${settings.consoleSleepS} s (the per-task \`faults\` knob: "1 s per call" both in the worker and in a rake process)${settings.bootS > 0 ? `, \`boot_sleep: ${settings.bootS}\`` : ', no boot sleep'}. Fresh console, CA and espm per run, espm's list cache cold at the start of the burst.`,
    `- Floor, measured right before each burst on the same console and CA: one direct create (\`rake -s -f Rakefile RAILS_ENV=production node:add name=N groups=default classes=ntp\`, then \`node:parameters name=N parameters=role=web\`) + ${settings.floorCalls === settings.launches ? `${settings.launches} direct` : `${settings.floorCalls} direct (the sum scaled × ${round(settings.launches / settings.floorCalls, 2)} to ${settings.launches})`} \`puppet cert generate N --color false --config puppet.conf\` one after the other, with espm's runner (src/exec). Wall = first launch sent → last answered.`,
    '',
    '| mode | in flight | wall s | floor s (create + CA calls) | wall / floor | ok | node:add | parameters | lists | other tasks | rake processes | CA processes (by action) | CA serialized | launch p50 / p95 / max s | node create p50 / p95 / max s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...summaries.map(
      ({ r, s }) =>
        `| ${r.mode} | ${r.concurrency} | ${s.wallS}${r.stopped ? ` (${r.stopped})` : ''} | ${s.floorS} (${round(r.ca!.floor.createS, 2)} + ${round(r.ca!.floor.caS, 2)}) | **${s.ratio.toFixed(3)}×** | ${s.ok}/${s.launches} | ${s.nodeAdd} | ${s.parameters} | ${s.lists} | ${s.otherTasks} | ${s.rakeProcesses} | ${showTally(r.ca!.caByAction)} | ${s.serialized ? 'yes' : '**no**'} | ${quantile(r.latenciesS, 0.5)} / ${quantile(r.latenciesS, 0.95)} / ${r.latenciesS[r.latenciesS.length - 1] ?? NaN} | ${quantile(r.createLatenciesS, 0.5)} / ${quantile(r.createLatenciesS, 0.95)} / ${r.createLatenciesS[r.createLatenciesS.length - 1] ?? NaN} |`,
    ),
    '',
  ];
  for (const { r, s } of summaries) {
    const f = r.ca!.floor;
    const perLaunch = s.caGenerate === s.launches && s.caOther === 0;
    lines.push(
      `- ${r.mode}: wall ${s.wallS} s / floor ${s.floorS} s = **${s.ratio.toFixed(3)}×** (goal ≤ ${FLOOR_RATIO_GOAL}: ${s.ratio <= FLOOR_RATIO_GOAL && s.ok === s.launches ? 'met' : 'NOT met'}); ` +
        `node:add ${s.nodeAdd}, parameters ${s.parameters} (goal ${s.launches} each: ${s.nodeAdd === s.launches && s.parameters === s.launches ? 'met' : 'NOT met'}), lists ${s.lists} (espm's group/class check, once per cache_ttl); ` +
        `CA processes ${s.caGenerate + s.caOther}: ${showTally(r.ca!.caByAction)} (goal one generate per launch, nothing else: ${perLaunch ? 'met' : 'NOT met'}); espm's runner spawned ${r.ca!.caSpawned} CA processes in the burst, ${r.ca!.caAtStartup} between its start and the burst; CA processes never overlapped: ${s.serialized ? 'yes' : 'NO'}.`,
      `  - floor: direct create ${round(f.createS, 2)} s (node:add ${round(f.addS, 2)} s + node:parameters ${round(f.parametersS, 2)} s); direct CA calls ${formatSummary(summarize(f.callsS.map((x) => x * 1000)))}; the CA processes' own logged time ${formatSummary(summarize(f.selfS.map((x) => x * 1000)))}.`,
    );
  }
  lines.push(
    '- Raw launch latencies (s, sorted):',
    ...summaries.map(({ r }) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.latenciesS.join(' ')}`),
    '- Raw node create latencies (s, sorted):',
    ...summaries.map(({ r }) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.createLatenciesS.join(' ')}`),
    '- Raw direct CA call times of the floor (s, in order):',
    ...summaries.map(({ r }) => `  - ${r.mode}: ${r.ca!.floor.callsS.map((x) => round(x, 3)).join(' ')}`),
    '',
    '### Where the time goes',
    '',
    '- The wall time splits exactly, from the CA\'s side (its invocations.log against the client\'s clock): before each CA process, the time no certificate request was waiting (the CA idle while creates ran) and the time one was (espm between CA calls); the CA processes; after the last one. The floor has the same parts: the direct create, and per CA call the process itself and its spawn + Ruby start-up.',
    ...summaries.flatMap(({ r, s }) => whereTheTimeGoes(r, s, cores, settings.consoleSleepS)),
    '',
  );
  return lines;
}

async function main(): Promise<void> {
  const options = new Command('launch-burst')
    .option('--ca <backend>', 'sandbox (issue #9) or puppet-cert (issue #8, bench 3)', 'sandbox')
    .option('--ca-sleep <s>', 'seconds the puppet cert double takes per call (puppet-cert; default 0.5)')
    .option('--console-sleep <s>', `seconds each of ${CONSOLE_SLEEP_TASKS.join(', ')} sleeps (faults knob; default 0 with sandbox, 1 with puppet-cert)`)
    .option('--launches <n>', 'launches in the burst', '50')
    .option('--boot <s>', "seconds the console double's Rails boot takes (default 10 with sandbox, 0 with puppet-cert)")
    .option('--concurrency <list>', 'launches in flight at a time, one run each (default 50,10 with sandbox, 50 with puppet-cert)')
    .option('--modes <list>', 'worker and/or process', 'worker,process')
    .option('--floor-calls <n>', 'direct CA calls timed for the floor, ≥ 10 (default: one per launch; fewer are scaled up)')
    .option('--max-minutes <n>', 'stop a burst after this long', '15')
    .option('--no-results', 'print only; do not append to bench/RESULTS.md')
    .parse()
    .opts<{ ca: string; caSleep?: string; consoleSleep?: string; launches: string; boot?: string; concurrency?: string; modes: string; floorCalls?: string; maxMinutes: string; results: boolean }>();
  if (options.ca !== 'sandbox' && options.ca !== 'puppet-cert') throw new Error(`--ca: sandbox or puppet-cert, not ${options.ca}`);
  const ca: BurstCa = options.ca;
  const withCa = ca === 'puppet-cert';
  if (!withCa && (options.caSleep !== undefined || options.floorCalls !== undefined)) throw new Error('--ca-sleep and --floor-calls need --ca puppet-cert');
  const rake = await findRake();
  if (rake === undefined) throw new Error('rake is not installed (apt-get install ruby rake)');
  const launches = Number(options.launches);
  const bootS = Number(options.boot ?? (withCa ? 0 : 10));
  const consoleSleepS = Number(options.consoleSleep ?? (withCa ? 1 : 0));
  const caSleepS = Number(options.caSleep ?? 0.5);
  const floorCalls = Math.min(launches, Number(options.floorCalls ?? launches));
  if (withCa && !(floorCalls >= Math.min(10, launches))) throw new Error('--floor-calls: at least 10 (or every launch)');
  const concurrencies = (options.concurrency ?? (withCa ? '50' : '50,10')).split(',').map(Number);
  const modes = options.modes.split(',') as WorkerMode[];
  const maxMs = Number(options.maxMinutes) * 60_000;
  const command =
    `npx tsx bench/launch-burst.ts${withCa ? ` --ca puppet-cert --ca-sleep ${caSleepS}` : ''}${consoleSleepS > 0 || withCa ? ` --console-sleep ${consoleSleepS}` : ''}` +
    ` --launches ${launches} --boot ${bootS} --concurrency ${concurrencies.join(',')} --modes ${modes.join(',')}${withCa && floorCalls !== launches ? ` --floor-calls ${floorCalls}` : ''}`;
  const host = await machine();
  const ruby = (await execa('ruby', ['-v'], { reject: false })).stdout.split(' ').slice(0, 2).join(' ');
  const rakeVersion = (await execa(rake, ['--version'], { reject: false })).stdout.trim();
  const hostText = `${host.text}, ${ruby}, ${rakeVersion}`;

  const results: RunResult[] = [];
  for (const concurrency of concurrencies) {
    for (const mode of modes) {
      const r = await run({ rake, mode, concurrency, launches, bootS, consoleSleepS, ca, caSleepS, floorCalls, maxMs });
      results.push(r);
      console.log(`${mode}, concurrency ${concurrency}: start-up ${r.startupS} s, burst ${r.burstS} s, ${r.ok}/${launches} ok, ${r.processes} rake processes, ${r.tasks} tasks${r.stopped ? ` (${r.stopped})` : ''}`);
      if (r.ca !== undefined) console.log(formatCaSummary(caSummary(r, caSleepS)));
    }
  }

  const lines = withCa
    ? caSection(results, hostText, host.cores, command, { bootS, consoleSleepS, caSleepS, floorCalls, launches })
    : bootSection(results, hostText, command, bootS, consoleSleepS, concurrencies);
  const section = lines.join('\n');
  if (options.results) await appendFile(RESULTS_PATH, section);
  console.log(section);
}

if (isMain(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
