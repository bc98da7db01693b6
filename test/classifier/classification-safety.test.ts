/**
 * Classification safety (issue #3): bad input never reaches rake, espm's own environment
 * never reaches the console, uncertain ownership refuses deletion, `espm ledger` resolves it —
 * with the warm console worker and with one rake process per call (issue #9).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Ledger } from '../../src/ownership/ledger.js';
import { ConsoleDouble, findRake, WORKER_MODES } from '../support/console.js';
import { apiClient, setUpDir, startEspm, type RunningEspm } from '../support/espm.js';
import { describeWith } from '../support/components.js';
import { CountingRunner } from '../support/runner.js';

const ESPM = fileURLToPath(new URL('../../bin/espm', import.meta.url));
const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'no rake on PATH' : undefined);

describeWithRake.each(WORKER_MODES)('classification safety (%s)', (mode) => {
  let console: ConsoleDouble;
  beforeEach(async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
  });
  afterEach(() => console.remove());

  describe('in-process', () => {
    let espm: RunningEspm;
    let runner: CountingRunner;
    beforeEach(async () => {
      runner = new CountingRunner();
      espm = await startEspm({ classifier: console.classifierConfig(rake!, mode) }, { runner });
      // Let the start-up console check (and worker warm-up) finish so it is not counted below.
      await waitFor(() => espm.logs.text().includes('console found'));
    });
    afterEach(() => espm.stop());

    it.each<[string, unknown]>([
      ['an upper-case name', { name: 'Web01.example.test' }],
      ['a name with shell metacharacters', { name: 'web01;rm -rf /' }],
      ['a name with ..', { name: 'web..example.test' }],
      ['a name with =', { name: 'name=evil' }],
      ['a group with a comma', { name: 'a.example.test', groups: ['default,puppet_master'] }],
      ['a group with a newline', { name: 'a.example.test', groups: ['default\npuppet_master'] }],
      ['a group with a trailing space', { name: 'a.example.test', groups: ['default '] }],
      ['a bad class', { name: 'a.example.test', classes: ['Apache::Vhost'] }],
      ['a parameter key with =', { name: 'a.example.test', parameters: { 'a=b': 'c' } }],
      ['a parameter value with a newline', { name: 'a.example.test', parameters: { a: 'b\nclasses=evil' } }],
      ['a non-string parameter', { name: 'a.example.test', parameters: { a: 1 } }],
      ['an extra member', { name: 'a.example.test', environment: 'production' }],
      ['a missing name', { groups: ['default'] }],
      ['an array body', [{ name: 'a.example.test' }]],
    ])('400 invalid_request for %s, before any process runs', async (_what, body) => {
      const before = runner.count;
      await console.clearInvocations();
      const ledgerBefore = await readFile(join(espm.config.state.dir, 'ledger.json'), 'utf8').catch(() => 'absent');
      const res = await apiClient(espm).post('/v1/nodes', body);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe('invalid_request');
      expect(res.body.detail).toMatch(/^(invalid node: |the body must be a JSON object)/);
      expect(runner.count).toBe(before);
      expect(await console.tasksRun()).toEqual([]);
      expect(await readFile(join(espm.config.state.dir, 'ledger.json'), 'utf8').catch(() => 'absent')).toBe(ledgerBefore);
    });

    it('415 for a body that is not JSON; 400 for invalid path names; nothing spawned', async () => {
      const before = runner.count;
      await console.clearInvocations();
      const form = await apiClient(espm).post('/v1/nodes', 'name=a.example.test').type('form');
      expect(form.status).toBe(415);
      expect(form.body.code).toBe('unsupported_media_type');
      for (const path of ['/v1/nodes/Web01', '/v1/nodes/a..b', '/v1/nodes/%2e%2e%2fetc']) {
        expect((await apiClient(espm).get(path)).status).toBe(400);
        expect((await apiClient(espm).delete(path)).status).toBe(400);
      }
      expect(runner.count).toBe(before);
      expect(await console.tasksRun()).toEqual([]);
    });

    it('a timed-out delete leaves the node `deleting` (write-ahead) and deleting again finishes the job', async () => {
      const name = 'slowdel.example.test';
      expect((await apiClient(espm).post('/v1/nodes', { name })).status).toBe(201);
      const first = espm;
      await first.server.stop(1000);
      await console.setKnobs({ version: '1.2.10', faults: { 'node:del': { sleep: 5 } } });
      espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, mode), timeout: 1 } }, { runner, setup: first.setup });
      const restarted = espm;
      espm = { ...restarted, stop: async () => { await restarted.stop(); await first.setup.remove(); } };
      const timedOut = await apiClient(espm).delete(`/v1/nodes/${name}`);
      expect(timedOut.status).toBe(504);
      const ledger = JSON.parse(await readFile(join(espm.config.state.dir, 'ledger.json'), 'utf8')) as { entries: Array<{ name: string; state: string }> };
      expect(ledger.entries.find((e) => e.name === name)?.state).toBe('deleting');
      expect((await apiClient(espm).get(`/v1/nodes/${name}`)).status).toBe(404);
      await console.setKnobs({ version: '1.2.10' });
      expect((await apiClient(espm).delete(`/v1/nodes/${name}`)).status).toBe(204);
      expect(await console.node(name)).toBeUndefined();
    }, 30_000);

    it('concurrent list requests on a cold cache share one rake task', async () => {
      await console.clearInvocations();
      const answers = await Promise.all(Array.from({ length: 10 }, () => apiClient(espm).get('/v1/classes')));
      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      expect(await console.tasksRun()).toEqual(['nodeclass:list']);
    });
  });

  it('espm started with name/groups/classes/parameters in its environment never passes them to the console', async () => {
    const setup = await setUpDir();
    try {
      await setup.editConfig({ classifier: console.classifierConfig(rake!, mode), server: { port: 0 } });
      // port 0 is refused by config validation: use a fixed free port instead.
      const { createServer } = await import('node:net');
      const probe = createServer().listen(0, '127.0.0.1');
      await new Promise((r) => probe.once('listening', r));
      const port = (probe.address() as { port: number }).port;
      probe.close();
      await setup.editConfig({ server: { port } });
      const daemon = execa(ESPM, ['-c', setup.plan.configPath], {
        env: { name: 'evil', groups: 'evil', classes: 'evil', class: 'evil', group: 'evil', match: 'evil', parameters: 'evil=1', variables: 'evil=1' },
        reject: false,
      });
      let out = '';
      daemon.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      try {
        await waitFor(() => out.includes('"msg":"listening"'));
        const url = `https://127.0.0.1:${port}`;
        const request = (await import('supertest')).default;
        const auth = `Bearer ${setup.plan.psk}`;
        const groups = await request(url).get('/v1/groups').ca(setup.plan.certificate).set('Authorization', auth);
        expect(groups.body.groups).not.toContain('evil');
        const created = await request(url)
          .post('/v1/nodes')
          .ca(setup.plan.certificate)
          .set('Authorization', auth)
          .send({ name: 'clean.example.test' });
        expect(created.status).toBe(201);
        expect(await console.node('clean.example.test')).toMatchObject({ groups: [], classes: [], parameters: [] });
        expect(await console.node('evil')).toBeUndefined();
        const starts = (await console.invocations()).filter((i) => i.event === 'start');
        expect(starts.length).toBeGreaterThanOrEqual(3);
        // Per task too: with the worker, many tasks run in one process, each with its own ENV.
        const tasks = (await console.taskLog()).filter((i) => i.event === 'task');
        expect(tasks.map((t) => t.task)).toEqual(expect.arrayContaining(['nodegroup:list', 'node:add']));
        expect(starts.some((s) => (s.tasks ?? []).includes('node:add'))).toBe(mode === 'process');
        for (const start of [...starts, ...tasks]) {
          expect(start.inherited_env).toEqual([]);
          for (const [key, value] of Object.entries(start.env ?? {})) {
            if (key !== 'name') expect([key, value]).toEqual([key, null]);
          }
          expect(start.env?.['name'] ?? null).not.toBe('evil');
        }
      } finally {
        daemon.kill('SIGTERM');
        expect((await daemon).exitCode).toBe(0);
      }
    } finally {
      await setup.remove();
    }
  }, 30_000);

  it('a create interrupted by a crash leaves the name uncertain: DELETE → 409 until `espm ledger adopt`', async () => {
    const setup = await setUpDir();
    try {
      await setup.editConfig({ classifier: console.classifierConfig(rake!, mode) });
      const stateDir = join(setup.dir, 'var');
      // The crash: the ledger holds the write-ahead entry, the console got the node.
      const ledger = await Ledger.open(stateDir);
      await ledger.begin('node', 'crashed.example.test', { groups: [], classes: [], parameters: {} });
      await ledger.close();
      await execa(rake!, ['-s', '-f', console.classifierConfig(rake!)['rakefile'] as string, 'RAILS_ENV=production', 'node:add', 'name=crashed.example.test'], { cwd: console.dir });

      let espm = await startEspm({}, { setup });
      expect(espm.logs.text()).toContain('creates interrupted by a crash');
      const refused = await apiClient(espm).delete('/v1/nodes/crashed.example.test');
      expect(refused.status).toBe(409);
      expect(refused.body.code).toBe('ownership_uncertain');
      expect(await console.node('crashed.example.test')).toBeDefined();

      // The ledger CLI refuses while the daemon holds the state directory.
      const busy = await execa(ESPM, ['ledger', 'adopt', 'node', 'crashed.example.test', '-c', setup.plan.configPath], { reject: false });
      expect(busy.exitCode).toBe(1);
      expect(busy.stderr).toContain(`state directory is in use by process ${process.pid}`);
      await espm.stop();

      const list = await execa(ESPM, ['ledger', 'list', '-c', setup.plan.configPath]);
      expect(list.stdout).toMatch(/^node\tcrashed\.example\.test\tuncertain\t/m);
      const adopt = await execa(ESPM, ['ledger', 'adopt', 'node', 'crashed.example.test', '-c', setup.plan.configPath]);
      expect(adopt.stdout).toBe('node crashed.example.test: uncertain → present');
      espm = await startEspm({}, { setup });
      expect((await apiClient(espm).delete('/v1/nodes/crashed.example.test')).status).toBe(204);
      expect(await console.node('crashed.example.test')).toBeUndefined();
      await espm.stop();

      const forget = await execa(ESPM, ['ledger', 'forget', 'node', 'crashed.example.test', '-c', setup.plan.configPath], { reject: false });
      expect(forget.exitCode).toBe(1);
      expect(forget.stderr).toContain('no node crashed.example.test in the ledger');
    } finally {
      await setup.remove();
    }
  }, 30_000);
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
