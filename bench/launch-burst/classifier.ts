/**
 * bench/launch-burst.ts's classifier side: the console double run by rake (`dashboard-rake`,
 * issues #8/#9) or the Node Classifier double over HTTPS (`pe-node-classifier`, issue #19, every
 * request answered after `ncDelayMs`) — what espm is configured with, the floor's direct create
 * (the same requests one launch's create makes, without espm), and what a burst ran on it.
 *
 * @packageDocumentation
 */
import { Agent, request } from 'undici';
import { ExecaCommandRunner, type CommandSpec } from '../../src/exec/command.js';
import { perNodeGroupName, perNodeRule } from '../../src/classifier/pe-node-classifier.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { CONSOLE_RAKEFILE, ConsoleDouble, type ConsoleKnobs, type Invocation, type WorkerMode } from '../../test/support/console.js';
import { startNodeClassifier } from '../../test/support/node-classifier.js';
import { msSince } from '../support.js';
import { CONSOLE_SLEEP_TASKS, type RunSettings } from './model.js';

/** A classifier double set up for one run. */
export interface BurstClassifierSide {
  /** `[classifier]` keys pointing espm at it. */
  config: Record<string, string | number>;
  /**
   * One launch's create sent directly (no espm), for the floor: `rake … node:add`, then
   * `rake … node:parameters`; or `POST /v1/groups` (espm's per-node group), then the pin.
   *
   * @returns each half, ms
   * @throws when the double does not answer as for a successful create
   */
  directCreate(node: string): Promise<{ addMs: number; parametersMs: number }>;
  /** Forgets what ran so far (before the burst). */
  clear(): Promise<void>;
  /** Console tasks run since {@link clear} by name (`-T`: a task listing); Node Classifier requests as `METHOD path` (ids as `:id`). */
  tasksRun(): Promise<string[]>;
  /** Rake processes since {@link clear} (none with the Node Classifier), ms since the epoch. */
  rakeEnds(): Promise<Array<{ start: number; end: number }>>;
  /** Console tasks since {@link clear} (none with the Node Classifier), ms since the epoch. */
  taskEnds(): Promise<Array<{ task: string; start: number; end: number }>>;
  remove(): Promise<void>;
}

/** The console double 1.2.10, `boot_sleep` and the per-task sleep of the settings. */
async function consoleSide(settings: RunSettings): Promise<BurstClassifierSide> {
  const knobs: ConsoleKnobs = { version: '1.2.10', boot_sleep: settings.bootS };
  const consoleDouble = await ConsoleDouble.create(knobs);
  await consoleDouble.store(); // seed it now (a plain rake run), not during the measurement
  if (settings.consoleSleepS > 0) await consoleDouble.setKnobs({ ...knobs, faults: Object.fromEntries(CONSOLE_SLEEP_TASKS.map((t) => [t, { sleep: settings.consoleSleepS }])) });
  const runner = new ExecaCommandRunner();
  // src/classifier/dashboard-rake.ts rakeProcess(): rake -s -f <Rakefile> RAILS_ENV=<env> <task> k=v…
  const rake = async (ok: string, task: string, ...args: string[]): Promise<number> => {
    const spec: CommandSpec = { file: settings.rake, args: ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', task, ...args], cwd: consoleDouble.dir, timeoutMs: 120_000, env: { RAILS_ENV: 'production' } };
    const t = process.hrtime.bigint();
    const r = await runner.run(spec);
    const ms = msSince(t);
    if (r.exitCode !== 0 || !r.stdout.includes(ok)) throw new Error(`floor: rake ${task} failed (exit ${r.exitCode}): ${r.stdout}${r.stderr}`);
    return ms;
  };
  return {
    config: {
      ...consoleDouble.classifierConfig(settings.rake, settings.mode as WorkerMode),
      timeout: Math.max(120, settings.bootS * 6),
      ...(settings.workers === undefined ? {} : { workers: settings.workers }),
    },
    directCreate: async (node) => ({
      addMs: await rake('Node successfully created!', 'node:add', `name=${node}`, 'groups=default', 'classes=ntp'),
      parametersMs: await rake('Node parameters successfully edited', 'node:parameters', `name=${node}`, 'parameters=role=web'),
    }),
    clear: () => consoleDouble.clearInvocations(),
    tasksRun: () => consoleDouble.tasksRun(),
    rakeEnds: async () => (await consoleDouble.invocations()).filter((i): i is Invocation & { start_ts: number } => i.event === 'end' && i.start_ts !== undefined).map((i) => ({ start: i.start_ts, end: i.ts })),
    taskEnds: async () => (await consoleDouble.taskLog()).filter((i) => i.event === 'task_end' && i.start_ts !== undefined).map((i) => ({ task: i.task ?? '?', start: i.start_ts!, end: i.ts })),
    remove: () => consoleDouble.remove(),
  };
}

/** The Node Classifier double (test/fixtures/node-classifier/), every request answered after `ncDelayMs`. */
async function nodeClassifierSide(settings: RunSettings): Promise<BurstClassifierSide> {
  const rig = await startNodeClassifier();
  rig.nc.faults.push(...['GET', 'POST', 'PUT', 'DELETE'].map((method) => ({ method, path: /./, action: 'delay' as const, ms: settings.ncDelayMs })));
  const agent = new Agent({ connect: { cert: rig.pki.clientCert, key: rig.pki.clientKey, ca: rig.pki.ca, servername: 'localhost' } });
  const send = async (path: string, body: unknown, status: number): Promise<{ ms: number; location: string }> => {
    const t = process.hrtime.bigint();
    const answer = await request(`${rig.nc.url}${path}`, { method: 'POST', dispatcher: agent, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    const text = await answer.body.text();
    if (answer.statusCode !== status) throw new Error(`floor: POST ${path} answered ${answer.statusCode}: ${text}`);
    return { ms: msSince(t), location: String(answer.headers['location'] ?? '') };
  };
  return {
    config: { ...rig.config },
    // src/classifier/pe-node-classifier.ts create(): the per-node group, then a pin per chosen group (here `default`).
    directCreate: async (node) => {
      const group = {
        name: perNodeGroupName(node),
        parent: DEFAULTS.classifier.parent_group,
        environment: DEFAULTS.classifier.environment,
        description: `Created by espm for node ${node}; deleted by espm when the node is deleted.`,
        rule: perNodeRule(node),
        classes: { ntp: {} },
        variables: { role: 'web' },
      };
      const created = await send('/v1/groups', group, 303);
      if (!/\/v1\/groups\/[^/]+$/.test(created.location)) throw new Error(`floor: POST /v1/groups gave no group id: ${created.location}`);
      const pinned = await send(`/v1/groups/${rig.nc.byName('default')!.id}/pin`, { nodes: [node] }, 204);
      return { addMs: created.ms, parametersMs: pinned.ms };
    },
    clear: () => {
      rig.nc.log.splice(0);
      return Promise.resolve();
    },
    tasksRun: () => Promise.resolve(rig.nc.log.map((i) => `${i.method} ${i.path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id')}`)),
    rakeEnds: () => Promise.resolve([]),
    taskEnds: () => Promise.resolve([]),
    remove: async () => {
      await agent.close();
      await rig.teardown();
    },
  };
}

/**
 * Sets up the run's classifier double.
 *
 * @throws when the double cannot be set up
 */
export function classifierSide(settings: RunSettings): Promise<BurstClassifierSide> {
  return settings.classifier === 'pe-node-classifier' ? nodeClassifierSide(settings) : consoleSide(settings);
}
