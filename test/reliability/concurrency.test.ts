/**
 * Concurrency (issue #6, docs/design.md "Ownership"): one operation per name at a time; `node_exists` for any
 * node of that name; CA operations one at a time; classifier list calls coalesced and never
 * held up by a create. Against the real backends' doubles (console double run by real rake,
 * puppet cert 2.7 double), over HTTPS.
 */
import { neverOverlapping, PuppetCertMaster } from '../support/ca.js';
import { ConsoleDouble, findRake } from '../support/console.js';
import { describeWith } from '../support/components.js';
import { startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';
import { ledgerEntries, rawRequest, waitFor, type RawAnswer } from './support.js';

const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'rake is not on PATH' : undefined);

const JSON_TYPE = { 'content-type': 'application/json' };

function post(espm: RunningEspm, path: string, body: unknown): Promise<RawAnswer> {
  return rawRequest(espm, { method: 'POST', path, headers: JSON_TYPE, body: JSON.stringify(body) });
}

/** The rake task of a recorded command (its argv's first non-option after RAILS_ENV=). */
function rakeTask(args: readonly string[]): string {
  return args[args.findIndex((a) => a.startsWith('RAILS_ENV=')) + 1] ?? '';
}

describeWithRake('concurrency', () => {
  let consoleDouble: ConsoleDouble;
  let master: PuppetCertMaster;
  let runner: CountingRunner;
  let espm: RunningEspm;

  beforeEach(async () => {
    consoleDouble = await ConsoleDouble.create({ version: '1.2.10' });
    master = await PuppetCertMaster.create();
    runner = new CountingRunner();
    espm = await startEspm({ classifier: consoleDouble.classifierConfig(rake!), ca: master.caConfig() }, { runner });
    await waitFor(() => espm.logs.text().includes('console found'), 15_000, 'console found');
  });
  afterEach(async () => {
    await espm.stop();
    await consoleDouble.remove();
    await master.remove();
  });

  it('100 concurrent creates over 20 names: one 201 per name, the rest 409 node_exists; console and ledger agree', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `race${String(i).padStart(2, '0')}.example.test`);
    // Interleaved: name 0..19, then again, five rounds, all in flight at once.
    const requests = Array.from({ length: 100 }, (_, i) => names[i % 20]!);
    const answers = await Promise.all(
      requests.map(async (name) => ({ name, res: await post(espm, '/v1/nodes', { name, groups: ['default'], classes: ['ntp'] }) })),
    );

    for (const name of names) {
      const mine = answers.filter((a) => a.name === name).map((a) => a.res);
      expect({ name, statuses: mine.map((r) => r.status).sort() }).toEqual({ name, statuses: [201, 409, 409, 409, 409] });
      for (const refused of mine.filter((r) => r.status === 409)) {
        expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(refused.body?.['code']).toBe('node_exists');
      }
      expect(mine.find((r) => r.status === 201)?.body).toMatchObject({ name, groups: ['default'], classes: ['ntp'] });
    }

    // The console has each name exactly once, as created.
    const store = await consoleDouble.store();
    for (const name of names) {
      const stored = store.nodes.filter((n) => n.name === name);
      expect({ name, stored: stored.length }).toEqual({ name, stored: 1 });
      expect(stored[0]).toMatchObject({ groups: ['default'], classes: ['ntp'] });
    }
    expect(store.nodes.filter((n) => n.name.startsWith('race'))).toHaveLength(20);

    // The ledger has each name exactly once, present; nothing pending or uncertain.
    const entries = await ledgerEntries(espm);
    expect(entries.filter((e) => e.kind === 'node').map((e) => `${e.name} ${e.state}`).sort()).toEqual(names.map((n) => `${n} present`));
    expect(entries).toHaveLength(20);

    // The losers never reached the console; the group and class lists were fetched once each
    // for 100 callers (coalesced).
    const tasks = runner.calls.filter((c) => c.file === rake).map((c) => rakeTask(c.args));
    expect(tasks.filter((t) => t === 'node:add')).toHaveLength(20);
    expect(tasks.filter((t) => t === 'nodegroup:list')).toHaveLength(1);
    expect(tasks.filter((t) => t === 'nodeclass:list')).toHaveLength(1);
    expect((await consoleDouble.tasksRun()).filter((t) => t.startsWith('node:add'))).toHaveLength(20);
  }, 90_000);

  it('50 concurrent certificate requests: all 201, never two CA processes at once', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `cert${String(i).padStart(2, '0')}.example.test`);
    const answers = await Promise.all(names.map((certname) => post(espm, '/v1/certificates', { certname })));
    expect(answers.map((a, i) => [names[i], a.status, a.status === 201 ? '' : a.text])).toEqual(names.map((n) => [n, 201, '']));
    expect(answers.map((a) => a.body?.['certname'])).toEqual(names);
    expect(new Set(answers.map((a) => a.body?.['fingerprint_sha256'])).size).toBe(50);

    // The double's own record of its processes (start/end per pid).
    const processes = await master.processIntervals();
    expect(processes.filter((p) => p.action === 'generate')).toHaveLength(50);
    expect(neverOverlapping(processes)).toBe(true);
    // And espm's: every command spawned for the CA, however it ended.
    const puppet = master.caConfig()['puppet'];
    const spawned = runner.intervals.filter((i) => i.file === puppet);
    expect(spawned.length).toBe(processes.length);
    expect(spawned.length).toBeGreaterThanOrEqual(50);
    expect(neverOverlapping(spawned)).toBe(true);

    const entries = await ledgerEntries(espm);
    expect(entries.filter((e) => e.kind === 'certificate' && e.state === 'present').map((e) => e.name).sort()).toEqual(names);
  }, 180_000);

  it('GET /v1/groups?refresh=true during a slow create (node:add sleeps 3 s) is answered before the create finishes', async () => {
    await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 3 } } });
    await consoleDouble.clearInvocations();
    const createStarted = Date.now();
    const create = post(espm, '/v1/nodes', { name: 'slow.example.test' }).then((res) => ({ res, at: Date.now() }));
    // Wait until the node:add process is running (the double logs its start).
    await waitFor(async () => (await consoleDouble.tasksRun()).some((t) => t.startsWith('node:add')), 10_000, 'node:add started');

    const groups = await rawRequest(espm, { method: 'GET', path: '/v1/groups?refresh=true' });
    const groupsAt = Date.now();
    const status = await rawRequest(espm, { method: 'GET', path: '/v1/status' });
    const statusAt = Date.now();
    const created = await create;

    expect(groups.status).toBe(200);
    expect(groups.body?.['groups']).toContain('default');
    expect(status.status).toBe(200);
    expect(created.res.status).toBe(201);
    expect(groupsAt).toBeLessThan(created.at);
    expect(statusAt).toBeLessThan(created.at);
    expect(created.at - createStarted).toBeGreaterThanOrEqual(3000);

    // The list ran while node:add was running: no classifier-wide lock.
    const add = runner.intervals.find((i) => rakeTask(i.args) === 'node:add')!;
    const list = runner.intervals.filter((i) => rakeTask(i.args) === 'nodegroup:list').at(-1)!;
    expect(list.start).toBeGreaterThan(add.start);
    expect(list.end).toBeLessThan(add.end);
  }, 30_000);
});
