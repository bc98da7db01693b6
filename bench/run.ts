/**
 * `npm run bench` (issue #8): runs the five benchmarks one after the other, prints each figure
 * next to its goal, and appends a section to bench/RESULTS.md with the machine (cores, memory,
 * Node, load average), date, command and raw numbers. Figures are ratios against a baseline
 * measured in the same run wherever there is one; nothing here is a test.
 *
 *   npm run build && npx tsx bench/run.ts [--only startup,overhead,discovery,burst,ca,puppetdb,nc-requests,nc-overhead,enc,autosign] [--no-results]
 *     [--burst-minutes 4] [--burst-launches 50]
 *     (--only also takes burst-boot or burst-ca: one of bench 3's two runs)
 *
 * 1. bench/overhead.ts — espm vs the same backend command run directly (doubles, zero sleep)
 * 2. bench/discovery.ts — 200 concurrent lists against a 2 s console; answers/s from the cache
 * 3. bench/launch-burst.ts — launch burst, console worker on vs off, run twice as child processes:
 *    issue #9's (`--boot 10`: the console's Rails boot takes 10 s; sandbox CA; cold total with
 *    the worker < 60 s) and issue #8's bench 3 (`--ca puppet-cert --ca-sleep 0.5
 *    --console-sleep 1`: console tasks at 1 s, the `puppet cert` double at 0.5 s per call; spawn
 *    counts, and wall time vs the serialized-CA floor measured in the same run, ≤ 1.15×).
 *    `--only burst` runs both; `--only burst-boot` or `--only burst-ca` just one of them.
 * 4. bench/startup.ts — spawn → first /healthz, idle RSS
 * 5. bench/ca.ts — puppetserver-ca vs puppetserver-api on a real puppetserver (skipped, with
 *    the reason, when it is not installed)
 * 6. bench/puppetdb.ts — DELETE with `[puppetdb] url` on vs off on a real PuppetDB: added p50
 *    and PuppetDB requests per DELETE (skipped, with the reason, when PuppetDB is not installed)
 * 7. bench/nc-requests.ts — Node Classifier requests per launch and per termination
 *    and bench/nc-overhead.ts — espm's list/create/delete vs the same Node Classifier requests
 *    sent directly (the double at 100 ms per request), p50 ratio ≤ 1.10
 * 8. bench/enc.ts — `espm enc` (through bin/espm-enc) vs a minimal Ruby ENC: owned ≤ 1.0×,
 *    not owned ≤ +20 ms over the Ruby fallback alone (p50 and p99)
 * 9. bench/autosign.ts — `espm autosign` per CSR vs a minimal Ruby policy script (≤ 1.0×)
 *
 * Bounded: every bench has fixed counts or durations; the launch burst is stopped after
 * `--burst-minutes`. Loopback only.
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { caBench } from './ca.js';
import { autosignBench } from './autosign.js';
import { discoveryBench } from './discovery.js';
import { encBench } from './enc.js';
import { BurstReportSchema, FLOOR_RATIO_GOAL, type BurstReport } from './launch-burst.js';
import { ncOverheadBench } from './nc-overhead.js';
import { ncRequestsBench } from './nc-requests.js';
import { overheadBench } from './overhead.js';
import { puppetdbBench } from './puppetdb.js';
import { startupBench } from './startup.js';
import { assertBuilt, figureLine, loadAverage, machine, printResult, RESULTS_PATH, ROOT, round, type BenchResult } from './support.js';

/** Options of {@link runBenches}. */
export interface RunOptions {
  /** Benches to run (default all): {@link BENCHES}; or burst-boot / burst-ca for one half of burst. */
  only?: readonly string[];
  /** Append the section to bench/RESULTS.md (default true). */
  results?: boolean;
  /** Calls per side for list/create/delete in bench 1 (default 200). */
  calls?: number;
  /** Calls per side for certificates in bench 1 (default 200). */
  certCalls?: number;
  /** Stop the launch burst after this many minutes (default 4). */
  burstMinutes?: number;
  /** Launches per burst in bench 3 (default 50; fewer for a quick check of the bench itself). */
  burstLaunches?: number;
}

