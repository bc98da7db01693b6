/**
 * bench/launch-burst.ts: what a run is asked to do, what it measured, and the JSON report the
 * script writes with `--json FILE` (bench/run.ts reads it back through {@link BurstReportSchema}).
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import type { WorkerMode } from '../../test/support/console.js';
import { round } from '../support.js';

/** Which CA signs the burst's certificates: the sandbox (issue #9) or the `puppet cert` 2.7 double (issue #8, bench 3). */
export type BurstCa = 'sandbox' | 'puppet-cert';

/** Which classifier the burst's nodes go to: the console double by rake (issues #8, #9) or the Node Classifier double over HTTPS (issue #19). */
export type BurstClassifier = 'dashboard-rake' | 'pe-node-classifier';

/** How a run reaches the classifier: the console worker on or off, or the Node Classifier's HTTP API. */
export type BurstMode = WorkerMode | 'pe-node-classifier';

/** Console tasks a launch can run that `--console-sleep` slows (the double's per-task `faults` sleep). */
export const CONSOLE_SLEEP_TASKS = ['node:add', 'node:parameters', 'nodegroup:list', 'nodeclass:list'] as const;

/** Goal of bench 3: burst wall time / serialized-CA floor at most this. */
export const FLOOR_RATIO_GOAL = 1.15;

/** What one (mode, concurrency) run is asked to do. */
export interface RunSettings {
  /** Absolute path of rake (runs the console double; '' with the Node Classifier). */
  rake: string;
  mode: BurstMode;
  classifier: BurstClassifier;
  /** ms the Node Classifier double takes per request (pe-node-classifier only). */
  ncDelayMs: number;
  /** `[classifier] workers` (console tasks at once); undefined: the config schema's default. */
  workers?: number | undefined;
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
export interface LaunchTimes {
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
export interface Floor {
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
export interface CpuUse {
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
export interface Timeline {
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
export interface CaDetail {
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
export interface RunResult {
  mode: BurstMode;
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
  /** Console tasks run during the burst by name (`-T` for a task listing); with the Node Classifier, its requests by `METHOD path` (ids as `:id`). */
  tasksByName: Record<string, number>;
  /** puppet-cert runs only. */
  ca?: CaDetail;
  /** Set when the run hit --max-minutes. */
  stopped?: string;
}

/** The summary of a puppet-cert run (issue #8, bench 3), as bench/run.ts reads it from the JSON report. */
export interface CaBurstSummary {
  /** Console worker on (`worker`), one rake process per console call (`process`), or the Node Classifier's API. */
  mode: BurstMode;
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
  /** Node Classifier requests during the burst (pe-node-classifier runs only). */
  ncRequests?: number;
}

/** `ms` as seconds, 2 decimals. */
export const seconds = (ms: number): number => round(ms / 1000, 2);
/** Σ of the counts of `names` in a tally. */
export const count = (byName: Record<string, number>, ...names: string[]): number => names.reduce((n, name) => n + (byName[name] ?? 0), 0);
/** How many times each name occurs. */
export const tally = (names: readonly string[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
};
/** `node:add 50, node:parameters 50` (most first), or `none`. */
export const showTally = (byName: Record<string, number>): string =>
  Object.entries(byName)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name, n]) => `${name} ${n}`)
    .join(', ') || 'none';

/** The {@link CaBurstSummary} of a puppet-cert run. */
export function caSummary(r: RunResult, caSleepS: number): CaBurstSummary {
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
    ...(r.mode === 'pe-node-classifier' ? { ncRequests: allTasks } : {}),
  };
}

/** A number in the JSON report: JSON has no NaN or Infinity (`JSON.stringify` writes null), read back as NaN. */
const figure = z.number().nullable().transform((v) => v ?? Number.NaN);
const count0 = z.number().int().nonnegative();

const mode = z.enum(['worker', 'process', 'pe-node-classifier']);

/** {@link CaBurstSummary} as the JSON report holds it. */
export const CaBurstSummarySchema = z.object({
  mode,
  concurrency: count0,
  caSleepS: figure,
  wallS: figure,
  floorS: figure,
  ratio: figure,
  ok: count0,
  launches: count0,
  nodeAdd: count0,
  parameters: count0,
  lists: count0,
  otherTasks: z.number().int(),
  rakeProcesses: count0,
  caGenerate: count0,
  caOther: z.number().int(),
  serialized: z.boolean(),
  ncRequests: count0.optional(),
});

/** One (mode, concurrency) run in the JSON report: the figures bench/run.ts judges. */
export const BurstRunSummarySchema = z.object({
  mode,
  concurrency: count0,
  launches: count0,
  /** espm start until its start-up console check, s. */
  startupS: figure,
  /** First launch sent until the last answered, s. */
  burstS: figure,
  ok: count0,
  /** Rake processes espm spawned during the burst. */
  processes: count0,
  /** Console tasks run during the burst (`rake -T` excluded). */
  tasks: count0,
  stopped: z.string().optional(),
  /** puppet-cert runs only. */
  ca: CaBurstSummarySchema.optional(),
});

/** One run of the JSON report. */
export type BurstRunSummary = z.output<typeof BurstRunSummarySchema>;

/**
 * What `bench/launch-burst.ts --json FILE` writes (format 1): every run's figures and the
 * markdown section it printed (and appended to RESULTS.md unless `--no-results`).
 */
export const BurstReportSchema = z.object({
  format: z.literal(1),
  ca: z.enum(['sandbox', 'puppet-cert']),
  command: z.string(),
  runs: z.array(BurstRunSummarySchema),
  /** The markdown section, one line per element (its first line is blank). */
  section: z.array(z.string()),
});

/** The JSON report of one bench/launch-burst.ts run. */
export type BurstReport = z.output<typeof BurstReportSchema>;

// The report's CA summary reads back as exactly a CaBurstSummary.
const _summaryShape: (s: z.output<typeof CaBurstSummarySchema>) => CaBurstSummary = (s) => s;
void _summaryShape;

/**
 * The figures of a run for the JSON report.
 *
 * @param r - the run
 * @param caSleepS - `--ca-sleep`, s (puppet-cert runs)
 */
export function runSummary(r: RunResult, caSleepS: number): z.input<typeof BurstRunSummarySchema> {
  return {
    mode: r.mode,
    concurrency: r.concurrency,
    launches: r.launches,
    startupS: r.startupS,
    burstS: r.burstS,
    ok: r.ok,
    processes: r.processes,
    tasks: r.tasks,
    ...(r.stopped === undefined ? {} : { stopped: r.stopped }),
    ...(r.ca === undefined ? {} : { ca: caSummary(r, caSleepS) }),
  };
}
