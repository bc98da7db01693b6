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
 * - **issue #19, bench 3 on the Node Classifier** (`--classifier pe-node-classifier --ca
 *   puppet-cert`): the same, with `[classifier] backend = pe-node-classifier` against the Node
 *   Classifier double (test/fixtures/node-classifier/), every request answered after
 *   `--nc-delay` ms (default 100); one run (no worker modes). The floor's direct create is the
 *   create's Node Classifier requests sent directly (`POST /v1/groups`, then the pin to
 *   `default`); counted: the Node Classifier's requests during the burst, by kind.
 *
 * A launch is what the reference platform does before it starts an instance: create the node
 * with groups, classes and a parameter (`POST /v1/nodes` → `node:add`, then `node:parameters`),
 * then pre-sign its certificate (`POST /v1/certificates`; its certname = the node's name).
 * `--concurrency` launches are in flight at a time. Each (mode, concurrency) run gets a fresh
 * console, a fresh CA and a fresh espm (in this process, so that its runner counts what it
 * spawns); the burst starts with espm's list cache cold. "Cold" includes espm's start-up (the
 * task list and, with the worker, its boot and self-check).
 *
 *   npx tsx bench/launch-burst.ts [--classifier dashboard-rake|pe-node-classifier] [--nc-delay 100] [--ca sandbox|puppet-cert] [--ca-sleep 0.5] [--console-sleep 1]
 *     [--launches 50] [--boot 10] [--concurrency 50,10] [--modes worker,process]
 *     [--floor-calls 50] [--max-minutes 15] [--no-results] [--json FILE]
 *
 * Prints one summary line per run (for a person), then a markdown section, which it also
 * appends to bench/RESULTS.md unless `--no-results`. With `--json FILE` it also writes the
 * figures and the section as JSON ({@link BurstReportSchema}, bench/launch-burst/model.ts):
 * what bench/run.ts reads. Needs ruby (the `puppet cert` double) and, with the console, rake.
 *
 * Files: bench/launch-burst/model.ts (settings, results, the JSON report), classifier.ts (the
 * console or Node Classifier double, and the floor's direct create), measure.ts (the
 * floor, CPU, the CA-side timeline), burst.ts (one run), report.ts (markdown).
 * Bounded: a burst that takes longer than `--max-minutes` is stopped and reported as such.
 *
 * @packageDocumentation
 */
import { appendFile, writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { z } from 'zod';
import { execa } from 'execa';
import { findRake, type WorkerMode } from '../test/support/console.js';
import { run } from './launch-burst/burst.js';
import { BurstReportSchema, caSummary, CONSOLE_SLEEP_TASKS, runSummary, type BurstCa, type BurstClassifier, type BurstMode, type CaBurstSummary, type RunResult } from './launch-burst/model.js';
import { bootSection, caSection } from './launch-burst/report.js';
import { isMain, machine, RESULTS_PATH } from './support.js';

export { BurstReportSchema, FLOOR_RATIO_GOAL, type BurstReport, type CaBurstSummary } from './launch-burst/model.js';

/**
 * The one-line summary of a puppet-cert run, for a person reading the output.
 *
 * @param s - the run's figures
 * @returns e.g. `worker, concurrency 50, CA puppet-cert at 0.5 s: wall 40.1 s, floor 37.2 s, ratio 1.078×, 50/50 ok; console tasks: node:add 50, parameters 50, lists 2, other 0; 100 rake processes; CA processes: generate 50, other 0, serialized yes`
 */
export function formatCaSummary(s: CaBurstSummary): string {
  if (s.ncRequests !== undefined) {
    return `${s.mode}, concurrency ${s.concurrency}, CA puppet-cert at ${s.caSleepS} s: wall ${s.wallS} s, floor ${s.floorS} s, ratio ${s.ratio.toFixed(3)}×, ${s.ok}/${s.launches} ok; Node Classifier requests ${s.ncRequests}; CA processes: generate ${s.caGenerate}, other ${s.caOther}, serialized ${s.serialized ? 'yes' : 'no'}`;
  }
  return (
    `${s.mode}, concurrency ${s.concurrency}, CA puppet-cert at ${s.caSleepS} s: wall ${s.wallS} s, floor ${s.floorS} s, ratio ${s.ratio.toFixed(3)}×, ${s.ok}/${s.launches} ok; ` +
    `console tasks: node:add ${s.nodeAdd}, parameters ${s.parameters}, lists ${s.lists}, other ${s.otherTasks}; ${s.rakeProcesses} rake processes; ` +
    `CA processes: generate ${s.caGenerate}, other ${s.caOther}, serialized ${s.serialized ? 'yes' : 'no'}`
  );
}

async function main(): Promise<void> {
  const options = new Command('launch-burst')
    .option('--classifier <backend>', 'dashboard-rake (the console double by rake) or pe-node-classifier (the Node Classifier double; needs --ca puppet-cert)', 'dashboard-rake')
    .option('--nc-delay <ms>', 'ms the Node Classifier double takes per request (pe-node-classifier)', '100')
    .option('--ca <backend>', 'sandbox (issue #9) or puppet-cert (issue #8, bench 3)', 'sandbox')
    .option('--ca-sleep <s>', 'seconds the puppet cert double takes per call (puppet-cert; default 0.5)')
    .option('--console-sleep <s>', `seconds each of ${CONSOLE_SLEEP_TASKS.join(', ')} sleeps (faults knob; default 0 with sandbox, 1 with puppet-cert)`)
    .option('--launches <n>', 'launches in the burst', '50')
    .option('--boot <s>', "seconds the console double's Rails boot takes (default 10 with sandbox, 0 with puppet-cert)")
    .option('--concurrency <list>', 'launches in flight at a time, one run each (default 50,10 with sandbox, 50 with puppet-cert)')
    .option('--modes <list>', 'worker and/or process', 'worker,process')
    .option('--workers <n>', "[classifier] workers: console tasks at once (warm workers, or rake processes in process mode); default the config schema's (0 = the core count + 1)")
    .option('--floor-calls <n>', 'direct CA calls timed for the floor, ≥ 10 (default: one per launch; fewer are scaled up)')
    .option('--max-minutes <n>', 'stop a burst after this long', '15')
    .option('--no-results', 'print only; do not append to bench/RESULTS.md')
    .option('--json <file>', 'also write the figures and the markdown section as JSON (what bench/run.ts reads)')
    .parse()
    .opts<{ classifier: string; ncDelay: string; ca: string; caSleep?: string; consoleSleep?: string; launches: string; boot?: string; concurrency?: string; modes: string; floorCalls?: string; workers?: string; maxMinutes: string; results: boolean; json?: string }>();
  if (options.ca !== 'sandbox' && options.ca !== 'puppet-cert') throw new Error(`--ca: sandbox or puppet-cert, not ${options.ca}`);
  const ca: BurstCa = options.ca;
  const withCa = ca === 'puppet-cert';
  if (!withCa && (options.caSleep !== undefined || options.floorCalls !== undefined)) throw new Error('--ca-sleep and --floor-calls need --ca puppet-cert');
  if (options.classifier !== 'dashboard-rake' && options.classifier !== 'pe-node-classifier') throw new Error(`--classifier: dashboard-rake or pe-node-classifier, not ${options.classifier}`);
  const classifier: BurstClassifier = options.classifier;
  const nc = classifier === 'pe-node-classifier';
  if (nc && !withCa) throw new Error('--classifier pe-node-classifier needs --ca puppet-cert (bench 3)');
  const rake = nc ? '' : await findRake();
  if (rake === undefined) throw new Error('rake is not installed (apt-get install ruby rake)');
  const ncDelayMs = Number(options.ncDelay);
  const workers = options.workers === undefined ? undefined : Number(options.workers);
  if (workers !== undefined && (nc || !Number.isInteger(workers) || workers < 0)) throw new Error('--workers: a whole number ≥ 0, with the console (dashboard-rake) only');
  const launches = Number(options.launches);
  const bootS = Number(options.boot ?? (withCa ? 0 : 10));
  const consoleSleepS = Number(options.consoleSleep ?? (withCa ? 1 : 0));
  const caSleepS = Number(options.caSleep ?? 0.5);
  const floorCalls = Math.min(launches, Number(options.floorCalls ?? launches));
  if (withCa && !(floorCalls >= Math.min(10, launches))) throw new Error('--floor-calls: at least 10 (or every launch)');
  const concurrencies = (options.concurrency ?? (withCa ? '50' : '50,10')).split(',').map(Number);
  const modes: BurstMode[] = nc ? ['pe-node-classifier'] : (options.modes.split(',') as WorkerMode[]);
  const maxMs = Number(options.maxMinutes) * 60_000;
  const command =
    `npx tsx bench/launch-burst.ts${nc ? ` --classifier pe-node-classifier --nc-delay ${ncDelayMs}` : ''}${withCa ? ` --ca puppet-cert --ca-sleep ${caSleepS}` : ''}${!nc && (consoleSleepS > 0 || withCa) ? ` --console-sleep ${consoleSleepS}` : ''}` +
    ` --launches ${launches}${nc ? '' : ` --boot ${bootS}`} --concurrency ${concurrencies.join(',')}${nc ? '' : ` --modes ${modes.join(',')}`}${withCa && floorCalls !== launches ? ` --floor-calls ${floorCalls}` : ''}${workers === undefined ? '' : ` --workers ${workers}`}`;
  const host = await machine();
  const ruby = (await execa('ruby', ['-v'], { reject: false })).stdout.split(' ').slice(0, 2).join(' ');
  const rakeVersion = nc ? '' : `, ${(await execa(rake, ['--version'], { reject: false })).stdout.trim()}`;
  const hostText = `${host.text}, ${ruby}${rakeVersion}`;

  const results: RunResult[] = [];
  for (const concurrency of concurrencies) {
    for (const mode of modes) {
      const r = await run({ rake, mode, classifier, ncDelayMs, workers, concurrency, launches, bootS, consoleSleepS, ca, caSleepS, floorCalls, maxMs });
      results.push(r);
      console.log(`${mode}, concurrency ${concurrency}: start-up ${r.startupS} s, burst ${r.burstS} s, ${r.ok}/${launches} ok, ${r.processes} rake processes, ${r.tasks} tasks${r.stopped ? ` (${r.stopped})` : ''}`);
      if (r.ca !== undefined) console.log(formatCaSummary(caSummary(r, caSleepS)));
    }
  }

  const lines = withCa
    ? caSection(results, hostText, host.cores, command, { bootS, consoleSleepS, caSleepS, floorCalls, launches, ncDelayMs })
    : bootSection(results, hostText, command, bootS, consoleSleepS, concurrencies);
  const section = lines.join('\n');
  if (options.results) await appendFile(RESULTS_PATH, section);
  console.log(section);
  if (options.json !== undefined) {
    // NaN and Infinity become null in JSON; BurstReportSchema reads them back as NaN.
    const report: z.input<typeof BurstReportSchema> = { format: 1, ca, command, runs: results.map((r) => runSummary(r, caSleepS)), section: lines };
    await writeFile(options.json, `${JSON.stringify(report, null, 2)}\n`);
  }
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