/** Every bench, in the order run. */
export const BENCHES = ['startup', 'overhead', 'discovery', 'burst', 'ca', 'puppetdb', 'nc-requests', 'nc-overhead', 'enc', 'autosign'] as const;

/** The two runs of bench 3, each selectable alone with `--only`: issue #9's slow console boot, issue #8's puppet cert CA. */
export const BURST_RUNS = ['burst-boot', 'burst-ca'] as const;
/** One of {@link BURST_RUNS}. */
export type BurstRun = (typeof BURST_RUNS)[number];

/** What a bench/launch-burst.ts child printed, the JSON report it wrote, and how it ended. */
interface ChildRun {
  /** Exit status (null when killed). */
  code: number | null;
  stdout: string;
  stderr: string;
  wallS: number;
  /** The child's `--json` report, validated; undefined when it wrote none or an invalid one. */
  report?: BurstReport;
  /** Why there is no report (missing file, invalid JSON, schema mismatch). */
  reportError?: string;
}

/**
 * Runs bench/launch-burst.ts as a child (it is a script, and exits when done) with `--json`
 * into a temporary file, killed after `killAfterMs`; reads the report back through
 * {@link BurstReportSchema}.
 */
async function launchBurstChild(args: readonly string[], killAfterMs: number): Promise<ChildRun> {
  const command = `npx tsx ${args.join(' ')}`;
  const dir = await mkdtemp(join(tmpdir(), 'espm-bench-burst-'));
  const jsonPath = join(dir, 'report.json');
  const started = Date.now();
  const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, [...args, '--json', jsonPath], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  console.log(`  running ${command} …`);
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGTERM'), killAfterMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  const run: ChildRun = { code, stdout, stderr, wallS: round((Date.now() - started) / 1000) };
  try {
    const parsed = BurstReportSchema.safeParse(JSON.parse(await readFile(jsonPath, 'utf8')));
    if (parsed.success) run.report = parsed.data;
    else run.reportError = `invalid --json report: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
  } catch (err) {
    run.reportError = `no --json report: ${(err as Error).message}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return run;
}

/**
 * The markdown section of a launch-burst child's report (from its `## Launch burst` heading):
 * raw lines (tables set apart by blank lines, so that they render) and the lines under its
 * `### Where the time goes` heading.
 */
function childSection(text: string): { raw: string[]; analysis: string[] } {
  const start = text.indexOf('## Launch burst');
  const section = (start < 0 ? '' : text.slice(start))
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '' && !l.startsWith('- Command:'));
  const split = section.indexOf('### Where the time goes');
  const body = split < 0 ? section : section.slice(0, split);
  const raw: string[] = [];
  body.forEach((line, i) => {
    const table = line.startsWith('|');
    if (table && !(body[i - 1] ?? '').startsWith('|')) raw.push('');
    raw.push(line);
    if (table && !(body[i + 1] ?? '').startsWith('|')) raw.push('');
  });
  return { raw, analysis: split < 0 ? [] : section.slice(split + 1) };
}

/**
 * Bench 3 through bench/launch-burst.ts, as two child runs of 50 launches (`--burst-launches`), all in flight,
 * worker and process modes:
 * - `burst-boot` (issue #9): console double with `boot_sleep: 10` (every rake process — so
 *   every call without the worker — takes 10 s more), sandbox CA; console tasks vs the
 *   minimum, cold total with the worker < 60 s;
 * - `burst-ca` (issue #8, bench 3): console tasks at 1 s each, `[ca] backend = puppet-cert`
 *   against the `puppet cert` double at 0.5 s per call; node:add, parameters tasks and CA
 *   processes = launches, wall time / serialized-CA floor ≤ 1.15.
 *
 * @param maxMinutes - each burst is stopped after this long (a child is killed after all of
 *   its bursts' time and its floors', plus a minute)
 * @param runs - which of the two (default both)
 * @param launches - launches per burst (default 50, all in flight)
 */
