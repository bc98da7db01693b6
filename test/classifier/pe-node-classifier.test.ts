/**
 * `pe-node-classifier` against the Node Classifier double (test/fixtures/node-classifier/),
 * beyond the shared contract and HTTP story: what espm writes to the NC, from the double's
 * invocation log (per create: at most one read of the groups, one group created, one pin per
 * chosen group, no write to any other group; per delete: exactly the unpins and the one group
 * delete; pre-existing groups unchanged), a group changed behind espm's back (409
 * `ownership_uncertain`), authentication (certificate allow-list, RBAC token; 401/403 say
 * which identity and how to allow it), NC errors in problem details, dropped connections,
 * `children-present`, and the double's own error kinds.
 */
import { PuppetHttpClient } from '../../src/puppet-http/client.js';
import type { NcGroup } from '../fixtures/node-classifier/double.js';
import { ROOT_GROUP_ID } from '../fixtures/node-classifier/double.js';
import { adapterFor } from '../support/classifier-backends.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { NC_CLIENT_CERTNAME, NC_TOKEN, startNodeClassifier, type NcRig } from '../support/node-classifier.js';

const DEFAULT_ID = '4d5e6f7a-3b4c-4d5e-8f6a-8b9c0d1e2f04';
const NO_MCO_ID = '5e6f7a8b-4c5d-4e6f-9a7b-9c0d1e2f3a05';
const PUPPET_MASTER_ID = '6f7a8b9c-5d6e-4f7a-8b8c-0d1e2f3a4b06';

let rig: NcRig;
let espm: RunningEspm;
let api: ReturnType<typeof apiClient>;
/** The seed groups as they were before any test. */
let seed: NcGroup[];

/** Pre-existing groups as they are now (espm's per-node groups left out). */
const preExisting = (): NcGroup[] => rig.nc.snapshot().filter((g) => !g.name.startsWith('espm: '));

beforeAll(async () => {
  rig = await startNodeClassifier();
  seed = rig.nc.snapshot();
  espm = await startEspm({ classifier: rig.config });
  api = apiClient(espm);
});
afterAll(async () => {
  await espm?.stop();
  await rig?.teardown();
});
afterEach(() => {
  rig.nc.faults = [];
  // Every test leaves the groups espm did not create exactly as they were.
  expect(preExisting()).toEqual(seed);
});

