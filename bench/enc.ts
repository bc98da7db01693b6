/**
 * `espm enc` per call (issue #14): puppetserver runs the ENC once per catalog compile of every
 * node, so its cost is paid all day. Measured against a minimal Ruby ENC reading one YAML file
 * (the kind of script sites run), in the same run, interleaved call by call:
 *
 * - an owned node: `bin/espm-enc -f <classification file> N` (the external_nodes command
 *   espm_setup prints: the sh front, then `espm enc`) vs `enc.rb N` (goal: p50 and p99
 *   ratio ≤ 1.0);
 * - a node espm does not own, with that Ruby ENC as `[classifier] fallback_enc` (written as
 *   the daemon writes it: `owned/.fallback` and `owned/.timeout` by src/classifier/enc-owned.ts
 *   `writeOwnedNames`, which the front runs directly — checked before measuring):
 *   `bin/espm-enc … M` vs `enc.rb M` alone (goal: ≤ +20 ms at p50 and p99);
 * - for comparison, the same two calls to `bin/espm enc -f <classification file>` directly
 *   (the command before the front: every call starts Node.js).
 *
 * Both sides run from a spawn in this process with the same small environment (PATH, LANG):
 * puppetserver passes the JVM's environment, and this sandbox's `NODE_EXTRA_CA_CERTS` alone
 * would add ≈ 70 ms to every node start (it loads a CA bundle) — a site's puppetserver has no
 * such variable. Both files hold the same 1000 nodes.
 *
 * The machine is shared: each figure is the median over `--runs` runs of a ratio or difference
 * taken within one run; the front's own cost is also measured with `/bin/true` as the fallback.
 *
 *   npm run build && npx tsx bench/enc.ts [--runs 5] [--calls 100] [--no-results]
 *
 * bench/run.ts runs it as `enc` ({@link encBench}).
 *
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { ENC_FILE_FORMAT, type EncFile } from '../src/classifier/enc-file.js';
import { writeOwnedNames } from '../src/classifier/enc-owned.js';
import { parseGroups, renderAnswer, renderNode } from '../src/classifier/enc-groups.js';
import { loadAverage, machine, removeDir, RESULTS_PATH, ROOT, round, runAlone, summarize, tempDir, type BenchResult, type Summary } from './support.js';

const NODES = 1000;
const ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' };
const ESPM = join(ROOT, 'bin', 'espm');
const FRONT = join(ROOT, 'bin', 'espm-enc');

/** The minimal Ruby ENC: one YAML file, certname → answer. */
const RUBY_ENC = `#!/usr/bin/ruby
require 'yaml'
nodes = YAML.safe_load(File.read(File.join(__dir__, 'nodes.yaml')))
node = nodes[ARGV[0]]
print(node ? node.to_yaml : { 'classes' => {} }.to_yaml)
`;

const GROUPS = parseGroups('webservers:\n  classes:\n    webserver: {port: 8080}\n  parameters: {tier: web}\n', '/bench/groups.yaml');