export async function launchBurstBench(maxMinutes = 4, runs: readonly BurstRun[] = BURST_RUNS, launches = 50): Promise<BenchResult> {
  const common = ['--launches', String(launches), '--concurrency', String(launches), '--modes', 'worker,process', '--max-minutes', String(maxMinutes), '--no-results'];
  const plan: Array<{ run: BurstRun; args: string[]; killAfterMs: number }> = [
    { run: 'burst-boot', args: ['bench/launch-burst.ts', '--boot', '10', ...common], killAfterMs: (2 * maxMinutes + 1) * 60_000 },
    {
      run: 'burst-ca',
      args: ['bench/launch-burst.ts', '--ca', 'puppet-cert', '--ca-sleep', '0.5', '--console-sleep', '1', ...common],
      // Two bursts, and before each a floor of 50 direct CA calls (≈ 40 s here).
      killAfterMs: (2 * (maxMinutes + 2) + 1) * 60_000,
    },
  ];
  const chosen = plan.filter((p) => runs.includes(p.run));
  const result: BenchResult = {
    name: 'burst',
    title: '3. Launch burst (bench/launch-burst.ts)',
    command: chosen.map((p) => `npx tsx ${p.args.join(' ')}`).join('`, then `'),
    figures: [],
    raw: [],
    analysis: [],
  };
  if (!existsSync(join(ROOT, 'bench', 'launch-burst.ts'))) return { ...result, skipped: 'bench/launch-burst.ts does not exist' };
  const started = Date.now();
  const failures: string[] = [];
  for (const { run, args, killAfterMs } of chosen) {
    const child = await launchBurstChild(args, killAfterMs);
    const section = childSection((child.report?.section ?? []).join('\n'));
    const failed = (what: string): void => {
      failures.push(`${run}: bench/launch-burst.ts ${what}${child.reportError === undefined ? '' : ` (${child.reportError})`}: ${(child.stderr || child.stdout).trim().split('\n').slice(-8).join(' / ')}`);
      result.figures.push({ label: `${run}: bench/launch-burst.ts ${what}`, value: 'no figures', unit: '', goal: 'runs to the end', met: false });
    };
    if (run === 'burst-boot') {
      const runs = child.report?.runs ?? [];
      if (child.code !== 0 || runs.length === 0) {
        failed(`(issue #9, --boot 10) exited ${child.code}`);
        continue;
      }
      // The minimum: node:add + the parameters task per launch, plus one nodegroup:list and one
      // nodeclass:list (the create's group/class check, cached for the TTL).
      const minimum = 2 * launches + 2;
      for (const r of runs) {
        result.figures.push(
          {
            label: `boot 10 s, ${r.mode}: console tasks for ${launches} launches (${r.processes} rake processes)`,
            value: r.tasks,
            unit: '',
            goal: `the minimum, ${minimum} (node:add + parameters per launch, 2 lists)`,
            met: r.tasks <= minimum && r.ok === launches,
          },
          {
            label: `boot 10 s, ${r.mode}: cold total (start-up ${r.startupS} s + burst ${r.burstS} s), ${r.ok}/${launches} ok`,
            value: round(r.startupS + r.burstS, 2),
            unit: 's',
            goal: r.mode === 'worker' ? '< 60 s (issue #9)' : '',
            ...(r.mode === 'worker' ? { met: r.startupS + r.burstS < 60 && r.ok === launches } : {}),
          },
        );
      }
      result.raw.push(`**Issue #9: console boot 10 s, sandbox CA** (${child.wallS} s):`, ...section.raw, '');
      result.analysis.push(...section.analysis);
    } else {
      const summaries = (child.report?.runs ?? []).flatMap((r) => (r.ca === undefined ? [] : [r.ca]));
      if (child.code !== 0 || summaries.length === 0) {
        failed(`(bench 3, --ca puppet-cert) exited ${child.code}`);
        continue;
      }
      for (const s of summaries) {
        const all = s.ok === s.launches;
        result.figures.push(
          {
            label: `puppet-cert CA, ${s.mode}: wall ${s.wallS} s / serialized-CA floor ${s.floorS} s, ${s.ok}/${s.launches} ok`,
            value: s.ratio.toFixed(3),
            unit: '×',
            goal: `≤ ${FLOOR_RATIO_GOAL}`,
            met: s.ratio <= FLOOR_RATIO_GOAL && all,
          },
          {
            label: `puppet-cert CA, ${s.mode}: node:add tasks (${s.rakeProcesses} rake processes in all)`,
            value: s.nodeAdd,
            unit: '',
            goal: `one per launch, ${s.launches}`,
            met: s.nodeAdd === s.launches && all,
          },
          {
            label: `puppet-cert CA, ${s.mode}: parameters tasks (one parameter per launch; and ${s.lists} list tasks, ${s.otherTasks} other)`,
            value: s.parameters,
            unit: '',
            goal: `one per launch, ${s.launches}`,
            met: s.parameters === s.launches && s.otherTasks === 0 && all,
          },
          {
            label: `puppet-cert CA, ${s.mode}: CA processes (generate ${s.caGenerate}, other ${s.caOther}; serialized: ${s.serialized ? 'yes' : 'NO'})`,
            value: s.caGenerate + s.caOther,
            unit: '',
            goal: `one generate per launch, ${s.launches}, nothing else`,
            met: s.caGenerate === s.launches && s.caOther === 0 && s.serialized && all,
          },
        );
      }
      result.raw.push(`**Issue #8, bench 3: console tasks at 1 s, puppet cert CA at 0.5 s per call** (${child.wallS} s):`, ...section.raw, '');
      result.analysis.push(...section.analysis);
    }
  }
  result.wallS = round((Date.now() - started) / 1000);
  if (failures.length === chosen.length) return { ...result, skipped: failures.join(' | ') };
  if (failures.length > 0) result.analysis.push(...failures.map((f) => `- Failed: ${f}`));
  return result;
}

