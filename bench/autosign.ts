/**
 * `espm autosign` per CSR (issue #17, figures for issue #19): puppetserver runs the policy
 * executable for every CSR, synchronously inside the agent's `PUT certificate_request`. Measured
 * against a minimal Ruby policy (the kind of script sites run: read the CSR with Ruby's OpenSSL,
 * compare its challengePassword with a token file), in the same run, interleaved CSR by CSR,
 * each side signing the same fresh CSRs (one token per certname: a token signs once):
 *
 * - `bin/espm autosign -s SOCK N` (→ the daemon: CSR read and signature checked, judged,
 *   the one use written to the ledger with fsync) vs `policy.rb N` (goal: p50 and p99 ≤ 1.0×).
 *
 * Both sides run from a spawn with the same small environment (PATH, LANG), as bench/enc.ts.
 * The daemon runs in its own process (bench/autosign/daemon.ts).
 *
 *   npm run build && npx tsx bench/autosign.ts [--calls 200] [--no-results]
 *
 * bench/run.ts runs it as `autosign` ({@link autosignBench}).
 *
 * @packageDocumentation
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadAverage, machine, removeDir, RESULTS_PATH, ROOT, round, runAlone, summarize, tempDir, type BenchResult } from './support.js';

const ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' };
const ESPM = join(ROOT, 'bin', 'espm');

/** The minimal Ruby policy: the CSR's challengePassword must be the certname's token. */
const RUBY_POLICY = `#!/usr/bin/ruby
require 'openssl'
require 'json'
tokens = JSON.parse(File.read(File.join(__dir__, 'challenges.json')))
csr = OpenSSL::X509::Request.new($stdin.read)
exit 1 unless csr.verify(csr.public_key)
attr = csr.attributes.find { |a| a.oid == 'challengePassword' }
exit 1 if attr.nil?
password = attr.value.value.first.value
exit(password == tokens[ARGV[0]] ? 0 : 1)
`;

