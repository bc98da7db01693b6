/**
 * bench/launch-burst.ts's measurements: the `puppet cert` double's invocations.log, CPU use
 * from /proc, the serialized-CA floor (direct console and CA calls, no espm) and the split of
 * a burst's wall time from the CA's side.
 *
 * @packageDocumentation
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecaCommandRunner } from '../../src/exec/command.js';
import { PUPPET_CERT_DOUBLE, type PuppetCertMaster } from '../../test/support/ca.js';
import { msSince, round } from '../support.js';
import type { BurstClassifierSide } from './classifier.js';
import { seconds, type CpuUse, type Floor, type LaunchTimes, type RunSettings, type Timeline } from './model.js';

/** Polls `condition` every 50 ms; throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One line of the `puppet cert` double's invocations.log (the fields used here). */
export interface CaLogLine {
  event: 'start' | 'end';
  pid: number;
  argv: string[];
  action: string | null;
  start_ms?: number;
  end_ms?: number;
}

/** The lines of the `puppet cert` double's invocations.log (none when absent). */
export async function caLog(master: PuppetCertMaster): Promise<CaLogLine[]> {
  const text = await readFile(join(master.dir, 'invocations.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as CaLogLine);
}

/** Empties the `puppet cert` double's invocations.log. */
export const clearCaLog = (master: PuppetCertMaster): Promise<void> => writeFile(join(master.dir, 'invocations.log'), '');

/** A CPU reading: machine busy ticks, and this process's with its children's (exited and live). */
export interface CpuReading {
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

/** This moment's CPU reading (/proc/stat, /proc/self/stat and live children). */
export async function cpuReading(): Promise<CpuReading> {
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

/** CPU used between two readings, ms. */
export function cpuUse(from: CpuReading, to: CpuReading): CpuUse {
  const machineMs = (to.machineTicks - from.machineTicks) * 10;
  const oursMs = (to.oursTicks - from.oursTicks) * 10;
  return { wallMs: to.at - from.at, machineMs, oursMs, othersMs: Math.max(0, machineMs - oursMs) };
}

/** `ours 12.3 CPU-s, other jobs 4.5 CPU-s (11% of 2 cores)` */
export function showCpu(c: CpuUse, cores: number): string {
  return `ours ${seconds(c.oursMs)} CPU-s, other jobs on the machine ${seconds(c.othersMs)} CPU-s (${round((100 * c.othersMs) / Math.max(1, c.wallMs * cores), 0)}% of ${cores} cores over ${seconds(c.wallMs)} s)`;
}

/**
 * The serialized-CA floor: one direct create (the classifier side's: rake tasks, or Node
 * Classifier requests), then `floorCalls` direct CA calls one after the other, with espm's own
 * runner (src/exec: execa, the same argv, scrubbed environment and timeouts) and nothing else
 * of espm.
 */
export async function measureFloor(settings: RunSettings, classifier: BurstClassifierSide, master: PuppetCertMaster): Promise<Floor> {
  const runner = new ExecaCommandRunner();
  const cpuFrom = await cpuReading();
  const { addMs, parametersMs } = await classifier.directCreate(`floor-${settings.mode}.example.test`);
  // src/ca/puppet-cert.ts issue(): puppet cert generate NAME --color false --config <puppet.conf>, [ca] timeout 60 s.
  const callsMs: number[] = [];
  const spans: Array<{ start: number; end: number }> = [];
  for (let i = 0; i < settings.floorCalls; i++) {
    const certname = `floor-${settings.mode}-${i}.example.test`;
    const spec = { file: PUPPET_CERT_DOUBLE, args: ['cert', 'generate', certname, '--color', 'false', '--config', master.confPath], timeoutMs: 60_000 };
    const start = Date.now();
    const t = process.hrtime.bigint();
    const r = await runner.run(spec);
    callsMs.push(msSince(t));
    if (r.exitCode !== 0 || /^err:/m.test(r.stdout)) throw new Error(`floor: ${spec.file} ${spec.args.join(' ')} failed (exit ${r.exitCode}): ${r.stdout}${r.stderr}`);
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
export function timeline(
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
