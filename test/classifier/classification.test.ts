/**
 * The classification story over HTTPS, for every classifier backend
 * (test/support/classifier-backends.ts): the console double run by real rake for every
 * console version it plays (issue #3), with the warm console worker and with one rake process
 * per call (issue #9), and the sandbox (issue #5: not one process spawned). The Classifier
 * interface itself is test/classifier/contract.test.ts; this is what the platform sees.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLASSIFIER_BACKENDS, type ClassifierRig, type ClassifierView } from '../support/classifier-backends.js';
import { describeWith } from '../support/components.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';

describe.each(CLASSIFIER_BACKENDS.map((b) => [b.name, b] as const))('classification over HTTPS: %s', (label, backend) => {
  describeWith(backend.component, backend.missing)(`${label}: the platform's story`, () => {
    const { stores } = backend;
    const tag = label.replace(/[^a-z0-9]+/g, '');
    let rig: ClassifierRig;
    let espm: RunningEspm;
    let runner: CountingRunner;
    let api: ReturnType<typeof apiClient>;
    let view: ClassifierView;
    /** Node tasks run since the last clear (rake), `-T` listings dropped; undefined for the sandbox. */
    const nodeTasks = async (): Promise<string[] | undefined> => (await view.operations?.())?.filter((t) => t !== '-T');

    beforeAll(async () => {
      rig = await backend.setup();
      runner = new CountingRunner();
      espm = await startEspm({ classifier: rig.config }, { runner });
      api = apiClient(espm);
      view = rig.view(espm.config.state.dir);
      // Start-up (rake -T, the worker's self-check) is over before the tests count tasks.
      const started = Date.now() + 60_000;
      while (!/console found|console not usable/.test(espm.logs.text()) && Date.now() < started) await new Promise((r) => setTimeout(r, 25));
    }, 240_000); // a real puppetserver (enc) starts in about a minute on 2 busy cores
    afterAll(async () => {
      await espm?.stop();
      await rig?.teardown();
    }, 60_000);

    it('lists groups and classes exactly as the console has them, sorted', async () => {
      const groups = await api.get('/v1/groups?refresh=true');
      expect(groups.status).toBe(200);
      expect(groups.body).toEqual({ groups: [...(await view.groups())].sort() });
      expect(groups.body.groups).toEqual(expect.arrayContaining(['default', 'no mcollective', 'puppet_master']));
      const classes = await api.get('/v1/classes?refresh=true');
      expect(classes.body).toEqual({ classes: [...(await view.classes())].sort() });
      expect(classes.body.classes).toEqual(expect.arrayContaining(['motd', 'ntp', 'apache::vhost']));
      for (const name of [...groups.body.groups, ...classes.body.classes] as string[]) {
        expect(name).not.toMatch(/^\(in |NodeClass|^$/);
      }
    });

    it('serves lists from the cache with an ETag, 304 on If-None-Match, a fresh list on ?refresh=true', async () => {
      const first = await api.get('/v1/groups');
      const etag = first.headers['etag'] as string;
      expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
      await view.clearOperations?.();
      const cached = await api.get('/v1/groups').set('If-None-Match', etag);
      expect(cached.status).toBe(304);
      expect(await view.operations?.()).toEqual(view.operations === undefined ? undefined : []);
      const refreshed = await api.get('/v1/groups?refresh=true');
      expect(refreshed.status).toBe(200);
      expect(refreshed.headers['etag']).toBe(etag);
      expect(await view.operations?.()).toEqual(view.operations === undefined ? undefined : ['nodegroup:list']);
    });

    it('creates a node with groups, classes (and parameters): 201, stored exactly, in 1 (or 2) rake tasks', async () => {
      await api.get('/v1/groups');
      await api.get('/v1/classes');
      await view.clearOperations?.();
      const name = `web01-${tag}.example.test`;
      const parameters: Record<string, string> = stores.parameters ? { motd_message: 'hello = world', role: 'web' } : {};
      const res = await api.post('/v1/nodes', { name, groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters });
      expect(res.status).toBe(201);
      expect(res.headers['location']).toBe(`/v1/nodes/${name}`);
      expect(res.body).toEqual({
        name,
        groups: ['default', 'no mcollective'],
        classes: ['ntp', 'apache::vhost'],
        parameters,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      });
      expect(await view.node(name)).toEqual({ groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters });
      const tasks = await nodeTasks();
      if (tasks !== undefined) {
        expect(tasks).toEqual(stores.parameters ? ['node:add', stores.commas ? 'node:variables' : 'node:parameters'] : ['node:add']);
        // With the worker, both tasks ran in the one warm process: no rake process was started.
        expect(await view.processes!()).toEqual(rig.config['worker'] === 'on' ? [] : tasks);
      }
      const again = await api.get(`/v1/nodes/${name}`);
      expect(again.status).toBe(200);
      expect(again.body).toEqual(res.body);
    });

    it('creates a node with neither groups nor classes (one task)', async () => {
      await view.clearOperations?.();
      const name = `bare-${tag}.example.test`;
      const res = await api.post('/v1/nodes', { name });
      expect(res.status).toBe(201);
      expect(await nodeTasks()).toEqual(view.operations === undefined ? undefined : ['node:add']);
      expect(await view.node(name)).toEqual({ groups: [], classes: [], parameters: {} });
    });

    it.each(backend.preExisting)('409 node_exists for the pre-existing node %s, which stays as it was', async (name) => {
      const before = await view.node(name);
      const res = await api.post('/v1/nodes', { name, groups: ['default'] });
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ code: 'node_exists', detail: expect.stringContaining(backend.words.exists) });
      expect(await view.node(name)).toEqual(before);
      expect(await readFile(join(espm.config.state.dir, 'ledger.json'), 'utf8')).not.toContain(name);
    });

    it('409 node_exists for a node espm created, without asking the console', async () => {
      const name = `dup-${tag}.example.test`;
      expect((await api.post('/v1/nodes', { name })).status).toBe(201);
      const before = runner.count;
      await view.clearOperations?.();
      const res = await api.post('/v1/nodes', { name, classes: ['ntp'] });
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('node_exists');
      expect(runner.count).toBe(before);
      expect(await view.operations?.()).toEqual(view.operations === undefined ? undefined : []);
      expect((await view.node(name))!.classes).toEqual([]);
    });

    it('422 listing unknown groups and classes; nothing is created (no node task after the list check)', async () => {
      await api.get('/v1/groups');
      await api.get('/v1/classes');
      await view.clearOperations?.();
      const name = `unknown-${tag}.example.test`;
      const res = await api.post('/v1/nodes', { name, groups: ['default', 'nosuchgroup'], classes: ['ntp', 'nosuch::class'] });
      expect(res.status).toBe(422);
      expect(res.body).toMatchObject({ code: 'unknown_group', unknown_groups: ['nosuchgroup'], unknown_classes: ['nosuch::class'] });
      // The cached lists were re-checked fresh once (at once: in no set order) before refusing: no node task ran.
      expect((await nodeTasks())?.sort()).toEqual(view.operations === undefined ? undefined : ['nodeclass:list', 'nodegroup:list']);
      expect(await view.node(name)).toBeUndefined();
      const classOnly = await api.post('/v1/nodes', { name, classes: ['nosuch'] });
      expect(classOnly.status).toBe(422);
      expect(classOnly.body).toMatchObject({ code: 'unknown_class', unknown_groups: [], unknown_classes: ['nosuch'] });
    });

    it('DELETE of a node espm did not create → 404, and the node is still there', async () => {
      for (const name of backend.preExisting) {
        const before = await view.node(name);
        const res = await api.delete(`/v1/nodes/${name}`);
        expect(res.status).toBe(404);
        expect(res.body.code).toBe('node_not_found');
        expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
        expect(await view.node(name)).toEqual(before);
      }
    });

    it('DELETE of an owned node → 204, gone from the console and the ledger; again → 404', async () => {
      const name = `del-${tag}.example.test`;
      expect((await api.post('/v1/nodes', { name, groups: ['default'] })).status).toBe(201);
      const res = await api.delete(`/v1/nodes/${name}`);
      expect(res.status).toBe(204);
      expect(await view.node(name)).toBeUndefined();
      expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(404);
      expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
    });

    it('DELETE of an owned node already gone from the console forgets it: 204', async () => {
      const name = `gone-${tag}.example.test`;
      expect((await api.post('/v1/nodes', { name })).status).toBe(201);
      await view.removeBehindEspm(name);
      expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(204);
      expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
    });

    if (backend.knobs.secondStep) {
      it("rolls the node back when the create's second step fails: 502 with the console's words, nothing left", async () => {
        await rig.faults.failSecondStep!();
        const name = `rollback-${tag}.example.test`;
        try {
          await view.clearOperations?.();
          const res = await api.post('/v1/nodes', { name, groups: ['default'], parameters: { role: 'web' } });
          expect(res.status).toBe(502);
          expect(res.body).toMatchObject({ code: 'backend_failed' });
          expect(res.body.detail).toContain(backend.words.secondStep);
          expect(res.body.detail).toContain('rolled back');
          const tasks = await nodeTasks();
          if (tasks !== undefined) expect(tasks).toEqual(['node:add', stores.commas ? 'node:variables' : 'node:parameters', 'node:del']);
          expect(await view.node(name)).toBeUndefined();
          expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
        } finally {
          await rig.faults.reset();
        }
        // The name is free again.
        expect((await api.post('/v1/nodes', { name, parameters: { role: 'web' } })).status).toBe(201);
      });
    }

    if (!stores.parameters) {
      it('422 unsupported_parameter: this console cannot store parameters; nothing is created', async () => {
        await view.clearOperations?.();
        const name = `params-${tag}.example.test`;
        const res = await api.post('/v1/nodes', { name, parameters: { role: 'web' } });
        expect(res.status).toBe(422);
        expect(res.body).toMatchObject({ code: 'unsupported_parameter', parameters: ['role'] });
        expect(await nodeTasks()).toEqual(view.operations === undefined ? undefined : []);
        expect(await view.node(name)).toBeUndefined();
      });
    }

    it(stores.commas ? 'carries a comma in a value' : 'refuses a comma in a value: 422, nothing created', async () => {
      const name = `comma-${tag}.example.test`;
      await view.clearOperations?.();
      const res = await api.post('/v1/nodes', { name, parameters: { ntp_servers: 'a.example,b.example' } });
      if (stores.commas) {
        expect(res.status).toBe(201);
        expect((await view.node(name))!.parameters).toEqual({ ntp_servers: 'a.example,b.example' });
      } else {
        expect(res.status).toBe(422);
        expect(res.body.code).toBe('unsupported_parameter');
        expect(await nodeTasks()).toEqual(view.operations === undefined ? undefined : []);
        expect(await view.node(name)).toBeUndefined();
      }
    });

    if (!backend.spawns) {
      it('spawned no process during the whole story', () => {
        expect(runner.count).toBe(0);
      });
    }

    if (backend.knobs.hang) {
      it('a timed-out create is 504 and leaves the name uncertain: DELETE refuses with 409', async () => {
        await espm.stop();
        await rig.faults.hangCreate!(5);
        try {
          espm = await startEspm({ classifier: { ...rig.config, timeout: 1 } }, { runner });
          api = apiClient(espm);
          view = rig.view(espm.config.state.dir);
          await view.clearOperations?.();
          const name = `slow-${tag}.example.test`;
          const res = await api.post('/v1/nodes', { name });
          expect(res.status).toBe(504);
          expect(res.body.code).toBe('backend_timeout');
          // With the worker, node:add timed out inside it (no rake process ran it).
          if (view.processes !== undefined) expect((await view.processes()).includes('node:add')).toBe(rig.config['worker'] !== 'on');
          const del = await api.delete(`/v1/nodes/${name}`);
          expect(del.status).toBe(409);
          expect(del.body.code).toBe('ownership_uncertain');
          expect((await api.get('/v1/status')).body.ledger.nodes).toEqual({ present: 0, uncertain: 1 });
        } finally {
          await rig.faults.reset();
        }
      }, 30_000);
    }
  });
});
