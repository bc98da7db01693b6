import { mkdir, mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Ledger, LedgerCorruptError, LedgerStateError, type NodeRecord } from '../../src/ownership/ledger.js';
import { StateLockedError } from '../../src/ownership/lock.js';

const NODE: NodeRecord = { groups: [], classes: [], parameters: {} };
const CERT = { dns_alt_names: [] };

describe('Ledger', () => {
  let dir: string;
  let clock: number;
  const open = () => Ledger.open(dir, { now: () => clock });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-ledger-'));
    clock = Date.UTC(2026, 10, 20, 12, 0, 0);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('records pending → present durably, 0600, and reads it back after a restart', async () => {
    const ledger = await open();
    await ledger.begin('node', 'web01.example.test', { groups: ['default'], classes: [], parameters: {} });
    const onDisk = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as { entries: Array<{ state: string }> };
    expect(onDisk.entries).toEqual([expect.objectContaining({ state: 'pending', name: 'web01.example.test' })]);
    expect((await stat(join(dir, 'ledger.json'))).mode & 0o777).toBe(0o600);
    clock += 1000;
    await ledger.commit('node', 'web01.example.test', {
      record: { groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } },
      receipt: {},
    });
    await ledger.close();

    const again = await open();
    expect(again.get('node', 'web01.example.test')).toEqual({
      kind: 'node',
      name: 'web01.example.test',
      state: 'present',
      created_at: '2026-11-20T12:00:00.000Z',
      updated_at: '2026-11-20T12:00:01.000Z',
      receipt: {},
      pending_steps: [],
      node: { groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } },
    });
    expect(again.counts().node).toEqual({ pending: 0, present: 1, uncertain: 0, deleting: 0, deleted: 0 });
    await again.close();
  });

  it('turns entries left pending by a crash into uncertain when opened', async () => {
    const ledger = await open();
    await ledger.begin('node', 'a.example.test', NODE);
    await ledger.begin('certificate', 'a.example.test', CERT);
    await ledger.begin('node', 'b.example.test', NODE);
    await ledger.commit('node', 'b.example.test');
    await ledger.close(); // as if the process died here: entries still pending
    const reopened = await open();
    expect(reopened.list().map((e) => [e.kind, e.name, e.state])).toEqual([
      ['certificate', 'a.example.test', 'uncertain'],
      ['node', 'a.example.test', 'uncertain'],
      ['node', 'b.example.test', 'present'],
    ]);
    const onDisk = await readFile(join(dir, 'ledger.json'), 'utf8');
    expect(onDisk).not.toContain('"pending"');
    await reopened.close();
  });

  it('refuses to begin a name it already has, and to commit one it has not', async () => {
    const ledger = await open();
    await ledger.begin('node', 'x.example.test', NODE);
    await expect(ledger.begin('node', 'x.example.test', NODE)).rejects.toBeInstanceOf(LedgerStateError);
    await expect(ledger.commit('node', 'y.example.test')).rejects.toBeInstanceOf(LedgerStateError);
    await ledger.begin('certificate', 'x.example.test', CERT);
    expect(await ledger.remove('node', 'x.example.test')).toBe(true);
    expect(await ledger.remove('node', 'x.example.test')).toBe(false);
    await ledger.close();
  });

  it('serialises concurrent mutations: every one of 100 lands', async () => {
    const ledger = await open();
    await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.begin('node', `n${i}.example.test`, { ...NODE, parameters: { i: String(i) } })));
    await ledger.close();
    const reopened = await open();
    expect(reopened.list()).toHaveLength(100);
    await reopened.close();
  });

  it('stores each kind typed, with the receipt the backend returned, and reads it back as stored', async () => {
    const ledger = await open();
    await ledger.begin('certificate', 'web01.example.test', { dns_alt_names: ['www.example.test'] });
    expect(ledger.get('certificate', 'web01.example.test')).toMatchObject({ state: 'pending', receipt: null, pending_steps: [] });
    const receipt = { fingerprint_sha256: 'AB:CD', public_key_sha256: 'EF:01', nested: { pins: ['x', 1, true, null] } };
    const certificate = { dns_alt_names: ['www.example.test'], fingerprint_sha256: 'AB:CD', serial: '0A', not_after: '2031-01-01T00:00:00.000Z' };
    const stored = await ledger.commit('certificate', 'web01.example.test', { record: certificate, receipt });
    expect(stored).toEqual({
      kind: 'certificate',
      name: 'web01.example.test',
      state: 'present',
      created_at: '2026-11-20T12:00:00.000Z',
      updated_at: '2026-11-20T12:00:00.000Z',
      receipt,
      pending_steps: [],
      certificate,
    });
    // A copy: changing what get() returned changes nothing.
    const copy = ledger.get('certificate', 'web01.example.test')!;
    copy.certificate.dns_alt_names.push('evil');
    (copy.receipt as Record<string, unknown>)['fingerprint_sha256'] = 'changed';
    expect(ledger.get('certificate', 'web01.example.test')).toEqual(stored);
    // commit without an update keeps record and receipt (an operator's adopt).
    await ledger.markUncertain('certificate', 'web01.example.test');
    expect(await ledger.commit('certificate', 'web01.example.test')).toMatchObject({ state: 'present', receipt, certificate });
    await ledger.close();

    const onDisk = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as unknown;
    expect(onDisk).toEqual({ format: 2, entries: [stored] });
    const again = await open();
    expect(again.get('certificate', 'web01.example.test')).toEqual(stored);
    expect(again.get('node', 'web01.example.test')).toBeUndefined();
    await again.close();
  });

  it('keeps an entry whose backend object is gone as deleted while steps are owed, removes it when the last is done', async () => {
    const ledger = await open();
    await ledger.begin('node', 'a.example.test', NODE);
    await ledger.commit('node', 'a.example.test', { receipt: { group_id: 'g-1' } });
    await ledger.markDeleting('node', 'a.example.test');
    clock += 1000;
    await ledger.finishDeletion('node', 'a.example.test', ['puppetdb_deactivation']);
    expect(ledger.get('node', 'a.example.test')).toMatchObject({
      state: 'deleted',
      pending_steps: ['puppetdb_deactivation'],
      receipt: { group_id: 'g-1' },
      updated_at: '2026-11-20T12:00:01.000Z',
    });
    expect(ledger.counts()).toEqual({
      node: { pending: 0, present: 0, uncertain: 0, deleting: 0, deleted: 1 },
      certificate: { pending: 0, present: 0, uncertain: 0, deleting: 0, deleted: 0 },
    });
    // Owed again (a retry that failed again): listed once.
    await ledger.finishDeletion('node', 'a.example.test', ['puppetdb_deactivation']);
    expect(ledger.get('node', 'a.example.test')?.pending_steps).toEqual(['puppetdb_deactivation']);
    // A deleted entry is not present any more: it cannot be committed or deleted again.
    await expect(ledger.commit('node', 'a.example.test')).rejects.toThrow(/is deleted \(only puppetdb_deactivation owed\)/);
    await expect(ledger.markDeleting('node', 'a.example.test')).rejects.toBeInstanceOf(LedgerStateError);
    await expect(ledger.markUncertain('node', 'a.example.test')).rejects.toBeInstanceOf(LedgerStateError);
    await ledger.close();

    // Survives a restart, and it is not turned uncertain.
    const again = await open();
    expect(again.get('node', 'a.example.test')).toMatchObject({ state: 'deleted', pending_steps: ['puppetdb_deactivation'] });
    await again.completePendingStep('node', 'a.example.test', 'puppetdb_deactivation');
    expect(again.get('node', 'a.example.test')).toBeUndefined();
    await again.close();
    expect(JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8'))).toEqual({ format: 2, entries: [] });
  });

  it('removes the entry when nothing is owed; completing a step not owed changes nothing; both need the entry', async () => {
    const ledger = await open();
    await ledger.begin('certificate', 'b.example.test', CERT);
    await ledger.commit('certificate', 'b.example.test', { receipt: { fingerprint_sha256: 'AA' } });
    const before = await readFile(join(dir, 'ledger.json'), 'utf8');
    clock += 5000;
    await ledger.completePendingStep('certificate', 'b.example.test', 'puppetdb_deactivation');
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(before);
    expect(ledger.get('certificate', 'b.example.test')?.state).toBe('present');
    await ledger.markDeleting('certificate', 'b.example.test');
    await ledger.finishDeletion('certificate', 'b.example.test', []);
    expect(ledger.list()).toEqual([]);
    await expect(ledger.finishDeletion('certificate', 'b.example.test', [])).rejects.toBeInstanceOf(LedgerStateError);
    await expect(ledger.completePendingStep('certificate', 'b.example.test', 'puppetdb_deactivation')).rejects.toBeInstanceOf(
      LedgerStateError,
    );
    await ledger.close();
  });

  it('undoes a change in memory when the file cannot be written', async () => {
    const ledger = await open();
    await ledger.begin('node', 'keep.example.test', NODE);
    await rm(join(dir, 'ledger.json'));
    await mkdir(join(dir, 'ledger.json')); // rename onto a directory fails
    await expect(ledger.begin('node', 'lost.example.test', NODE)).rejects.toThrow();
    await expect(ledger.commit('node', 'keep.example.test', { receipt: {} })).rejects.toThrow();
    expect(ledger.list().map((e) => [e.name, e.state])).toEqual([['keep.example.test', 'pending']]);
    await rm(join(dir, 'ledger.json'), { recursive: true });
    await ledger.commit('node', 'keep.example.test', { receipt: {} });
    expect(ledger.get('node', 'keep.example.test')?.state).toBe('present');
    await ledger.close();
  });

  it('refuses a ledger that lists one name of a kind twice', async () => {
    const entry = { kind: 'node', name: 'a', state: 'present', created_at: 't', updated_at: 't', receipt: {}, pending_steps: [], node: NODE };
    await writeFile(join(dir, 'ledger.json'), JSON.stringify({ format: 2, entries: [entry, entry] }));
    await expect(open()).rejects.toThrow(/node a is listed twice/);
  });

  it('refuses a corrupt ledger rather than guessing', async () => {
    await writeFile(join(dir, 'ledger.json'), '{"format":1,"entries":[{"kind":"node"}]}');
    await expect(open()).rejects.toBeInstanceOf(LedgerCorruptError);
    await writeFile(join(dir, 'ledger.json'), '{"format":2,"entries":[{"kind":"node","name":"a","state":"present"}]}');
    await expect(open()).rejects.toBeInstanceOf(LedgerCorruptError);
    await writeFile(join(dir, 'ledger.json'), 'not json');
    await expect(open()).rejects.toThrow(/is not a valid espm ledger/);
  });

  it('lets only one holder use a state directory; a dead holder\'s lock is taken over', async () => {
    const ledger = await open();
    await expect(open()).rejects.toBeInstanceOf(StateLockedError);
    await ledger.close();
    const dead = await execa('/bin/sh', ['-c', 'echo $$']);
    await writeFile(join(dir, 'espm.lock'), `${dead.stdout}\n`);
    const taken = await open();
    expect((await readFile(join(dir, 'espm.lock'), 'utf8')).trim()).toBe(String(process.pid));
    await taken.close();
  });

  it('refuses a lock held by another live process, naming it', async () => {
    const sleeper = execa('/bin/sleep', ['30']);
    try {
      await writeFile(join(dir, 'espm.lock'), `${sleeper.pid}\n`);
      await expect(open()).rejects.toThrow(`state directory is in use by process ${sleeper.pid}`);
    } finally {
      sleeper.kill();
      await sleeper.catch(() => undefined);
    }
  });
});