describe('what espm writes to the Node Classifier', () => {
  it('create: at most one groups read, one POST /v1/groups of espm: <name>, one pin per chosen group, nothing else written', async () => {
    await api.get('/v1/groups');
    await api.get('/v1/classes');
    rig.nc.log.length = 0;
    const name = 'web01.nc.test';
    const res = await api.post('/v1/nodes', { name, groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters: { role: 'web', motd: 'a,b = c' } });
    expect(res.status).toBe(201);
    const group = rig.nc.byName(`espm: ${name}`)!;
    expect(group).toMatchObject({
      parent: ROOT_GROUP_ID,
      environment: 'production',
      rule: ['or', ['=', 'name', name]],
      classes: { ntp: {}, 'apache::vhost': {} },
      variables: { role: 'web', motd: 'a,b = c' },
    });
    // The lists were read just now: the create's own checks reuse that read (at most one per create).
    expect(rig.nc.log.filter((i) => i.method === 'GET' && i.path === '/v1/groups').length).toBeLessThanOrEqual(1);
    expect(rig.nc.writes()).toEqual(['POST /v1/groups', `POST /v1/groups/${DEFAULT_ID}/pin`, `POST /v1/groups/${NO_MCO_ID}/pin`]);
    expect(rig.nc.log.filter((i) => i.path.endsWith('/pin')).map((i) => i.body)).toEqual([{ nodes: [name] }, { nodes: [name] }]);
    // The ledger's receipt: the group's id and the pins.
    const ledger = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(`${espm.config.state.dir}/ledger.json`, 'utf8'))) as { entries: { name: string; receipt: unknown }[] };
    expect(ledger.entries.find((e) => e.name === name)?.receipt).toEqual({ group_id: group.id, pinned: [DEFAULT_ID, NO_MCO_ID] });
    // espm's own group is not offered to the platform as a group.
    expect((await api.get('/v1/groups?refresh=true')).body.groups).not.toContain(`espm: ${name}`);

    rig.nc.log.length = 0;
    expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(204);
    expect(rig.nc.writes()).toEqual([`POST /v1/groups/${DEFAULT_ID}/unpin`, `POST /v1/groups/${NO_MCO_ID}/unpin`, `DELETE /v1/groups/${group.id}`]);
    expect(rig.nc.byName(`espm: ${name}`)).toBeUndefined();
  });

  it('create with cold list caches: still one groups read (the service\'s list read is reused)', async () => {
    rig.nc.log.length = 0;
    const cold = await startEspm({ classifier: rig.config });
    try {
      // start()'s check reads the groups once (it fills no list cache): wait for it, then count.
      for (let i = 0; i < 100 && !rig.nc.log.some((e) => e.path === '/v1/groups'); i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 1100));
      rig.nc.log.length = 0;
      const name = 'cold.nc.test';
      expect((await apiClient(cold).post('/v1/nodes', { name, groups: ['puppet_master'], classes: ['motd'] })).status).toBe(201);
      expect(rig.nc.log.filter((i) => i.method === 'GET' && i.path === '/v1/groups')).toHaveLength(1);
      const id = rig.nc.byName(`espm: ${name}`)!.id;
      expect(rig.nc.writes()).toEqual(['POST /v1/groups', `POST /v1/groups/${PUPPET_MASTER_ID}/pin`]);
      // An entry adopted by an operator (no receipt): the group by name and rule, the pins from its description.
      const adopter = adapterFor({ config: rig.config } as never, cold.config.state.dir);
      rig.nc.log.length = 0;
      expect(await adopter.delete(name, null)).toBe('deleted');
      expect(rig.nc.writes()).toEqual([`POST /v1/groups/${PUPPET_MASTER_ID}/unpin`, `DELETE /v1/groups/${id}`]);
      await adopter.close?.();
    } finally {
      await cold.stop();
    }
  });

  it('rollback when a pin fails: the group deleted, the pins undone, 502 with the NC kind and msg', async () => {
    rig.nc.log.length = 0;
    rig.nc.faults.push({ method: 'POST', path: new RegExp(`^/v1/groups/${NO_MCO_ID}/pin$`), action: 'error', status: 500, kind: 'application-error', msg: 'pin failed (test fault)' });
    const name = 'rollback.nc.test';
    const res = await api.post('/v1/nodes', { name, groups: ['default', 'no mcollective'] });
    expect(res.status).toBe(502);
    expect(res.body.detail).toContain('application-error: pin failed (test fault)');
    expect(res.body.detail).toContain('rolled back');
    const created = rig.nc.log.find((i) => i.method === 'POST' && i.path === '/v1/groups');
    expect(created?.status).toBe(303);
    const writes = rig.nc.writes();
    expect(writes.slice(0, 3)).toEqual(['POST /v1/groups', `POST /v1/groups/${DEFAULT_ID}/pin`, `POST /v1/groups/${NO_MCO_ID}/pin`]);
    expect(writes.slice(3, 5).sort()).toEqual([`POST /v1/groups/${DEFAULT_ID}/unpin`, `POST /v1/groups/${NO_MCO_ID}/unpin`].sort());
    expect(writes[5]).toMatch(/^DELETE \/v1\/groups\/[0-9a-f-]{36}$/);
    expect(writes).toHaveLength(6);
    expect(rig.nc.byName(`espm: ${name}`)).toBeUndefined();
    expect((await api.get(`/v1/nodes/${name}`)).status).toBe(404);
  });

  it('a class gone from the NC since the list was cached: 502 with missing-referents, nothing created', async () => {
    await api.get('/v1/classes?refresh=true');
    const classes = rig.nc.classes.get('production')!;
    rig.nc.classes.set('production', classes.filter((c) => c !== 'motd'));
    try {
      const res = await api.post('/v1/nodes', { name: 'referents.nc.test', classes: ['motd'] });
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ code: 'backend_failed', detail: expect.stringContaining('missing-referents: ') });
      expect(res.body.detail).toContain('nothing was created');
      expect(rig.nc.byName('espm: referents.nc.test')).toBeUndefined();
    } finally {
      rig.nc.classes.set('production', classes);
    }
  });

  it('400 for a bad request: the NC is not asked', async () => {
    rig.nc.log.length = 0;
    const res = await api.post('/v1/nodes', { name: 'Bad Name!', groups: ['default'] });
    expect(res.status).toBe(400);
    expect(rig.nc.log).toEqual([]);
  });
});

