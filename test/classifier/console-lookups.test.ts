/**
 * A create's look-ups on the console (issue #19): on a cold cache the group and class lists run
 * at once, and the `nodegroup:list` the worker's start-up self-check learns fills the list cache
 * (the first burst does not run it a third time). Observed through the console double's task
 * log (test/fixtures/console): counts and start/end entries, never timings.
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
