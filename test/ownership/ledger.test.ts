import { mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Ledger, LedgerCorruptError, LedgerStateError } from '../../src/ownership/ledger.js';
import { StateLockedError } from '../../src/ownership/lock.js';

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
    await ledger.begin('node', 'web01.example.test', { groups: ['default'] });
    const onDisk = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as { entries: Array<{ state: string }> };
    expect(onDisk.entries).toEqual([expect.objectContaining({ state: 'pending', name: 'web01.example.test' })]);
    expect((await stat(join(dir, 'ledger.json'))).mode & 0o777).toBe(0o600);
    clock += 1000;
    await ledger.commit('node', 'web01.example.test', { groups: ['default'], classes: ['ntp'] });
    await ledger.close();

    const again = await open();
    expect(again.get('node', 'web01.example.test')).toEqual({
      kind: 'node',
      name: 'web01.example.test',
      state: 'present',
      created_at: '2026-11-20T12:00:00.000Z',
      updated_at: '2026-11-20T12:00:01.000Z',
      details: { groups: ['default'], classes: ['ntp'] },
    });
    expect(again.counts().node).toEqual({ pending: 0, present: 1, uncertain: 0, deleting: 0 });
    await again.close();
  });

  it('turns entries left pending by a crash into uncertain when opened', async () => {
    const ledger = await open();
    await ledger.begin('node', 'a.example.test', {});
    await ledger.begin('certificate', 'a.example.test', {});
    await ledger.begin('node', 'b.example.test', {});
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
    await ledger.begin('node', 'x.example.test', {});
    await expect(ledger.begin('node', 'x.example.test', {})).rejects.toBeInstanceOf(LedgerStateError);
    await expect(ledger.commit('node', 'y.example.test')).rejects.toBeInstanceOf(LedgerStateError);
    await ledger.begin('certificate', 'x.example.test', {});
    expect(await ledger.remove('node', 'x.example.test')).toBe(true);
    expect(await ledger.remove('node', 'x.example.test')).toBe(false);
    await ledger.close();
  });

  it('serialises concurrent mutations: every one of 100 lands', async () => {
    const ledger = await open();
    await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.begin('node', `n${i}.example.test`, { i })));
    await ledger.close();
    const reopened = await open();
    expect(reopened.list()).toHaveLength(100);
    await reopened.close();
  });

  it('refuses a corrupt ledger rather than guessing', async () => {
    await writeFile(join(dir, 'ledger.json'), '{"format":1,"entries":[{"kind":"node"}]}');
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
