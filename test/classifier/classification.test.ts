/**
 * Classification over HTTPS against the console double run by real rake, for every console
 * version the double plays (issue #3), with the warm console worker and with one rake process
 * per call (issue #9): every behaviour holds both ways.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConsoleDouble, CONSOLE_VERSIONS, findRake, WORKER_MODES } from '../support/console.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';

const rake = await findRake();
if (rake === undefined) {
  console.warn('SKIPPING classification tests: rake is not installed (apt-get install ruby rake)');
}
const describeWithRake = rake === undefined ? describe.skip : describe;

/** Pre-existing nodes of the double's seed (a PE 2.5 console): espm did not create them. */
const PRE_EXISTING = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'];

const CASES = WORKER_MODES.flatMap((mode) => CONSOLE_VERSIONS.map((version) => [mode, version] as const));

describeWithRake.each(CASES)('classification (%s) against puppet-dashboard %s', (mode, version) => {
  const supportsParameters = version !== '1.2.6';
  const carriesCommas = version === '2.0';
  let console: ConsoleDouble;
  let espm: RunningEspm;
  let runner: CountingRunner;
  let api: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    console = await ConsoleDouble.create({ version });
    runner = new CountingRunner();
    espm = await startEspm({ classifier: console.classifierConfig(rake!, mode) }, { runner });
    api = apiClient(espm);
  });
  afterAll(async () => {
    await espm.stop();
    await console.remove();
  });

  it('lists groups and classes exactly as the console has them, sorted', async () => {
    const store = await console.store();
    const groups = await api.get('/v1/groups?refresh=true');
    expect(groups.status).toBe(200);
    expect(groups.body).toEqual({ groups: store.node_groups.map((g) => g.name).sort() });
    expect(groups.body.groups).toEqual(expect.arrayContaining(['default', 'no mcollective', 'puppet_master']));
    const classes = await api.get('/v1/classes?refresh=true');
    expect(classes.body).toEqual({ classes: store.node_classes.map((c) => c.name).sort() });
    expect(classes.body.classes).toEqual(expect.arrayContaining(['motd', 'ntp', 'apache::vhost']));
    for (const name of [...groups.body.groups, ...classes.body.classes] as string[]) {
      expect(name).not.toMatch(/^\(in |NodeClass|^$/);
    }
  });

  it('serves lists from the cache with an ETag, 304 on If-None-Match, a new task on ?refresh=true', async () => {
    const first = await api.get('/v1/groups');
    const etag = first.headers['etag'] as string;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    await console.clearInvocations();
    const cached = await api.get('/v1/groups').set('If-None-Match', etag);
    expect(cached.status).toBe(304);
    expect(await console.tasksRun()).toEqual([]);
    const refreshed = await api.get('/v1/groups?refresh=true');
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers['etag']).toBe(etag);
    expect(await console.tasksRun()).toEqual(['nodegroup:list']);
  });

  it('creates a node with groups, classes (and parameters) in exactly 1 (or 2) rake tasks', async () => {
    await api.get('/v1/groups');
    await api.get('/v1/classes');
    await console.clearInvocations();
    const name = `web01-${version.replace(/\./g, '')}.example.test`;
    const parameters: Record<string, string> = supportsParameters ? { motd_message: 'hello = world', role: 'web' } : {};
    const res = await api.post('/v1/nodes', {
      name,
      groups: ['default', 'no mcollective'],
      classes: ['ntp', 'apache::vhost'],
      parameters,
    });
    expect(res.status).toBe(201);
    expect(res.headers['location']).toBe(`/v1/nodes/${name}`);
    expect(res.body).toEqual({
      name,
      groups: ['default', 'no mcollective'],
      classes: ['ntp', 'apache::vhost'],
      parameters,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const stored = await console.node(name);
    expect(stored).toMatchObject({ name, groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'] });
    expect(stored!.parameters).toEqual(Object.entries(parameters));
    const tasks = (await console.tasksRun()).filter((t) => t !== '-T');
    expect(tasks).toEqual(supportsParameters ? ['node:add', carriesCommas ? 'node:variables' : 'node:parameters'] : ['node:add']);
    // With the worker, both tasks ran in the one warm process: no rake process was started.
    const pids = new Set((await console.taskLog()).map((t) => t.pid));
    if (mode === 'worker') {
      expect(await console.processesRun()).toEqual([]);
      expect(pids.size).toBe(1);
    } else {
      expect(await console.processesRun()).toEqual(tasks);
      expect(pids.size).toBe(tasks.length);
    }

    const again = await api.get(`/v1/nodes/${name}`);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(res.body);
  });

  it('creates a node with neither groups nor classes in one task', async () => {
    await console.clearInvocations();
    const res = await api.post('/v1/nodes', { name: `bare-${version.replace(/\./g, '')}.example.test` });
    expect(res.status).toBe(201);
    expect(await console.tasksRun()).toEqual(['node:add']);
    expect(await console.node(res.body.name)).toMatchObject({ groups: [], classes: [], parameters: [] });
  });

  it.each(PRE_EXISTING)('409 node_exists for the pre-existing node %s, which stays as it was', async (name) => {
    const before = await console.node(name);
    const res = await api.post('/v1/nodes', { name, groups: ['default'] });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'node_exists', detail: expect.stringContaining('Node already exists!') });
    expect(await console.node(name)).toEqual(before);
    const ledger = await readFile(join(espm.config.state.dir, 'ledger.json'), 'utf8');
    expect(ledger).not.toContain(name);
  });

  it('409 node_exists for a node espm created, without running rake', async () => {
    const name = `dup-${version.replace(/\./g, '')}.example.test`;
    expect((await api.post('/v1/nodes', { name })).status).toBe(201);
    const before = runner.count;
    await console.clearInvocations();
    const res = await api.post('/v1/nodes', { name, classes: ['ntp'] });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('node_exists');
    expect(runner.count).toBe(before);
    expect(await console.tasksRun()).toEqual([]);
  });

  it('422 listing unknown groups and classes; nothing is spawned after the list check', async () => {
    await api.get('/v1/groups');
    await api.get('/v1/classes');
    await console.clearInvocations();
    const name = `unknown-${version.replace(/\./g, '')}.example.test`;
    const res = await api.post('/v1/nodes', { name, groups: ['default', 'nosuchgroup'], classes: ['ntp', 'nosuch::class'] });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'unknown_group', unknown_groups: ['nosuchgroup'], unknown_classes: ['nosuch::class'] });
    // The cached lists were re-checked fresh once before refusing: no node task ran.
    expect(await console.tasksRun()).toEqual(['nodegroup:list', 'nodeclass:list']);
    expect(await console.node(name)).toBeUndefined();
    const classOnly = await api.post('/v1/nodes', { name, classes: ['nosuch'] });
    expect(classOnly.body).toMatchObject({ code: 'unknown_class', unknown_groups: [], unknown_classes: ['nosuch'] });
  });

  it('DELETE of a node espm did not create → 404, and the node is still there', async () => {
    for (const name of PRE_EXISTING) {
      const before = await console.node(name);
      const res = await api.delete(`/v1/nodes/${name}`);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('node_not_found');
      expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
      expect(await console.node(name)).toEqual(before);
    }
  });

  it('DELETE of an owned node → 204, gone from the console and the ledger; again → 404', async () => {
    const name = `del-${version.replace(/\./g, '')}.example.test`;
    expect((await api.post('/v1/nodes', { name, groups: ['default'] })).status).toBe(201);
    const res = await api.delete(`/v1/nodes/${name}`);
    expect(res.status).toBe(204);
    expect(await console.node(name)).toBeUndefined();
    expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(404);
    expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
  });

  it('DELETE of an owned node already gone from the console forgets it: 204', async () => {
    const name = `gone-${version.replace(/\./g, '')}.example.test`;
    expect((await api.post('/v1/nodes', { name })).status).toBe(201);
    await runRake(console, ['node:del', `name=${name}`]);
    expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(204);
    expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
  });

  if (supportsParameters) {
    it('rolls the node back when the parameters task fails: 502 with the console\'s words, nothing left', async () => {
      const task = carriesCommas ? 'node:variables' : 'node:parameters';
      await console.setKnobs({ version, faults: { [task]: { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock' } } });
      try {
        const name = `rollback-${version.replace(/\./g, '')}.example.test`;
        await console.clearInvocations();
        const res = await api.post('/v1/nodes', { name, groups: ['default'], parameters: { role: 'web' } });
        expect(res.status).toBe(502);
        expect(res.body).toMatchObject({ code: 'backend_failed' });
        expect(res.body.detail).toContain('Mysql::Error: Deadlock');
        expect(res.body.detail).toContain('rolled back');
        expect((await console.tasksRun()).filter((t) => t !== '-T')).toEqual(['node:add', task, 'node:del']);
        expect(await console.node(name)).toBeUndefined();
        expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
        // The name is free again.
        await console.setKnobs({ version });
        expect((await api.post('/v1/nodes', { name, parameters: { role: 'web' } })).status).toBe(201);
      } finally {
        await console.setKnobs({ version });
      }
    });
  } else {
    it('422 unsupported_parameter: this console has no parameters task; nothing is created', async () => {
      await console.clearInvocations();
      const name = 'params-126.example.test';
      const res = await api.post('/v1/nodes', { name, parameters: { role: 'web' } });
      expect(res.status).toBe(422);
      expect(res.body).toMatchObject({ code: 'unsupported_parameter', parameters: ['role'] });
      expect((await console.tasksRun()).filter((t) => t !== '-T')).toEqual([]);
      expect(await console.node(name)).toBeUndefined();
    });
  }

  it(carriesCommas ? 'carries a comma in a value through node:variables' : 'refuses a comma in a value: 422, nothing spawned', async () => {
    const name = `comma-${version.replace(/\./g, '')}.example.test`;
    await console.clearInvocations();
    const res = await api.post('/v1/nodes', { name, parameters: { ntp_servers: 'a.example,b.example' } });
    if (carriesCommas) {
      expect(res.status).toBe(201);
      expect((await console.node(name))!.parameters).toEqual([['ntp_servers', 'a.example,b.example']]);
    } else {
      expect(res.status).toBe(422);
      expect(res.body.code).toBe('unsupported_parameter');
      expect((await console.tasksRun()).filter((t) => t !== '-T')).toEqual([]);
    }
  });

  it('a timed-out node:add is 504 and leaves the name uncertain: DELETE refuses with 409', async () => {
    await espm.stop();
    console = await ConsoleDouble.create({ version, faults: { 'node:add': { sleep: 5 } } });
    espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, mode), timeout: 1 } }, { runner });
    api = apiClient(espm);
    const name = `slow-${version.replace(/\./g, '')}.example.test`;
    const res = await api.post('/v1/nodes', { name });
    expect(res.status).toBe(504);
    expect(res.body.code).toBe('backend_timeout');
    // With the worker, node:add timed out inside it (no rake process ran it).
    expect((await console.processesRun()).includes('node:add')).toBe(mode === 'process');
    const del = await api.delete(`/v1/nodes/${name}`);
    expect(del.status).toBe(409);
    expect(del.body.code).toBe('ownership_uncertain');
    expect((await api.get('/v1/status')).body.ledger.nodes).toEqual({ present: 0, uncertain: 1 });
    await console.setKnobs({ version });
  }, 30_000);
});

async function runRake(console: ConsoleDouble, args: string[]): Promise<void> {
  const { execa } = await import('execa');
  const { CONSOLE_RAKEFILE } = await import('../support/console.js');
  await execa(rake!, ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', ...args], { cwd: console.dir });
}