describe('ownership at delete', () => {
  it('a group at the receipt id renamed behind espm: 409 ownership_uncertain, nothing written; then the name stays uncertain', async () => {
    const name = 'renamed.nc.test';
    expect((await api.post('/v1/nodes', { name, groups: ['default'] })).status).toBe(201);
    const group = rig.nc.byName(`espm: ${name}`)!;
    group.name = 'Someone else\'s group';
    rig.nc.log.length = 0;
    const res = await api.delete(`/v1/nodes/${name}`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'ownership_uncertain', detail: expect.stringContaining("no longer espm's") });
    expect(rig.nc.writes()).toEqual([]);
    expect(rig.nc.groups.get(group.id)?.name).toBe('Someone else\'s group');
    expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(409);
    // Clean up as an operator would.
    rig.nc.groups.delete(group.id);
    const def = rig.nc.groups.get(DEFAULT_ID)!;
    def.rule = (def.rule as unknown[]).filter((t) => JSON.stringify(t) !== JSON.stringify(['=', 'name', name])) as NcGroup['rule'];
  });

  it('a group whose rule was changed behind espm is not espm\'s either', async () => {
    const name = 'rerule.nc.test';
    expect((await api.post('/v1/nodes', { name })).status).toBe(201);
    const group = rig.nc.byName(`espm: ${name}`)!;
    group.rule = ['or', ['=', 'name', name], ['=', 'name', 'other.nc.test']];
    const res = await api.delete(`/v1/nodes/${name}`);
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('ownership_uncertain');
    expect(rig.nc.groups.has(group.id)).toBe(true);
    rig.nc.groups.delete(group.id);
  });

  it('children-present: 502 with the NC words, the entry kept; after the child goes, 204', async () => {
    const name = 'parent.nc.test';
    expect((await api.post('/v1/nodes', { name })).status).toBe(201);
    const group = rig.nc.byName(`espm: ${name}`)!;
    const child: NcGroup = { id: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', name: 'child', parent: group.id, environment: 'production', environment_trumps: false, rule: null, classes: {}, variables: {} };
    rig.nc.groups.set(child.id, child);
    const res = await api.delete(`/v1/nodes/${name}`);
    expect(res.status).toBe(502);
    expect(res.body.detail).toContain('children-present');
    expect((await api.get(`/v1/nodes/${name}`)).status).toBe(200);
    rig.nc.groups.delete(child.id);
    expect((await api.delete(`/v1/nodes/${name}`)).status).toBe(204);
  });

  it('a connection dropped after POST /v1/groups did its work: 504, uncertain, DELETE → 409', async () => {
    rig.nc.faults.push({ method: 'POST', path: /^\/v1\/groups$/, action: 'drop', afterWork: true, times: 1 });
    const name = 'dropped.nc.test';
    const res = await api.post('/v1/nodes', { name });
    expect(res.status).toBe(504);
    expect((await api.delete(`/v1/nodes/${name}`)).body.code).toBe('ownership_uncertain');
    rig.nc.groups.delete(rig.nc.byName(`espm: ${name}`)!.id);
  });

  it('a dropped connection on a read is retried', async () => {
    rig.nc.faults.push({ method: 'GET', path: /^\/v1\/groups$/, action: 'drop', times: 1 });
    rig.nc.log.length = 0;
    const res = await api.get('/v1/groups?refresh=true');
    expect(res.status).toBe(200);
    expect(rig.nc.log.filter((i) => i.path === '/v1/groups').map((i) => i.status)).toEqual([0, 200]);
  });
});

