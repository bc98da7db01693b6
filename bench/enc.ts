/**
 * `espm enc` per call (issue #14): puppetserver runs the ENC once per catalog compile of every
 * node, so its cost is paid all day. Measured against a minimal Ruby ENC reading one YAML file
 * (the kind of script sites run), in the same run, interleaved call by call:
 *
 * - an owned node: `bin/espm-enc -f <classification file> -t 10 enc.rb N` (the external_nodes
 *   command espm_setup prints: the sh front, then `espm enc`) vs `enc.rb N` (goal: p50 and p99
 *   ratio ≤ 1.0);
 * - a node espm does not own, with that Ruby ENC as the fallback: `bin/espm-enc … M` vs
 *   `enc.rb M` alone (goal: ≤ +20 ms at p50 and p99);
 * - for comparison, the same two calls to `bin/espm enc -f <classification file>` directly
 *   (the command before the front: every call starts Node.js).
 *
 * Both sides run from a spawn in this process with the same small environment (PATH, LANG):
 * puppetserver passes the JVM's environment, and this sandbox's `NODE_EXTRA_CA_CERTS` alone
 * would add ≈ 70 ms to every node start (it loads a CA bundle) — a site's puppetserver has no
 * such variable. Both files hold the same 1000 nodes.
 *
 *   npm run build && npx tsx bench/enc.ts [--calls 200] [--no-results]
 *
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import { appendFile, chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ENC_FILE_FORMAT, type EncFile } from '../src/classifier/enc-file.js';
import { writeOwnedNames } from '../src/classifier/enc-owned.js';
import { parseGroups, renderAnswer, renderNode } from '../src/classifier/enc-groups.js';
import { assertBuilt, loadAverage, machine, removeDir, RESULTS_PATH, ROOT, round, summarize, tempDir } from './support.js';

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

async function main(): Promise<void> {
  assertBuilt();
  const callsArg = process.argv.indexOf('--calls');
  const calls = callsArg === -1 ? 200 : Number(process.argv[callsArg + 1]);
  const writeResults = !process.argv.includes('--no-results');
  const dir = await tempDir('espm-bench-enc-');
  try {
    const rubyEnc = join(dir, 'enc.rb');
    await writeFile(rubyEnc, RUBY_ENC);
    await chmod(rubyEnc, 0o755);
    const file: EncFile = { format: ENC_FILE_FORMAT, written_at: new Date().toISOString(), fallback: [rubyEnc], fallback_timeout_ms: 10_000, unowned: renderAnswer({ classes: {} }), nodes: {} };
    const rubyNodes: Record<string, unknown> = {};
    for (let i = 0; i < NODES; i++) {
      const name = `web${i}.example.test`;
      const node = { name, groups: ['webservers'], classes: ['motd'], parameters: { motd_message: `hello ${i}` } };
      file.nodes[name] = { groups: node.groups, classes: node.classes, parameters: node.parameters, yaml: renderNode(node, GROUPS, 'production') };
      rubyNodes[name] = { classes: { webserver: { port: 8080 }, motd: {} }, parameters: { tier: 'web', motd_message: `hello ${i}` }, environment: 'production' };
    }
    const classification = join(dir, 'classification.json');
    await writeFile(classification, JSON.stringify(file));
    await writeOwnedNames(classification, Object.keys(file.nodes));
    await writeFile(join(dir, 'nodes.yaml'), stringify(rubyNodes));

    const owned = 'web500.example.test';
    const other = 'legacy.example.test';
    const sides = {
      rubyOwned: () => timeCall(rubyEnc, [owned]),
      espmOwned: () => timeCall(ESPM, ['enc', '-f', classification, owned]),
      rubyOther: () => timeCall(rubyEnc, [other]),
      espmOther: () => timeCall(ESPM, ['enc', '-f', classification, other]),
      frontOwned: () => timeCall(FRONT, ['-f', classification, '-t', '10', rubyEnc, owned]),
      frontOther: () => timeCall(FRONT, ['-f', classification, '-t', '10', rubyEnc, other]),
    };
    const times: Record<keyof typeof sides, number[]> = { rubyOwned: [], espmOwned: [], rubyOther: [], espmOther: [], frontOwned: [], frontOther: [] };
    const order = Object.keys(sides) as (keyof typeof sides)[];
    for (const side of order) sides[side](); // warm the page cache
    const started = Date.now();
    for (let i = 0; i < calls; i++) {
      // Rotate who goes first, so load bursts from the shared machine hit every side alike.
      for (let j = 0; j < order.length; j++) {
        const side = order[(i + j) % order.length]!;
        times[side].push(sides[side]());
      }
    }
    const ratio = (a: number, b: number): number => round(a / b, 2);
    const rounded = (values: number[]) => {
      const x = summarize(values);
      return { n: x.n, min: round(x.min), p50: round(x.p50), p90: round(x.p90), p99: round(x.p99), max: round(x.max) };
    };
    const s = Object.fromEntries(order.map((k) => [k, rounded(times[k])])) as Record<keyof typeof sides, ReturnType<typeof rounded>>;
    const owns = (side: 'frontOwned' | 'espmOwned', p: 'p50' | 'p99'): [string, string, string, string] => [
      `owned node, ${p}: ${side === 'frontOwned' ? 'espm-enc' : 'espm enc (no front)'} / Ruby ENC`,
      `${s[side][p]} / ${s.rubyOwned[p]} ms = ${ratio(s[side][p], s.rubyOwned[p])}×`,
      side === 'frontOwned' ? '≤ 1.0×' : '',
      side === 'frontOwned' ? (s[side][p] <= s.rubyOwned[p] ? 'met' : 'not met') : '',
    ];
    const others = (side: 'frontOther' | 'espmOther', p: 'p50' | 'p99'): [string, string, string, string] => [
      `not owned, ${p}: ${side === 'frontOther' ? 'espm-enc' : 'espm enc (no front)'} → fallback − fallback alone`,
      `${s[side][p]} − ${s.rubyOther[p]} = ${round(s[side][p] - s.rubyOther[p])} ms`,
      side === 'frontOther' ? '≤ +20 ms' : '',
      side === 'frontOther' ? (s[side][p] - s.rubyOther[p] <= 20 ? 'met' : 'not met') : '',
    ];
    const rows = [owns('frontOwned', 'p50'), owns('frontOwned', 'p99'), others('frontOther', 'p50'), others('frontOther', 'p99'), owns('espmOwned', 'p50'), others('espmOther', 'p50')];
    const host = await machine();
    const lines = [
      '',
      `## espm enc per call (bench/enc.ts, issue #14) — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      '',
      `- Machine: ${host.text}; load average ${loadAverage()} at the end.`,
      `- Command: \`npm run build && npx tsx bench/enc.ts --calls ${calls}\` (${round((Date.now() - started) / 1000)} s); ${calls} calls per side, interleaved; ${NODES} nodes in each file; environment PATH and LANG only.`,
      '',
      '| figure | value | goal | verdict |',
      '|---|---|---|---|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      ...order.map((k) => `- ${k}: n=${s[k].n} min ${s[k].min} / p50 ${s[k].p50} / p90 ${s[k].p90} / p99 ${s[k].p99} / max ${s[k].max} ms`),
      '',
    ];
    console.log(lines.join('\n'));
    if (writeResults) await appendFile(RESULTS_PATH, lines.join('\n'));
  } finally {
    await removeDir(dir);
  }
}

await main();