function timeCall(file: string, args: string[]): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(file, args, { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${String(result.status)}: ${String(result.stderr)}`);
  return ms;
}

/** A row of the table: figure, value, goal, verdict (`met`, `not met` or '' for information). */
type Row = [string, string, string, string];

/**
 * Runs the bench: `calls` calls per side per run, `runs` runs.
 *
 * @returns figures (owned: ratio ≤ 1.0× at p50 and p99; not owned: ≤ +20 ms at p50 and p99)
 *   and the table with every side's order statistics as raw lines
 * @throws when a call exits non-zero
 */
export async function encBench(calls = 100, runs = 5): Promise<BenchResult> {
  const dir = await tempDir('espm-bench-enc-');
  try {
    const rubyEnc = join(dir, 'enc.rb');
    await writeFile(rubyEnc, RUBY_ENC);
    await chmod(rubyEnc, 0o755);
    const nodes: EncFile['nodes'] = {};
    const rubyNodes: Record<string, unknown> = {};
    for (let i = 0; i < NODES; i++) {
      const name = `web${i}.example.test`;
      const node = { name, groups: ['webservers'], classes: ['motd'], parameters: { motd_message: `hello ${i}` } };
      nodes[name] = { groups: node.groups, classes: node.classes, parameters: node.parameters, yaml: renderNode(node, GROUPS, 'production') };
      rubyNodes[name] = { classes: { webserver: { port: 8080 }, motd: {} }, parameters: { tier: 'web', motd_message: `hello ${i}` }, environment: 'production' };
    }
    await writeFile(join(dir, 'nodes.yaml'), stringify(rubyNodes));
    /**
     * What the daemon writes with `fallback_enc = <fallback>` and `timeout = 10`: the
     * classification file and the `owned` generation holding `.fallback` and `.timeout`.
     */
    const classificationWith = async (sub: string, fallback: string[]): Promise<string> => {
      const classification = join(dir, sub, 'classification.json');
      await mkdir(join(dir, sub));
      const file: EncFile = { format: ENC_FILE_FORMAT, written_at: new Date().toISOString(), fallback, fallback_timeout_ms: 10_000, unowned: renderAnswer({ classes: {} }), nodes };
      await writeOwnedNames(classification, Object.keys(nodes), undefined, { argv: fallback, timeoutMs: 10_000 });
      await writeFile(classification, JSON.stringify(file));
      return classification;
    };
    const classification = await classificationWith('ruby', [rubyEnc]);
    const withTrue = await classificationWith('true', ['/bin/true']);

    const owned = 'web500.example.test';
    const other = 'legacy.example.test';
    // The not-owned path runs owned/.fallback itself, never `espm enc`: with a fallback in the
    // classification file that answers differently, the front still gives the `.fallback` one.
    const probe = await classificationWith('probe', ['/bin/echo', 'front']);
    const probeFile = JSON.parse(await readFile(probe, 'utf8')) as EncFile;
    await writeFile(probe, JSON.stringify({ ...probeFile, fallback: ['/bin/echo', 'node'] }));
    const answer = spawnSync(FRONT, ['-f', probe, other], { env: ENV, encoding: 'utf8' });
    if (answer.stdout !== `front ${other}\n`) throw new Error(`the front did not run the fallback directly: ${JSON.stringify(answer.stdout)} ${answer.stderr}`);
    const sides = {
      rubyOwned: () => timeCall(rubyEnc, [owned]),
      frontOwned: () => timeCall(FRONT, ['-f', classification, owned]),
      espmOwned: () => timeCall(ESPM, ['enc', '-f', classification, owned]),
      rubyOther: () => timeCall(rubyEnc, [other]),
      frontOther: () => timeCall(FRONT, ['-f', classification, other]),
      espmOther: () => timeCall(ESPM, ['enc', '-f', classification, other]),
      // The front's own cost, without the Ruby ENC's noise: a fallback that does nothing.
      trueAlone: () => timeCall('/bin/true', [other]),
      frontTrue: () => timeCall(FRONT, ['-f', withTrue, other]),
    };
    type Side = keyof typeof sides;
    const order = Object.keys(sides) as Side[];
    for (const side of order) sides[side](); // warm the page cache
    const started = Date.now();
    let seed = 14;
    /** One run: `calls` calls per side, interleaved; each side's p50 and p99. */
    const measure = (): Record<Side, Summary> => {
      const times = Object.fromEntries(order.map((k) => [k, [] as number[]])) as Record<Side, number[]>;
      for (let i = 0; i < calls; i++) {
        // A fresh order each round (seeded shuffle): load bursts from the shared machine, and
        // whatever one call leaves behind for the next, hit every side alike.
        const round = [...order];
        for (let j = round.length - 1; j > 0; j--) {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          const k = seed % (j + 1);
          [round[j], round[k]] = [round[k]!, round[j]!];
        }
        for (const side of round) times[side].push(sides[side]());
      }
      return Object.fromEntries(order.map((k) => [k, summarize(times[k])])) as Record<Side, Summary>;
    };
    const perRun: Record<Side, Summary>[] = [];
    for (let r = 0; r < runs; r++) perRun.push(measure());
    const median = (values: number[]): number => summarize(values).p50;
    type P = 'min' | 'p50' | 'p99';
    /** Median over the runs of a figure computed within each run (ratios and differences in the same run). */
    const across = (f: (x: Record<Side, Summary>) => number): { median: number; all: number[] } => {
      const all = perRun.map(f);
      return { median: median(all), all };
    };
    const ratioRow = (side: Side, base: Side, p: P, what: string, goal: boolean): Row => {
      const r = across((x) => x[side][p] / x[base][p]);
      const a = across((x) => x[side][p]);
      const b = across((x) => x[base][p]);
      return [`${what}, ${p}`, `${round(a.median)} / ${round(b.median)} ms; ratio ${round(r.median, 2)}× (runs: ${r.all.map((v) => round(v, 2)).join(', ')})`, goal ? '≤ 1.0×' : '', goal ? (r.median <= 1 ? 'met' : 'not met') : ''];
    };
    const diffRow = (side: Side, base: Side, p: P, what: string, goal: boolean): Row => {
      const d = across((x) => x[side][p] - x[base][p]);
      const a = across((x) => x[side][p]);
      const b = across((x) => x[base][p]);
      return [`${what}, ${p}`, `${round(a.median)} − ${round(b.median)} ms; difference ${round(d.median)} ms (runs: ${d.all.map((v) => round(v)).join(', ')})`, goal ? '≤ +20 ms' : '', goal ? (d.median <= 20 ? 'met' : 'not met') : ''];
    };
    const rows = [
      ratioRow('frontOwned', 'rubyOwned', 'p50', 'owned node: espm-enc / Ruby ENC', true),
      ratioRow('frontOwned', 'rubyOwned', 'p99', 'owned node: espm-enc / Ruby ENC', true),
      diffRow('frontOther', 'rubyOther', 'p50', 'not owned: espm-enc → Ruby fallback − Ruby alone', true),
      diffRow('frontOther', 'rubyOther', 'p99', 'not owned: espm-enc → Ruby fallback − Ruby alone', true),
      diffRow('frontOther', 'rubyOther', 'min', 'not owned: espm-enc → Ruby fallback − Ruby alone', false),
      diffRow('frontTrue', 'trueAlone', 'p50', "the front's own cost: espm-enc → /bin/true − /bin/true alone", false),
      diffRow('frontTrue', 'trueAlone', 'p99', "the front's own cost: espm-enc → /bin/true − /bin/true alone", false),
      ratioRow('espmOwned', 'rubyOwned', 'p50', 'before the front, owned: espm enc / Ruby ENC', false),
      diffRow('espmOther', 'rubyOther', 'p50', 'before the front, not owned: espm enc → Ruby fallback − Ruby alone', false),
    ];
    const host = await machine();
    const lines = [
      `- Machine: ${host.text}; load average ${loadAverage()} at the end (shared with other engineers' jobs: each figure is the median over ${runs} runs of a ratio or difference taken within one run).`,
      `- Command: \`npm run build && npx tsx bench/enc.ts --runs ${runs} --calls ${calls}\` (${round((Date.now() - started) / 1000)} s); ${calls} calls per side per run, in a shuffled order each round; ${NODES} nodes in each file; environment PATH and LANG only.`,
      '',
      '| figure | value | goal | verdict |',
      '|---|---|---|---|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      ...order.map((k) => `- ${k} (median over runs): min ${round(median(perRun.map((x) => x[k].min)))} / p50 ${round(median(perRun.map((x) => x[k].p50)))} / p90 ${round(median(perRun.map((x) => x[k].p90)))} / p99 ${round(median(perRun.map((x) => x[k].p99)))} / max ${round(median(perRun.map((x) => x[k].max)))} ms`),
      '',
    ];
    return {
      name: 'enc',
      title: 'espm enc per call vs a minimal Ruby ENC (bench/enc.ts, issue #14)',
      command: `npx tsx bench/enc.ts --runs ${runs} --calls ${calls}`,
      figures: rows.filter((r) => r[2] !== '').map(([label, value, goal, verdict]) => ({ label, value, unit: '', goal, met: verdict === 'met' })),
      raw: lines,
      analysis: rows.some((r) => r[3] === 'not met')
        ? [`- A goal missed. The front's own cost (espm-enc → /bin/true − /bin/true alone) is ${rows[5]![1]} at p50, ${rows[6]![1]} at p99; the rest of a not-owned difference is the Ruby fallback started under the front (min: ${rows[4]![1]}), whose start-up stretches with the machine's load.`]
        : [],
    };
  } finally {
    await removeDir(dir);
  }
}

runAlone(import.meta.url, async () => {
  const o = new Command('enc').option('--calls <n>', 'calls per side per run', '100').option('--runs <n>', 'runs', '5').option('--no-results', 'print only; do not append to bench/RESULTS.md').parse().opts<{ calls: string; runs: string; results: boolean }>();
  const result = await encBench(Number(o.calls), Number(o.runs));
  const heading = `## espm enc per call (bench/enc.ts, issue #14) — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  if (o.results) await appendFile(RESULTS_PATH, ['', heading, '', ...result.raw].join('\n'));
  return result;
});
