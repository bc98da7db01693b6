/**
 * A create's look-ups on the console (issue #19): on a cold cache the group and class lists run
 * at once, and the `nodegroup:list` the worker's start-up self-check learns fills the list cache
 * (the first burst does not run it a third time); a pool of `[classifier] workers` runs two
 * launches' tasks at once, each launch's parameters task right behind its `node:add` in the
 * same worker; in process mode at most `workers` rake processes run at once. Observed through
 * the console double's logs (test/fixtures/console): counts and start/end entries, never timings.
 */
import { ConsoleDouble, findRake, type Invocation } from '../support/console.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { describeWith } from '../support/components.js';

const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'no rake on PATH' : undefined);

/** The `task_end` log entry of every run of `task`. */
async function runsOf(console: ConsoleDouble, task: string): Promise<Invocation[]> {
  return (await console.taskLog()).filter((t) => t.event === 'task_end' && t.task === task);
}

/** Whether two task runs (their `task_end` entries) were under way at the same moment. */
function overlap(a: Invocation, b: Invocation): boolean {
  return a.start_ts! < b.ts && b.start_ts! < a.ts;
}

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeWithRake('console look-ups of a create', () => {
  let console: ConsoleDouble;
  let espm: RunningEspm;
  afterEach(async () => {
    await espm.stop();
    await console.remove();
  });

  it('on a cold cache the group and class lists run at once, once each', async () => {
    // Each list task sleeps long enough that run one after the other they could not overlap.
    console = await ConsoleDouble.create({ version: '1.2.10', faults: { 'nodegroup:list': { sleep: 1 }, 'nodeclass:list': { sleep: 1 } } });
    espm = await startEspm({ classifier: console.classifierConfig(rake!, 'process') });
    await waitFor(() => espm.logs.text().includes('console found'));
    await console.clearInvocations();
    const res = await apiClient(espm).post('/v1/nodes', { name: 'cold.example.test', groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
    expect(res.status).toBe(201);
    const [groups, classes] = [await runsOf(console, 'nodegroup:list'), await runsOf(console, 'nodeclass:list')];
    expect([groups.length, classes.length]).toEqual([1, 1]);
    expect(overlap(groups[0]!, classes[0]!)).toBe(true);
    // Both lists ended before node:add began.
    const [add] = await runsOf(console, 'node:add');
    expect(add!.start_ts).toBeGreaterThanOrEqual(Math.max(groups[0]!.ts, classes[0]!.ts));
  }, 30_000);

  it('the worker self-check\'s nodegroup:list fills the cache: a create after start-up runs it no third time', async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
    espm = await startEspm({ classifier: console.classifierConfig(rake!, 'worker') });
    await waitFor(() => espm.logs.text().includes('console found'));
    expect(espm.logs.text()).toContain('"worker":"ready"');
    const res = await apiClient(espm).post('/v1/nodes', { name: 'warm.example.test', groups: ['default'] });
    expect(res.status).toBe(201);
    // Once as a process and once in the worker (the self-check); none for the create.
    expect(await runsOf(console, 'nodegroup:list')).toHaveLength(2);
  }, 30_000);

  it('a create arriving during the worker\'s warm-up waits for the self-check\'s nodegroup:list instead of running its own', async () => {
    console = await ConsoleDouble.create({ version: '1.2.10', boot_sleep: 1 });
    espm = await startEspm({ classifier: console.classifierConfig(rake!, 'worker') });
    const res = await apiClient(espm).post('/v1/nodes', { name: 'early.example.test', groups: ['default'] });
    expect(res.status).toBe(201);
    expect(espm.logs.text()).toContain('console worker checked');
    expect(await runsOf(console, 'nodegroup:list')).toHaveLength(2);
  }, 30_000);
});

/** The most entries (`start_ts`..`ts` intervals) under way at one moment. */
function mostAtOnce(runs: Invocation[]): number {
  const edges = runs.flatMap((r) => [[r.start_ts!, 1] as const, [r.ts, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, step] of edges) most = Math.max(most, (now += step));
  return most;
}

describeWithRake('console concurrency: [classifier] workers', () => {
  let console: ConsoleDouble;
  let espm: RunningEspm;
  afterEach(async () => {
    await espm.stop();
    await console.remove();
  });
  const names = ['p0', 'p1', 'p2', 'p3'].map((n) => `${n}.example.test`);

  it('two warm workers run two launches at once; each parameters task runs right behind its node:add, in the same worker', async () => {
    console = await ConsoleDouble.create({ version: '1.2.10', faults: { 'node:add': { sleep: 0.3 }, 'node:parameters': { sleep: 0.3 } } });
    espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, 'worker'), workers: 2 } });
    await waitFor(() => espm.logs.text().includes('console found'));
    expect(espm.logs.text()).toContain('"workers_ready":2');
    await console.clearInvocations();
    const api = apiClient(espm);
    const answers = await Promise.all(names.map((name, i) => api.post('/v1/nodes', { name, groups: ['default'], parameters: { slot: String(i) } })));
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201]);
    const log = await console.taskLog();
    const adds = log.filter((t) => t.event === 'task_end' && t.task === 'node:add');
    expect(new Set(adds.map((t) => t.pid)).size).toBe(2);
    expect(adds.some((a) => adds.some((b) => a !== b && overlap(a, b)))).toBe(true);
    // Per worker, in the order it ran them: every node:add is followed by that launch's parameters task.
    for (const pid of new Set(adds.map((t) => t.pid))) {
      const ran = log.filter((t) => t.event === 'task' && t.pid === pid).map((t) => `${t.task} ${t.args?.['name']}`);
      const expected = ran.filter((_, i) => i % 2 === 0).flatMap((add) => [add, add.replace('node:add', 'node:parameters')]);
      expect(ran).toEqual(expected);
    }
    expect(await console.processesRun()).toEqual([]);
  }, 40_000);

  it('worker off: at most `workers` rake processes run at once', async () => {
    console = await ConsoleDouble.create({ version: '1.2.10', faults: { 'node:add': { sleep: 0.3 } } });
    espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, 'process'), workers: 2 } });
    await waitFor(() => espm.logs.text().includes('console found'));
    await console.clearInvocations();
    const api = apiClient(espm);
    const answers = await Promise.all(names.map((name) => api.post('/v1/nodes', { name })));
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201]);
    const processes = (await console.invocations()).filter((i) => i.event === 'end');
    expect(processes).toHaveLength(4);
    expect(mostAtOnce(processes)).toBe(2);
  }, 40_000);

  it('worker off, one process at a time: each launch\'s parameters task runs right behind its node:add', async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
    espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, 'process'), workers: 1 } });
    await waitFor(() => espm.logs.text().includes('console found'));
    await console.clearInvocations();
    const api = apiClient(espm);
    const answers = await Promise.all(names.map((name, i) => api.post('/v1/nodes', { name, groups: ['default'], parameters: { slot: String(i) } })));
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201]);
    const ran = (await console.taskLog()).filter((t) => t.event === 'task' && t.task !== 'nodegroup:list').map((t) => `${t.task} ${t.args?.['name']}`);
    expect(ran).toEqual(ran.filter((_, i) => i % 2 === 0).flatMap((add) => [add, add.replace('node:add', 'node:parameters')]));
    expect(ran).toHaveLength(8);
  }, 40_000);
});
