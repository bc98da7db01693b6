/**
 * Bench 1 (issue #8): espm's overhead. For list, create, delete, certificate issue and
 * certificate revoke, the latency of the espm call (HTTPS, keep-alive, pinned certificate,
 * against a spawned `bin/espm`) vs running the SAME backend command directly (execa, the argv,
 * cwd and scrubbed environment espm uses), interleaved call by call so both share the machine's
 * noise. Backends: the console double run by real rake (zero sleep, worker off) and the
 * puppet cert 2.7 double (zero sleep, 2048-bit keys: its default). Goal: espm p50 / direct p50
 * ≤ 1.10 for every operation.
 *
 * Also measured, to show where espm's time goes: the duration each backend process logged
 * itself (espm's vs the direct ones, from the doubles' invocation logs, told apart by parent
 * pid), the number of processes espm spawned per call, an authenticated no-backend request
 * (`GET /v1/status`: espm's HTTP floor), and one ledger write (write-file-atomic + fsync in
 * the state directory; a create or a delete writes the ledger twice).
 *
 *   npm run build && npx tsx bench/overhead.ts [--calls 200] [--cert-calls 200]
 *
 * Needs ruby and rake. Loopback only; bounded by the call counts.
 *
 * @packageDocumentation
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { execa } from 'execa';
import writeFileAtomic from 'write-file-atomic';
import { commandEnvironment } from '../src/exec/command.js';
import { PuppetCertMaster, PUPPET_CERT_DOUBLE } from '../test/support/ca.js';
import { ConsoleDouble, CONSOLE_RAKEFILE, findRake } from '../test/support/console.js';
import {
  Daemon,
  findProfile,
  formatSummary,
  interleaved,
  monotonicUs,
  msSince,
  removeDir,
  round,
  runAlone,
  summarize,
  summarizeCpuProfile,
  tempDir,
  type Answer,
  type BenchResult,
  type Summary,
} from './support.js';

/** Options of {@link overheadBench}. */
export interface OverheadOptions {
  /** Calls per operation and side for list, create and delete (default 200). */
  calls?: number;
  /** Calls per side for certificate issue and revoke (default 200; at least 50). */
  certCalls?: number;
  /** Goal: espm p50 / direct p50 at most this (default 1.10). */
  goal?: number;
}

/** The measurements of one operation. */
interface OperationResult {
  name: string;
  espm: Summary;
  direct: Summary;
  ratioP50: number;
  ratioP99: number;
  /** Durations the backend processes logged themselves, ms. */
  espmProcess: Summary;
  directProcess: Summary;
  /** Backend processes espm spawned per call. */
  espmSpawnsPerCall: number;
  /** espm's CPU time (user + system) per call, ms. */
  espmCpuPerCallMs: number;
  /**
   * Per call, client latency minus the backend process's self-logged duration (the time
   * outside the backend's own work, which removes e.g. the random cost of key generation):
   * espm's and the direct side's.
   */
  espmOutside?: Summary;
  directOutside?: Summary;
  command: string;
}

/** One line of either double's invocation log (the fields used here). */
interface LogLine {
  event: string;
  pid: number;
  ppid?: number;
  duration_ms?: number;
  start_ms?: number;
  end_ms?: number;
}

