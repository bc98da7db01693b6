/**
 * Launch burst (issue #9, not run in CI): N launches against one espm whose console boots
 * slowly (the console double sleeps `--boot` seconds in its `environment` task, as a PE
 * console's Rails boot + MySQL connect takes several to tens of seconds), with the warm
 * console worker on and off, in one run. Appends machine, date, command and raw numbers to
 * bench/RESULTS.md and prints them.
 *
 * A launch is what the reference platform does before it starts an instance: create the node
 * with groups, classes and a parameter (`node:add`, then `node:parameters`), then pre-sign its
 * certificate (sandbox CA: no Puppet needed, it costs milliseconds). `--concurrency` launches
 * are in flight at a time. Each (mode, concurrency) run gets a fresh console and a fresh espm;
 * "cold" includes espm's start-up (the task list and, with the worker, its boot and self-check).
 *
 *   npx tsx bench/launch-burst.ts [--launches 50] [--boot 10] [--concurrency 50,10] [--modes worker,process] [--no-results]
 *
 * Needs ruby and rake (the console double). Bounded: a run that takes longer than
 * `--max-minutes` (default 15) is stopped and reported as such.
 */
import { appendFile, readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { execa } from 'execa';
import { ConsoleDouble, findRake, type WorkerMode } from '../test/support/console.js';
import { apiClient, startEspm } from '../test/support/espm.js';
import { CountingRunner } from '../test/support/runner.js';

const RESULTS = fileURLToPath(new URL('./RESULTS.md', import.meta.url));

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
  /** Rake processes spawned by espm during the burst. */
  processes: number;
  /** Console tasks run during the burst (in processes or the worker). */
  tasks: number;
  /** Set when the run hit --max-minutes. */
  stopped?: string;
}

const seconds = (ms: number): number => Math.round(ms / 10) / 100;
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function run(rake: string, mode: WorkerMode, concurrency: number, launches: number, bootS: number, maxMs: number): Promise<RunResult> {
  const consoleDouble = await ConsoleDouble.create({ version: '1.2.10', boot_sleep: bootS });
  await consoleDouble.store(); // seed it now (a plain rake run), not during the measurement
  const runner = new CountingRunner();
  const t0 = Date.now();
  const espm = await startEspm(
    { classifier: { ...consoleDouble.classifierConfig(rake, mode), timeout: Math.max(120, bootS * 6) }, ca: { backend: 'sandbox' }, log: { level: 'info' } },
    { runner },
  );
  const result: RunResult = { mode, concurrency, launches, startupS: NaN, burstS: NaN, latenciesS: [], createLatenciesS: [], ok: 0, processes: 0, tasks: 0 };
  try {
    await waitFor(() => espm.logs.text().includes('console found') || espm.logs.text().includes('console not usable'), maxMs, 'start-up');
    result.startupS = seconds(Date.now() - t0);
    await consoleDouble.clearInvocations();
    const processesBefore = runner.count;
    const api = apiClient(espm);
    let next = 0;
    const deadline = Date.now() + maxMs;
    const started = Date.now();
    const launch = async (i: number): Promise<void> => {
      const name = `burst-${mode}-${concurrency}-${i}.example.test`;
      const t = Date.now();
      const node = await api.post('/v1/nodes', { name, groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
      result.createLatenciesS.push(seconds(Date.now() - t));
      const certificate = node.status === 201 ? await api.post('/v1/certificates', { certname: name }) : undefined;
      result.latenciesS.push(seconds(Date.now() - t));
      if (node.status === 201 && certificate?.status === 201) result.ok += 1;
    };
    const client = async (): Promise<void> => {
      while (next < launches && Date.now() < deadline) await launch(next++);
    };
    const all = Promise.all(Array.from({ length: Math.min(concurrency, launches) }, client));
    const timedOut = new Promise<'stopped'>((resolve) => setTimeout(() => resolve('stopped'), maxMs + 5_000).unref());
    if ((await Promise.race([all, timedOut])) === 'stopped') result.stopped = `stopped after ${maxMs / 60_000} min`;
    result.burstS = seconds(Date.now() - started);
    result.latenciesS.sort((a, b) => a - b);
    result.createLatenciesS.sort((a, b) => a - b);
    result.processes = runner.count - processesBefore;
    result.tasks = (await consoleDouble.tasksRun()).filter((t) => t !== '-T').length;
  } finally {
    await espm.stop();
    await consoleDouble.remove();
  }
  return result;
}

async function machine(): Promise<string> {
  const os = (await readFile('/etc/os-release', 'utf8').catch(() => '')).match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? process.platform;
  const ruby = (await execa('ruby', ['-v'], { reject: false })).stdout.split(' ').slice(0, 2).join(' ');
  const rake = (await execa('rake', ['--version'], { reject: false })).stdout.trim();
  return `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, ${os}, Node ${process.version}, ${ruby}, ${rake}`;
}

async function main(): Promise<void> {
  const options = new Command('launch-burst')
    .option('--launches <n>', 'launches in the burst', '50')
    .option('--boot <s>', "seconds the console double's Rails boot takes", '10')
    .option('--concurrency <list>', 'launches in flight at a time, one run each', '50,10')
    .option('--modes <list>', 'worker and/or process', 'worker,process')
    .option('--max-minutes <n>', 'stop a run after this long', '15')
    .option('--no-results', 'print only; do not append to bench/RESULTS.md')
    .parse()
    .opts<{ launches: string; boot: string; concurrency: string; modes: string; maxMinutes: string; results: boolean }>();
  const rake = await findRake();
  if (rake === undefined) throw new Error('rake is not installed (apt-get install ruby rake)');
  const launches = Number(options.launches);
  const bootS = Number(options.boot);
  const concurrencies = options.concurrency.split(',').map(Number);
  const modes = options.modes.split(',') as WorkerMode[];
  const maxMs = Number(options.maxMinutes) * 60_000;
  const command = `npx tsx bench/launch-burst.ts --launches ${launches} --boot ${bootS} --concurrency ${concurrencies.join(',')} --modes ${modes.join(',')}`;

  const results: RunResult[] = [];
  for (const concurrency of concurrencies) {
    for (const mode of modes) {
      process.stdout.write(`${mode}, concurrency ${concurrency}: `);
      const r = await run(rake, mode, concurrency, launches, bootS, maxMs);
      results.push(r);
      console.log(`start-up ${r.startupS} s, burst ${r.burstS} s, ${r.ok}/${launches} ok, ${r.processes} rake processes, ${r.tasks} tasks${r.stopped ? ` (${r.stopped})` : ''}`);
    }
  }

  const lines = [
    '',
    `## Launch burst — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (issue #9)`,
    '',
    `- Machine: ${await machine()}.`,
    `- Command: \`${command}\`.`,
    `- A launch: \`POST /v1/nodes\` (groups, classes, one parameter → \`node:add\` + \`node:parameters\`), then \`POST /v1/certificates\` (sandbox CA). Console double 1.2.10 with \`boot_sleep: ${bootS}\` (every Rails boot sleeps ${bootS} s). Fresh console and espm per run; "cold" = espm start-up (task list; with the worker: its boot and self-check) + burst.`,
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
  const section = lines.join('\n');
  if (options.results) await appendFile(RESULTS, section);
  console.log(section);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
