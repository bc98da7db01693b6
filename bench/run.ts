/**
 * `npm run bench` (issue #8): runs the five benchmarks one after the other, prints each figure
 * next to its goal, and appends a section to bench/RESULTS.md with the machine (cores, memory,
 * Node, load average), date, command and raw numbers. Figures are ratios against a baseline
 * measured in the same run wherever there is one; nothing here is a test.
 *
 *   npm run build && npx tsx bench/run.ts [--only startup,overhead,discovery,burst,ca,puppetdb,nc-requests,nc-overhead,enc,autosign] [--no-results]
 *     [--burst-minutes 4] [--burst-launches 50]
 *     (--only also takes burst-boot, burst-ca or burst-nc: one of bench 3's three runs)
 *
 * 1. bench/overhead.ts — espm vs the same backend command run directly (doubles, zero sleep)
 * 2. bench/discovery.ts — 200 concurrent lists against a 2 s console; answers/s from the cache
 * 3. bench/launch-burst.ts — launch burst, console worker on vs off, run as child processes
 *    (bench/launch-burst/runs.ts):
 *    issue #9's (`--boot 10`: the console's Rails boot takes 10 s; sandbox CA; cold total with
 *    the worker < 60 s) and issue #8's bench 3 (`--ca puppet-cert --ca-sleep 0.5
 *    --console-sleep 1`: console tasks at 1 s, the `puppet cert` double at 0.5 s per call; spawn
 *    counts, and wall time vs the serialized-CA floor measured in the same run, ≤ 1.15×).
 *    and issue #19's bench 3 on the Node Classifier (`--classifier pe-node-classifier --nc-delay
 *    100 --ca puppet-cert --ca-sleep 0.5`: the same floor ratio, and its requests per launch).
 *    `--only burst` runs all three; `--only burst-boot`, `burst-ca` or `burst-nc` one of them.
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
import { appendFile, readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { autosignBench } from './autosign.js';
import { caBench } from './ca.js';
import { discoveryBench } from './discovery.js';
import { encBench } from './enc.js';
import { BURST_RUNS, launchBurstBench } from './launch-burst/runs.js';
import { ncOverheadBench } from './nc-overhead.js';
import { ncRequestsBench } from './nc-requests.js';
import { overheadBench } from './overhead.js';
import { puppetdbBench } from './puppetdb.js';
import { startupBench } from './startup.js';
import { assertBuilt, figureLine, loadAverage, machine, printResult, RESULTS_PATH, round, type BenchResult } from './support.js';

export { BURST_RUNS, launchBurstBench, type BurstRun } from './launch-burst/runs.js';

/** Options of {@link runBenches}. */
export interface RunOptions {
  /** Benches to run (default all): {@link BENCHES}; or burst-boot / burst-ca / burst-nc for one run of burst. */
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
  // `burst` runs every launch burst; `burst-boot` / `burst-ca` / `burst-nc` one of them.
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
    .option('--only <list>', `comma-separated subset of ${BENCHES.join(',')} (or ${BURST_RUNS.join(', ')}: one run of burst)`)
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