/**
 * Runs the benches, prints figures vs goals, appends the section to bench/RESULTS.md.
 *
 * @param options - which benches, counts, whether to append
 * @returns every bench's result
 */
export async function runBenches(options: RunOptions = {}): Promise<BenchResult[]> {
  assertBuilt();
  const only = new Set(options.only ?? BENCHES);
  const host = await machine();
  const startedAt = new Date();
  const t0 = Date.now();
  // `burst` runs both launch bursts; `burst-boot` / `burst-ca` one of them.
  const burstRuns = BURST_RUNS.filter((r) => only.has('burst') || only.has(r));
  const plan: Array<[string, () => Promise<BenchResult>]> = [
    ['startup', () => startupBench()],
    ['overhead', () => overheadBench({ calls: options.calls ?? 200, certCalls: options.certCalls ?? 200 })],
    ['discovery', () => discoveryBench()],
    ['burst', () => launchBurstBench(options.burstMinutes ?? 4, burstRuns, options.burstLaunches ?? 50)],
    ['ca', () => caBench()],
    ['puppetdb', () => puppetdbBench()],
    ['nc-requests', () => ncRequestsBench()],
    ['nc-overhead', () => ncOverheadBench()],
    ['enc', () => encBench()],
    ['autosign', () => autosignBench()],
  ];
  const results: BenchResult[] = [];
  for (const [name, bench] of plan) {
    if (name === 'burst' ? burstRuns.length === 0 : !only.has(name)) continue;
    console.log(`\n-- ${name} (load average ${loadAverage()})`);
    const started = Date.now();
    let result: BenchResult;
    try {
      result = await bench();
    } catch (err) {
      result = { name, title: name, command: '', figures: [], raw: [], analysis: [], skipped: `failed: ${(err as Error).stack ?? String(err)}`.slice(0, 2000) };
    }
    result.wallS ??= round((Date.now() - started) / 1000);
    printResult(result);
    results.push(result);
  }
  const wallS = round((Date.now() - t0) / 1000);

  console.log('\n== Figures vs goals');
  for (const r of results) {
    if (r.skipped !== undefined) console.log(`  ${r.title}: SKIPPED — ${r.skipped.split('\n')[0]}`);
    for (const f of r.figures) console.log(`  ${r.name}: ${figureLine(f)}`);
  }
  console.log(`  (${wallS} s in all)`);

  const lines = [
    '',
    `## Benchmarks — ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC (issue #8)`,
    '',
    `- Machine: ${host.text} at the start; ${loadAverage()} at the end (other jobs may share the machine: the ratios are against baselines measured in the same run, interleaved).`,
    `- Command: \`npm run build && npx tsx bench/run.ts${options.only === undefined ? '' : ` --only ${[...only].join(',')}`}\` (each bench alone: \`npx tsx bench/<name>.ts\`); ${wallS} s in all.`,
    '',
    '| bench | figure | value | goal | verdict |',
    '|---|---|---|---|---|',
    ...results.flatMap((r) =>
      r.skipped !== undefined
        ? [`| ${r.name} | — | skipped: ${r.skipped.split('\n')[0]!.replace(/\|/g, '\\|')} | | |`]
        : r.figures.map((f) => `| ${r.name} | ${f.label} | ${f.value}${f.unit === '' ? '' : ` ${f.unit}`} | ${f.goal} | ${f.met === undefined ? '' : f.met ? 'met' : '**missed**'} |`),
    ),
    '',
    ...results.flatMap((r) => [
      `### ${r.title}`,
      '',
      `Command: \`${r.command}\`${r.wallS === undefined ? '' : ` (${r.wallS} s)`}.`,
      '',
      ...(r.skipped !== undefined ? [`Skipped: ${r.skipped}`, ''] : []),
      ...r.raw,
      ...(r.analysis.length > 0 ? ['', '**Where the time goes / what would close it:**', '', ...r.analysis] : []),
      '',
    ]),
  ];
  if (options.results !== false) {
    // Re-read right before appending (someone else appends too); append, never rewrite.
    const before = await readFile(RESULTS_PATH, 'utf8').catch(() => '');
    await appendFile(RESULTS_PATH, `${before.endsWith('\n') || before === '' ? '' : '\n'}${lines.join('\n')}`);
    console.log(`\nAppended to ${RESULTS_PATH}`);
  }
  return results;
}

const isMain = process.argv[1] !== undefined && /bench\/run(\.ts)?$/.test(process.argv[1]);
if (isMain) {
  const o = new Command('bench')
    .option('--only <list>', `comma-separated subset of ${BENCHES.join(',')} (or ${BURST_RUNS.join(', ')}: one half of burst)`)
    .option('--no-results', 'print only; do not append to bench/RESULTS.md')
    .option('--calls <n>', 'bench 1: calls per side for list/create/delete', '200')
    .option('--cert-calls <n>', 'bench 1: calls per side for certificates', '200')
    .option('--burst-minutes <n>', 'bench 3: stop the launch burst after this long', '4')
    .option('--burst-launches <n>', 'bench 3: launches per burst (fewer: a quick check of the bench)', '50')
    .parse()
    .opts<{ only?: string; results: boolean; calls: string; certCalls: string; burstMinutes: string; burstLaunches: string }>();
  runBenches({
    ...(o.only === undefined ? {} : { only: o.only.split(',').map((s) => s.trim()) }),
    results: o.results,
    calls: Number(o.calls),
    certCalls: Number(o.certCalls),
    burstMinutes: Number(o.burstMinutes),
    burstLaunches: Number(o.burstLaunches),
  }).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