describe('authentication', () => {
  it('by the master\'s certificate on the allow-list', () => {
    expect(rig.nc.log.every((i) => i.auth === `cert:${NC_CLIENT_CERTNAME}`)).toBe(true);
  });

  it('a certificate not on the allow-list: 502 naming the certname and rbac-certificate-allowlist', async () => {
    rig.nc.allowlist.delete(NC_CLIENT_CERTNAME);
    try {
      const res = await api.get('/v1/groups?refresh=true');
      expect(res.status).toBe(502);
      expect(res.body.detail).toContain('HTTP 403');
      expect(res.body.detail).toContain(`the master's certificate ${NC_CLIENT_CERTNAME}`);
      expect(res.body.detail).toContain('rbac-certificate-allowlist');
      expect(res.body.detail).toContain('puppetlabs.rbac/permission-denied');
    } finally {
      rig.nc.allowlist.add(NC_CLIENT_CERTNAME);
    }
  });

  it('an RBAC token from token_file (no client certificate sent); a refused token names the file', async () => {
    const tokenEspm = await startEspm({ classifier: { ...rig.config, token_file: rig.tokenFile } });
    try {
      const tokenApi = apiClient(tokenEspm);
      rig.nc.log.length = 0;
      const res = await tokenApi.post('/v1/nodes', { name: 'token.nc.test', groups: ['default'] });
      expect(res.status).toBe(201);
      expect(new Set(rig.nc.log.map((i) => i.auth))).toEqual(new Set(['token']));
      expect((await tokenApi.delete('/v1/nodes/token.nc.test')).status).toBe(204);
      rig.nc.tokens.delete(NC_TOKEN);
      const refused = await tokenApi.get('/v1/classes?refresh=true');
      expect(refused.status).toBe(502);
      expect(refused.body.detail).toContain('HTTP 401');
      expect(refused.body.detail).toContain(`token_file ${rig.tokenFile}`);
    } finally {
      rig.nc.tokens.add(NC_TOKEN);
      await tokenEspm.stop();
    }
  });
});

describe('the double itself (NC API v1 error kinds)', () => {
  let client: PuppetHttpClient;
  beforeAll(() => {
    client = new PuppetHttpClient({ baseUrl: rig.nc.url, service: 'Node Classifier', tls: { ca: rig.pki.ca, cert: rig.pki.clientCert, key: rig.pki.clientKey }, timeoutMs: 5000 });
  });
  afterAll(() => client.close());
  const post = async (path: string, body: unknown) => client.request('POST', path, { text: JSON.stringify(body), type: 'application/json' });
  const kind = (body: string): unknown => (JSON.parse(body) as { kind: unknown }).kind;

  it('POST /v1/groups: 303 + Location; schema-violation, missing-parent, uniqueness-violation, missing-referents', async () => {
    const created = await post('/v1/groups', { name: 'double test', parent: ROOT_GROUP_ID, classes: {} });
    expect(created.status).toBe(303);
    const id = /\/classifier-api\/v1\/groups\/([0-9a-f-]{36})$/.exec(String(created.headers['location']))![1]!;
    expect(kind((await post('/v1/groups', { name: 'x', parent: ROOT_GROUP_ID })).body)).toBe('schema-violation');
    expect(kind((await post('/v1/groups', { name: 'x', parent: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', classes: {} })).body)).toBe('missing-parent');
    expect(kind((await post('/v1/groups', { name: 'double test', parent: ROOT_GROUP_ID, classes: {} })).body)).toBe('uniqueness-violation');
    expect(kind((await post('/v1/groups', { name: 'y', parent: ROOT_GROUP_ID, classes: { nosuch: {} } })).body)).toBe('missing-referents');
    expect(kind((await client.request('GET', '/v1/groups/not-a-uuid')).body)).toBe('malformed-uuid');
    expect((await client.request('DELETE', `/v1/groups/${id}`)).status).toBe(204);
    const gone = await client.request('GET', `/v1/groups/${id}`);
    expect([gone.status, kind(gone.body)]).toEqual([404, 'not-found']);
    const env = await client.request('GET', '/v1/environments/nosuch/classes');
    expect([env.status, kind(env.body)]).toEqual([404, 'not-found']);
  });

  it('no identity: 401', async () => {
    const anonymous = new PuppetHttpClient({ baseUrl: rig.nc.url, service: 'Node Classifier', tls: { ca: rig.pki.ca }, timeoutMs: 5000 });
    try {
      const res = await anonymous.request('GET', '/v1/groups');
      expect([res.status, kind(res.body)]).toEqual([401, 'puppetlabs.rbac/user-unauthenticated']);
    } finally {
      await anonymous.close();
    }
  });
});