/** Process durations (ms) from an invocation log, split by parent pid. */
async function processDurations(path: string, espmPid: number): Promise<{ espm: number[]; direct: number[]; espmCount: number }> {
  const lines = (await readFile(path, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogLine);
  const parent = new Map<number, number | undefined>();
  for (const l of lines) if (l.event === 'start') parent.set(l.pid, l.ppid);
  const espm: number[] = [];
  const direct: number[] = [];
  for (const l of lines) {
    if (l.event !== 'end') continue;
    const ms = l.duration_ms ?? (l.end_ms ?? 0) - (l.start_ms ?? 0);
    (parent.get(l.pid) === espmPid ? espm : direct).push(ms);
  }
  return { espm, direct, espmCount: [...parent.values()].filter((p) => p === espmPid).length };
}

/**
 * Runs bench 1.
 *
 * @param options - call counts and goal
 * @returns figures (p50 ratio per operation vs the goal), raw numbers and, for a missed goal,
 *   where the time goes (process durations, HTTP floor, ledger write, CPU profile of espm)
 */
export async function overheadBench(options: OverheadOptions = {}): Promise<BenchResult> {
  const calls = options.calls ?? 200;
  const certCalls = Math.max(50, options.certCalls ?? 200);
  const goal = options.goal ?? 1.1;
  const started = Date.now();
  const result: BenchResult = {
    name: 'overhead',
    title: '1. Overhead: espm vs the same backend command run directly',
    command: `npx tsx bench/overhead.ts --calls ${calls} --cert-calls ${certCalls}`,
    figures: [],
    raw: [],
    analysis: [],
  };
  const rake = await findRake();
  if (rake === undefined) return { ...result, skipped: 'rake is not installed (apt-get install ruby rake)' };

  const consoleDouble = await ConsoleDouble.create({ version: '1.2.10' });
  await consoleDouble.store();
  const master = await PuppetCertMaster.create();
  const puppetLog = join(master.dir, 'invocations.log');
  const consoleLog = join(consoleDouble.dir, 'invocations.log');
  const classifier = { ...consoleDouble.classifierConfig(rake, 'process'), backend: 'dashboard-rake', cache_ttl: 3600 };
  const daemonConfig = { classifier, ca: master.caConfig(), log: { level: 'info' } };
  let daemon: Daemon | undefined;
  try {
    // The argv, cwd and environment espm uses (src/classifier/dashboard-rake.ts, src/ca/puppet-cert.ts).
    const rakeDirect = async (task: string, ...args: string[]): Promise<number> => {
      const t = process.hrtime.bigint();
      const r = await execa(rake, ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', task, ...args], {
        cwd: consoleDouble.dir,
        env: commandEnvironment({ RAILS_ENV: 'production' }),
        extendEnv: false,
        stdin: 'ignore',
        reject: false,
        stripFinalNewline: false,
        encoding: 'utf8',
        timeout: 120_000,
      });
      const ms = msSince(t);
      if (r.exitCode !== 0) throw new Error(`direct rake ${task} exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
      return ms;
    };
    const puppetDirect = async (...args: string[]): Promise<number> => {
      const t = process.hrtime.bigint();
      const r = await execa(PUPPET_CERT_DOUBLE, [...args, '--config', master.confPath], {
        env: commandEnvironment(),
        extendEnv: false,
        stdin: 'ignore',
        reject: false,
        stripFinalNewline: false,
        encoding: 'utf8',
        timeout: 60_000,
      });
      const ms = msSince(t);
      if (r.exitCode !== 0 || /err:/.test(r.stdout)) throw new Error(`direct puppet ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
      return ms;
    };
    // The CA is created by its first run; not part of any measurement.
    await puppetDirect('cert', 'generate', 'warm-up-direct.example.test', '--color', 'false');

    daemon = await Daemon.start({ config: daemonConfig, waitForLog: 'console found' });
    const client = daemon.client({ maxSockets: 1 });
    const expect = (answer: Answer, status: number, what: string): number => {
      if (answer.status !== status) throw new Error(`espm ${what} answered ${answer.status}: ${answer.body.slice(0, 500)}`);
      return answer.ms;
    };

    interface Operation {
      name: string;
      n: number;
      espm: (i: number) => Promise<number>;
      direct: (i: number) => Promise<number>;
      log: string;
      command: string;
    }
    const node = { groups: ['default'], classes: ['ntp'] };
    const operations: Operation[] = [
      {
        name: 'list',
        n: calls,
        espm: async () => expect(await client.request('GET', '/v1/groups?refresh=true'), 200, 'GET /v1/groups?refresh=true'),
        direct: () => rakeDirect('nodegroup:list'),
        log: consoleLog,
        command: '`GET /v1/groups?refresh=true` vs `rake -s -f Rakefile RAILS_ENV=production nodegroup:list`',
      },
      {
        name: 'create',
        n: calls,
        espm: async (i) => expect(await client.request('POST', '/v1/nodes', { name: `e${i}.example.test`, ...node }), 201, 'POST /v1/nodes'),
        direct: (i) => rakeDirect('node:add', `name=d${i}.example.test`, 'groups=default', 'classes=ntp'),
        log: consoleLog,
        command: '`POST /v1/nodes` (groups, classes) vs `rake … node:add name=N groups=default classes=ntp`',
      },
      {
        name: 'delete',
        n: calls,
        espm: async (i) => expect(await client.request('DELETE', `/v1/nodes/e${i}.example.test`), 204, 'DELETE /v1/nodes'),
        direct: (i) => rakeDirect('node:del', `name=d${i}.example.test`),
        log: consoleLog,
        command: '`DELETE /v1/nodes/N` vs `rake … node:del name=N`',
      },
      {
        name: 'certificate issue',
        n: certCalls,
        espm: async (i) => expect(await client.request('POST', '/v1/certificates', { certname: `ce${i}.example.test` }), 201, 'POST /v1/certificates'),
        direct: (i) => puppetDirect('cert', 'generate', `cd${i}.example.test`, '--color', 'false'),
        log: puppetLog,
        command: '`POST /v1/certificates` vs `puppet cert generate N --color false --config puppet.conf` (2.7 double, 2048-bit keys)',
      },
      {
        name: 'certificate revoke',
        n: certCalls,
        espm: async (i) => expect(await client.request('DELETE', `/v1/certificates/ce${i}.example.test`), 204, 'DELETE /v1/certificates'),
        direct: (i) => puppetDirect('cert', 'clean', `cd${i}.example.test`, '--color', 'false'),
        log: puppetLog,
        command: '`DELETE /v1/certificates/N` vs `puppet cert clean N --color false --config puppet.conf`',
      },
    ];

    // Warm-up (not measured): every route and command once or twice, both sides.
    for (let w = 0; w < 3; w++) {
      expect(await client.request('GET', '/v1/groups'), 200, 'GET /v1/groups');
      for (const op of operations) {
        await op.espm(100_000 + w);
        await op.direct(100_000 + w);
      }
    }

    const measured: OperationResult[] = [];
    for (const op of operations) {
      await writeFile(op.log, '');
      const cpuBefore = await daemon.cpuMs();
      const { espmMs, directMs } = await interleaved(op.n, op.espm, op.direct);
      const espmCpuPerCallMs = ((await daemon.cpuMs()) - cpuBefore) / op.n;
      const durations = await processDurations(op.log, daemon.pid);
      const espm = summarize(espmMs);
      const direct = summarize(directMs);
      // Calls and processes pair up in order when every call ran exactly one process.
      const paired = durations.espm.length === op.n && durations.direct.length === op.n;
      measured.push({
        name: op.name,
        espm,
        direct,
        ratioP50: espm.p50 / direct.p50,
        ratioP99: espm.p99 / direct.p99,
        espmProcess: summarize(durations.espm),
        directProcess: summarize(durations.direct),
        espmSpawnsPerCall: durations.espmCount / op.n,
        espmCpuPerCallMs,
        ...(paired
          ? {
              espmOutside: summarize(espmMs.map((ms, i) => ms - durations.espm[i]!)),
              directOutside: summarize(directMs.map((ms, i) => ms - durations.direct[i]!)),
            }
          : {}),
        command: op.command,
      });
      process.stdout.write(`  overhead ${op.name}: espm p50 ${round(espm.p50)} ms, direct p50 ${round(direct.p50)} ms, ratio ${(espm.p50 / direct.p50).toFixed(3)}\n`);
    }

    // Where espm's own time goes: its HTTP floor, and one ledger write.
    const status: number[] = [];
    for (let i = 0; i < calls; i++) status.push(expect(await client.request('GET', '/v1/status'), 200, 'GET /v1/status'));
    const ledgerWrites: number[] = [];
    const probe = join(daemon.setup.dir, 'var', 'bench-fsync-probe.json');
    const body = await readFile(join(daemon.setup.dir, 'var', 'ledger.json'), 'utf8');
    for (let i = 0; i < 50; i++) {
      const t = process.hrtime.bigint();
      await writeFileAtomic(probe, body, { mode: 0o600, fsync: true });
      ledgerWrites.push(msSince(t));
    }
    client.close();
    const statusSummary = summarize(status);
    const ledgerSummary = summarize(ledgerWrites);

    for (const m of measured) {
      result.figures.push({
        label: `${m.name}: espm p50 / direct p50`,
        value: m.ratioP50.toFixed(3),
        unit: '×',
        goal: `≤ ${goal.toFixed(2)}`,
        met: m.ratioP50 <= goal,
      });
    }
    result.raw.push(
      `- Backends: console double 1.2.10 by ${rake} (zero sleep, \`[classifier] worker = off\`, \`cache_ttl = 3600\`), puppet cert 2.7 double (zero sleep, 2048-bit keys — its default; PE 2.5 used 4096, which would only lengthen both sides). espm spawned from \`bin/espm\`, log level info to a file; one keep-alive TLS connection; espm and direct calls alternate (which goes first alternates too). ${calls} calls per side for list/create/delete, ${certCalls} for certificate issue/revoke (the double's key generation is fast enough for the full count).`,
      '',
      '| operation | n | espm p50 / p99 ms | direct p50 / p99 ms | ratio p50 | ratio p99 | espm − direct p50 ms | outside the backend process p50, espm / direct ms | espm CPU per call ms | backend process (self-logged) p50, espm / direct ms | processes espm spawned per call |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...measured.map(
        (m) =>
          `| ${m.name} | ${m.espm.n} | ${round(m.espm.p50)} / ${round(m.espm.p99)} | ${round(m.direct.p50)} / ${round(m.direct.p99)} | ${m.ratioP50.toFixed(3)} | ${m.ratioP99.toFixed(3)} | ${round(m.espm.p50 - m.direct.p50)} | ${m.espmOutside === undefined ? '—' : `${round(m.espmOutside.p50)} / ${round(m.directOutside!.p50)}`} | ${round(m.espmCpuPerCallMs)} | ${round(m.espmProcess.p50)} / ${round(m.directProcess.p50)} | ${round(m.espmSpawnsPerCall, 2)} |`,
      ),
      '',
      ...measured.map((m) => `- ${m.name} (${m.command}): espm ${formatSummary(m.espm)}; direct ${formatSummary(m.direct)}.`),
      '- "Self-logged": the duration the double wrote into its invocation log (the console double from Rakefile load to exit, so without Ruby and rake start-up; the puppet double from script start to exit); espm\'s and the direct processes are told apart by parent pid. "Outside the backend process": per call, latency minus that call\'s self-logged process duration — the part not spent in the backend\'s own work (spawn, Ruby start-up, and for espm its request handling), free of the backend\'s run-to-run variation (RSA key generation). espm CPU: /proc/<pid>/stat of the daemon across the operation\'s measurement.',
      `- espm's HTTP floor, \`GET /v1/status\` (authenticated, no backend) on the same connection: ${formatSummary(statusSummary)}.`,
      `- One ledger-sized atomic write with fsync in the state directory (write-file-atomic, as the ledger does): ${formatSummary(ledgerSummary)}. A create or a delete writes the ledger twice (write-ahead, then the outcome); an issue or a revoke twice too.`,
    );

    const missed = measured.filter((m) => m.ratioP50 > goal);
    if (missed.length > 0) {
      result.analysis.push(
        `- Goal missed for ${missed.map((m) => m.name).join(', ')}. Where the time goes, per call at p50:`,
        ...missed.map((m) => {
          const outside =
            m.espmOutside === undefined
              ? ''
              : ` Outside the backend process espm takes ${round(m.espmOutside.p50)} ms against ${round(m.directOutside!.p50)} ms direct: espm adds ${round(m.espmOutside.p50 - m.directOutside!.p50)} ms (${((m.direct.p50 + m.espmOutside.p50 - m.directOutside!.p50) / m.direct.p50).toFixed(3)}× the direct p50 if that were all). The backend process itself: self-logged p50 ${round(m.espmProcess.p50)} ms under espm vs ${round(m.directProcess.p50)} ms direct.`;
          return `  - ${m.name}: espm − direct = ${round(m.espm.p50 - m.direct.p50)} ms; espm's CPU ≈ ${round(m.espmCpuPerCallMs)} ms per call; HTTP floor ${round(statusSummary.p50)} ms; ledger writes ≈ 2 × ${round(ledgerSummary.p50)} ms.${outside}`;
        }),
      );
      // A CPU profile of espm per missed operation, on a second daemon.
      type Round = (pc: ReturnType<Daemon['client']>, i: number) => Promise<void>;
      const rounds: Record<string, { what: string; spawns: number; round: Round }> = {
        list: { what: 'list', spawns: 1, round: async (pc) => void (await pc.request('GET', '/v1/groups?refresh=true')) },
        create: { what: 'create + delete', spawns: 2, round: async (pc, i) => void (await pc.request('POST', '/v1/nodes', { name: `p${i}.example.test`, ...node }), await pc.request('DELETE', `/v1/nodes/p${i}.example.test`)) },
        delete: { what: 'create + delete', spawns: 2, round: async (pc, i) => void (await pc.request('POST', '/v1/nodes', { name: `p${i}.example.test`, ...node }), await pc.request('DELETE', `/v1/nodes/p${i}.example.test`)) },
        'certificate issue': { what: 'issue + revoke', spawns: 2, round: async (pc, i) => void (await pc.request('POST', '/v1/certificates', { certname: `cp${i}.example.test` }), await pc.request('DELETE', `/v1/certificates/cp${i}.example.test`)) },
        'certificate revoke': { what: 'issue + revoke', spawns: 2, round: async (pc, i) => void (await pc.request('POST', '/v1/certificates', { certname: `cp${i}.example.test` }), await pc.request('DELETE', `/v1/certificates/cp${i}.example.test`)) },
      };
      const kinds = [...new Map(missed.map((m) => [rounds[m.name]!.what, rounds[m.name]!])).values()];
      const spawnCosts: string[] = [];
      for (const kind of kinds) {
        const profileDir = await tempDir('overhead-prof');
        const profiled = await Daemon.start({ config: daemonConfig, waitForLog: 'console found', nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir] });
        const pc = profiled.client({ maxSockets: 1 });
        const n = 50;
        for (let i = 0; i < 3; i++) await kind.round(pc, 1000 + i); // modules loaded lazily, first spawns
        const cpuBefore = await profiled.cpuMs();
        const fromUs = monotonicUs();
        for (let i = 0; i < n; i++) await kind.round(pc, i);
        const toUs = monotonicUs();
        const cpuMs = (await profiled.cpuMs()) - cpuBefore;
        pc.close();
        await profiled.stop();
        const file = findProfile(profileDir);
        if (file !== undefined) {
          const p = await summarizeCpuProfile(file, 8, { fromUs, toUs });
          const spawnRow = p.byFunction.find((r) => r.what.startsWith('ChildProcess.spawn '));
          if (spawnRow !== undefined) spawnCosts.push(`${kind.what}: ${round(spawnRow.selfMs / (n * kind.spawns), 1)} ms per spawn`);
          result.analysis.push(
            `- CPU profile of espm (\`node --cpu-prof\`, a second daemon; samples of the measured window only) over ${n} rounds of ${kind.what} after 3 warm-up rounds: espm CPU ${Math.round(cpuMs)} ms = ${round(cpuMs / n, 1)} ms per round (/proc), ${p.totalMs} ms of busy samples: by origin ${p.byOrigin.map((r) => `${r.what} ${r.percent}%`).join(', ')}.`,
            `  - under espm's own functions (innermost espm frame on the stack): ${p.byEspmFrame.map((r) => `${r.what} ${r.percent}%`).join('; ')}.`,
            `  - top functions by self time: ${p.byFunction.map((r) => `${r.what} ${r.selfMs} ms`).join('; ')}.`,
          );
        }
        await removeDir(profileDir);
      }
      result.analysis.push(
        `- What would close it: the doubles' commands are short (${missed.map((m) => `${m.name} ${round(m.direct.p50)} ms`).join(', ')} direct p50), so espm's fixed cost per call — a few to ~20 ms, most of it spawning the command from the daemon (execa under \`run\`; the synchronous \`ChildProcess.spawn\` alone${spawnCosts.length > 0 ? `: ${spawnCosts.join(', ')}` : ''}), then GC, the ledger and, for certificates, parsing what the CA wrote — is a visible share. Against a real backend (PE's rake boots Rails: seconds; PE 2.5's \`puppet cert generate\` makes a 4096-bit key) the same milliseconds are a few per cent at most. Within espm: no process per console call (the console worker, \`[classifier] worker = on\`), \`[ca] backend = puppetserver-api\` where Puppet ≥ 6.`,
      );
    }
  } finally {
    await daemon?.stop();
    await consoleDouble.remove();
    await master.remove();
  }
  result.wallS = round((Date.now() - started) / 1000);
  return result;
}

runAlone(import.meta.url, async () => {
  const o = new Command('overhead')
    .option('--calls <n>', 'calls per operation and side (list, create, delete)', '200')
    .option('--cert-calls <n>', 'calls per side for certificate issue and revoke (≥ 50)', '200')
    .parse()
    .opts<{ calls: string; certCalls: string }>();
  return overheadBench({ calls: Number(o.calls), certCalls: Number(o.certCalls) });
});