function timeCall(file: string, args: string[], input: string): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(file, args, { env: ENV, input, stdio: ['pipe', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${String(result.status)}: ${String(result.stderr)}`);
  return ms;
}

async function makeCsr(dir: string, certname: string, challenge: string): Promise<string> {
  const config = join(dir, 'req.cnf');
  await writeFile(config, `[req]\ndistinguished_name = dn\nprompt = no\nattributes = attrs\n[dn]\nCN = ${certname}\n[attrs]\nchallengePassword = ${challenge}\n`);
  const made = spawnSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null', '-config', config], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`openssl req: ${made.stderr}`);
  return made.stdout;
}

/**
 * Runs the bench: `calls` fresh CSRs, each judged once by each side.
 *
 * @returns figures (espm / Ruby at p50 and p99, goal ≤ 1.0×) and the raw order statistics
 * @throws when the bench daemon does not start or a call exits non-zero
 */
export async function autosignBench(calls = 200): Promise<BenchResult> {
  const dir = await tempDir('espm-bench-autosign-');
  await mkdir(join(dir, 'autosign'), { mode: 0o750 });
  await chmod(join(dir, 'autosign'), 0o750);
  const certnames = Array.from({ length: calls }, (_, i) => `node${i}.example.test`);
  await writeFile(join(dir, 'certnames.json'), JSON.stringify(certnames));
  const daemon = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'autosign', 'daemon.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      daemon.stdout.on('data', (chunk: Buffer) => (chunk.toString().includes('ready') ? resolve() : undefined));
      daemon.once('exit', (code) => reject(new Error(`the bench daemon exited ${String(code)}`)));
    });
    const challenges = JSON.parse(await readFile(join(dir, 'challenges.json'), 'utf8')) as Record<string, string>;
    const policy = join(dir, 'policy.rb');
    await writeFile(policy, RUBY_POLICY);
    await chmod(policy, 0o755);
    const csrs: string[] = [];
    for (const certname of certnames) csrs.push(await makeCsr(dir, certname, challenges[certname]!));
    const socket = join(dir, 'autosign', 'espm.sock');
    const times = { ruby: [] as number[], espm: [] as number[] };
    timeCall(policy, [certnames[0]!], csrs[0]!); // warm the page cache
    const started = Date.now();
    for (let i = 0; i < calls; i++) {
      const sides: Array<[keyof typeof times, () => number]> = [
        ['ruby', () => timeCall(policy, [certnames[i]!], csrs[i]!)],
        ['espm', () => timeCall(ESPM, ['autosign', '-s', socket, certnames[i]!], csrs[i]!)],
      ];
      if (i % 2 === 1) sides.reverse();
      for (const [side, run] of sides) times[side].push(run());
    }
    const rounded = (values: number[]) => {
      const x = summarize(values);
      return { n: x.n, min: round(x.min), p50: round(x.p50), p90: round(x.p90), p99: round(x.p99), max: round(x.max) };
    };
    const r = rounded(times.ruby);
    const e = rounded(times.espm);
    const ratio = (a: number, b: number): number => round(a / b, 2);
    const host = await machine();
    const lines = [
      `- Machine: ${host.text}; load average ${loadAverage()} at the end (shared machine: other sessions' tests and JVMs running).`,
      `- Command: \`npm run build && npx tsx bench/autosign.ts --calls ${calls}\` (${round((Date.now() - started) / 1000)} s); ${calls} fresh RSA-2048 CSRs, each signed once by each side, interleaved; environment PATH and LANG only.`,
      '',
      '| figure | value | goal | verdict |',
      '|---|---|---|---|',
      `| p50: espm autosign / Ruby policy | ${e.p50} / ${r.p50} ms = ${ratio(e.p50, r.p50)}× | ≤ 1.0× | ${e.p50 <= r.p50 ? 'met' : 'not met'} |`,
      `| p99: espm autosign / Ruby policy | ${e.p99} / ${r.p99} ms = ${ratio(e.p99, r.p99)}× | ≤ 1.0× | ${e.p99 <= r.p99 ? 'met' : 'not met'} |`,
      '',
      `- espm: n=${e.n} min ${e.min} / p50 ${e.p50} / p90 ${e.p90} / p99 ${e.p99} / max ${e.max} ms`,
      `- ruby: n=${r.n} min ${r.min} / p50 ${r.p50} / p90 ${r.p90} / p99 ${r.p99} / max ${r.max} ms`,
      '',
    ];
    return {
      name: 'autosign',
      title: 'espm autosign per CSR vs a minimal Ruby policy (bench/autosign.ts, issues #17/#19)',
      command: `npx tsx bench/autosign.ts --calls ${calls}`,
      figures: [
        { label: `p50: espm autosign / Ruby policy (${e.p50} / ${r.p50} ms)`, value: ratio(e.p50, r.p50), unit: '×', goal: '≤ 1.0', met: e.p50 <= r.p50 },
        { label: `p99: espm autosign / Ruby policy (${e.p99} / ${r.p99} ms)`, value: ratio(e.p99, r.p99), unit: '×', goal: '≤ 1.0', met: e.p99 <= r.p99 },
      ],
      raw: lines,
      analysis:
        e.p50 <= r.p50 && e.p99 <= r.p99
          ? []
          : [`- A goal missed. Each espm call is a Node.js start (bin/espm) and one request over the daemon's Unix socket (CSR read, judged, the use written with fsync); min ${e.min} ms vs Ruby's ${r.min} ms, p90 ${e.p90} vs ${r.p90} ms: the tail is process start-up on a shared machine.`],
    };
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    await removeDir(dir);
  }
}

runAlone(import.meta.url, async () => {
  const o = new Command('autosign').option('--calls <n>', 'fresh CSRs, each judged by both sides', '200').option('--no-results', 'print only; do not append to bench/RESULTS.md').parse().opts<{ calls: string; results: boolean }>();
  const result = await autosignBench(Number(o.calls));
  const heading = `## espm autosign per CSR (bench/autosign.ts, issues #17/#19) — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  if (o.results) await appendFile(RESULTS_PATH, ['', heading, '', ...result.raw].join('\n'));
  return result;
});
