/**
 * bench/launch-burst.ts's driver: one (mode, concurrency) run — a fresh console or Node
 * Classifier double (bench/launch-burst/classifier.ts; and a `puppet cert` double with its
 * floor), a fresh in-process espm whose runner counts what it spawns, `--concurrency` launches
 * in flight, then the counts and the CA-side timeline.
 *
 * @packageDocumentation
 */
import { neverOverlapping, PUPPET_CERT_DOUBLE, PuppetCertMaster } from '../../test/support/ca.js';
import { apiClient, startEspm } from '../../test/support/espm.js';
import { CountingRunner } from '../../test/support/runner.js';
import { loadAverage } from '../support.js';
import { classifierSide } from './classifier.js';
import { caLog, clearCaLog, cpuReading, cpuUse, measureFloor, timeline, waitFor } from './measure.js';
import { seconds, tally, type Floor, type LaunchTimes, type RunResult, type RunSettings } from './model.js';

/**
 * One (mode, concurrency) run of the launch burst.
 *
 * @param settings - what to run
 * @returns what it measured (`stopped` set when it hit `maxMs`)
 * @throws when a double cannot be set up or espm does not start within `maxMs`
 */
export async function run(settings: RunSettings): Promise<RunResult> {
  const { rake, mode, concurrency, launches, maxMs } = settings;
  const classifier = await classifierSide(settings);
  let master: PuppetCertMaster | undefined;
  let floor: Floor | undefined;
  const result: RunResult = { mode, concurrency, launches, startupS: NaN, burstS: NaN, latenciesS: [], createLatenciesS: [], ok: 0, processes: 0, tasks: 0, tasksByName: {} };
  try {
    if (settings.ca === 'puppet-cert') {
      master = await PuppetCertMaster.create();
      // A master has its CA already: create it now (any action does), outside every measurement.
      const created = await master.puppet('cert', 'list', '--all');
      if (created.exitCode !== 0) throw new Error(`puppet cert double: creating the CA failed: ${created.stdout}`);
      await master.setKnobs({ sleep: { '*': settings.caSleepS } });
      await clearCaLog(master);
      floor = await measureFloor(settings, classifier, master);
      await clearCaLog(master);
      await classifier.clear();
    }
    const runner = new CountingRunner();
    const t0 = Date.now();
    // [ca] ssldir set, as espm_setup writes it (empty, espm would ask puppet once per daemon).
    const ca: Record<string, string> = master === undefined ? { backend: 'sandbox' } : { ...master.caConfig(), ssldir: master.ssldir };
    const espm = await startEspm({ classifier: classifier.config, ca, log: { level: 'info' } }, { runner });
    try {
      await waitFor(() => espm.logs.text().includes('console found') || espm.logs.text().includes('console not usable'), maxMs, 'start-up');
      result.startupS = seconds(Date.now() - t0);
      const caAtStartup = master === undefined ? 0 : (await caLog(master)).filter((l) => l.event === 'start').length;
      if (master !== undefined) await clearCaLog(master);
      await classifier.clear();
      const callsBefore = runner.calls.length;
      const api = apiClient(espm);
      const times: LaunchTimes[] = [];
      let next = 0;
      const loadBefore = loadAverage();
      const cpuBefore = await cpuReading();
      const deadline = Date.now() + maxMs;
      const started = Date.now();
      const launch = async (i: number): Promise<void> => {
        const l: LaunchTimes = { name: `burst-${mode}-${concurrency}-${i}.example.test`, sentAt: Date.now() };
        times.push(l);
        const node = await api.post('/v1/nodes', { name: l.name, groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
        l.createdAt = Date.now();
        l.createStatus = node.status;
        result.createLatenciesS.push(seconds(l.createdAt - l.sentAt));
        if (node.status === 201) l.certificateStatus = (await api.post('/v1/certificates', { certname: l.name })).status;
        l.answeredAt = Date.now();
        result.latenciesS.push(seconds(l.answeredAt - l.sentAt));
        if (node.status === 201 && l.certificateStatus === 201) result.ok += 1;
      };
      const client = async (): Promise<void> => {
        while (next < launches && Date.now() < deadline) await launch(next++);
      };
      const all = Promise.all(Array.from({ length: Math.min(concurrency, launches) }, client));
      const timedOut = new Promise<'stopped'>((resolve) => setTimeout(() => resolve('stopped'), maxMs + 5_000).unref());
      if ((await Promise.race([all, timedOut])) === 'stopped') result.stopped = `stopped after ${maxMs / 60_000} min`;
      const ended = Date.now();
      const cpu = cpuUse(cpuBefore, await cpuReading());
      result.burstS = seconds(ended - started);
      result.latenciesS.sort((a, b) => a - b);
      result.createLatenciesS.sort((a, b) => a - b);
      const spawned = runner.calls.slice(callsBefore);
      result.processes = rake === '' ? 0 : spawned.filter((c) => c.file === rake).length;
      const tasksRun = await classifier.tasksRun();
      result.tasksByName = tally(tasksRun);
      result.tasks = tasksRun.filter((t) => t !== '-T').length;
      if (master !== undefined && floor !== undefined) {
        const log = await caLog(master);
        const ends = log.filter((l) => l.event === 'end').map((l) => ({ action: l.action ?? '?', name: l.action === 'generate' ? l.argv[2] : undefined, start: l.start_ms!, end: l.end_ms! }));
        result.ca = {
          floor,
          caByAction: tally(log.filter((l) => l.event === 'start').map((l) => l.action ?? '?')),
          caSpawned: spawned.filter((c) => c.file === PUPPET_CERT_DOUBLE).length,
          caAtStartup,
          serialized: neverOverlapping(ends),
          timeline: timeline(
            times,
            ends,
            runner.intervals.filter((c) => c.start >= started && c.file === PUPPET_CERT_DOUBLE).map((c) => ({ name: c.args[1] === 'generate' ? c.args[2] : undefined, start: c.start, end: c.end })),
            await classifier.rakeEnds(),
            await classifier.taskEnds(),
            started,
            ended,
          ),
          cpu,
          loadBefore,
          loadAfter: loadAverage(),
        };
      }
    } finally {
      await espm.stop();
    }
  } finally {
    await classifier.remove();
    await master?.remove();
  }
  return result;
}
