/**
 * Bench 3 as bench/run.ts runs it (issues #8, #9, #19): bench/launch-burst.ts as child
 * processes (each a script that exits when done), one per run — `burst-boot` (issue #9),
 * `burst-ca` (issue #8: console + `puppet cert`) and `burst-nc` (issue #19: Node Classifier +
 * `puppet cert`) — each child's JSON report read back and judged against the goals.
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, round, type BenchResult } from '../support.js';
import { BurstReportSchema, FLOOR_RATIO_GOAL, type BurstReport } from './model.js';

/** The runs of bench 3, each selectable alone with `--only`: issue #9's slow console boot, issue #8's puppet cert CA, issue #19's Node Classifier with that CA. */
export const BURST_RUNS = ['burst-boot', 'burst-ca', 'burst-nc'] as const;
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
 * Bench 3 through bench/launch-burst.ts, as child runs of 50 launches (`--burst-launches`), all in flight,
 * worker and process modes:
 * - `burst-boot` (issue #9): console double with `boot_sleep: 10` (every rake process — so
 *   every call without the worker — takes 10 s more), sandbox CA; console tasks vs the
 *   minimum, cold total with the worker < 60 s;
 * - `burst-ca` (issue #8, bench 3): console tasks at 1 s each, `[ca] backend = puppet-cert`
 *   against the `puppet cert` double at 0.5 s per call; node:add, parameters tasks and CA
 *   processes = launches, wall time / serialized-CA floor ≤ 1.15;
 * - `burst-nc` (issue #19, bench 3 on the Node Classifier): `[classifier] backend =
 *   pe-node-classifier` against the Node Classifier double at 100 ms per request, the same CA;
 *   wall time / serialized-CA floor ≤ 1.15, Node Classifier requests per launch (the minimum:
 *   1 group create + 1 pin, plus the 2 cold-cache lists once), CA processes = launches.
 *
 * @param maxMinutes - each burst is stopped after this long (a child is killed after all of
 *   its bursts' time and its floors', plus a minute)
 * @param runs - which (default all)
 * @param launches - launches per burst (default 50, all in flight)
 */
export async function launchBurstBench(maxMinutes = 4, runs: readonly BurstRun[] = BURST_RUNS, launches = 50): Promise<BenchResult> {
  const common = ['--launches', String(launches), '--concurrency', String(launches), '--max-minutes', String(maxMinutes), '--no-results'];
  const modes = ['--modes', 'worker,process'];
  const plan: Array<{ run: BurstRun; args: string[]; killAfterMs: number }> = [
    { run: 'burst-boot', args: ['bench/launch-burst.ts', '--boot', '10', ...modes, ...common], killAfterMs: (2 * maxMinutes + 1) * 60_000 },
    {
      run: 'burst-ca',
      args: ['bench/launch-burst.ts', '--ca', 'puppet-cert', '--ca-sleep', '0.5', '--console-sleep', '1', ...modes, ...common],
      // Two bursts, and before each a floor of 50 direct CA calls (≈ 40 s here).
      killAfterMs: (2 * (maxMinutes + 2) + 1) * 60_000,
    },
    {
      run: 'burst-nc',
      args: ['bench/launch-burst.ts', '--classifier', 'pe-node-classifier', '--nc-delay', '100', '--ca', 'puppet-cert', '--ca-sleep', '0.5', ...common],
      // One burst and its floor.
      killAfterMs: (maxMinutes + 3) * 60_000,
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
        failed(`(bench 3, ${run === 'burst-nc' ? '--classifier pe-node-classifier ' : ''}--ca puppet-cert) exited ${child.code}`);
        continue;
      }
      for (const s of summaries) {
        const all = s.ok === s.launches;
        if (run === 'burst-nc') {
          // The minimum: the group create and the pin (one chosen group) per launch, and once the cold-cache lists (groups, classes).
          const minimum = 2 * s.launches + 2;
          result.figures.push(
            {
              label: `Node Classifier at 100 ms, puppet-cert CA: wall ${s.wallS} s / serialized-CA floor ${s.floorS} s, ${s.ok}/${s.launches} ok`,
              value: s.ratio.toFixed(3),
              unit: '×',
              goal: `≤ ${FLOOR_RATIO_GOAL}`,
              met: s.ratio <= FLOOR_RATIO_GOAL && all,
            },
            {
              label: `Node Classifier at 100 ms: requests for ${s.launches} launches (${round((s.ncRequests ?? 0) / Math.max(1, s.launches), 2)} per launch)`,
              value: s.ncRequests ?? NaN,
              unit: '',
              goal: `the minimum, ${minimum} (group create + pin per launch, 2 lists)`,
              met: (s.ncRequests ?? Infinity) <= minimum && all,
            },
            {
              label: `Node Classifier at 100 ms: CA processes (generate ${s.caGenerate}, other ${s.caOther}; serialized: ${s.serialized ? 'yes' : 'NO'})`,
              value: s.caGenerate + s.caOther,
              unit: '',
              goal: `one generate per launch, ${s.launches}, nothing else`,
              met: s.caGenerate === s.launches && s.caOther === 0 && s.serialized && all,
            },
          );
          continue;
        }
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
      result.raw.push(
        run === 'burst-nc'
          ? `**Issue #19, bench 3: Node Classifier at 100 ms per request, puppet cert CA at 0.5 s per call** (${child.wallS} s):`
          : `**Issue #8, bench 3: console tasks at 1 s, puppet cert CA at 0.5 s per call** (${child.wallS} s):`,
        ...section.raw,
        '',
      );
      result.analysis.push(...section.analysis);
    }
  }
  result.wallS = round((Date.now() - started) / 1000);
  if (failures.length === chosen.length) return { ...result, skipped: failures.join(' | ') };
  if (failures.length > 0) result.analysis.push(...failures.map((f) => `- Failed: ${f}`));
  return result;
}

