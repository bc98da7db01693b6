/**
 * PuppetDB at termination when PuppetDB cannot be reached (a closed port: the connection is
 * really refused; no double): the step is owed durably, `puppetdb_failed` is raised, GET's view
 * is null, the background retry backs off up to its bound and never throws, and a name the
 * ledger does not owe is never sent anything. The happy paths against a real PuppetDB are in
 * test/e2e/puppetdb.test.ts.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecaCommandRunner } from '../../src/exec/command.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { PuppetDb } from '../../src/puppetdb/puppetdb.js';
import { DeactivationRetry } from '../../src/service/deactivation-retry.js';
import { ServiceError } from '../../src/service/errors.js';
import { PuppetDbService } from '../../src/service/puppetdb.js';
import { makeTestPki, type TestPki } from '../support/ca-pki.js';
import { freePort } from '../support/net.js';

const NAME = 'gone.example.test';

describe('PuppetDB unreachable', () => {
  let pki: TestPki;
  let dir: string;
  let ledger: Ledger;
  let puppetdb: PuppetDb;
  let service: PuppetDbService;

  beforeAll(async () => {
    pki = await makeTestPki();
  }, 60_000);
  afterAll(() => pki.remove());

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-pdb-'));
    ledger = await Ledger.open(dir);
    puppetdb = new PuppetDb(
      // identity given: puppet is never asked (a nonexistent path proves it)
      { url: `https://localhost:${await freePort()}`, timeoutMs: 2_000, puppet: '/nonexistent/puppet', puppetConfig: '/nonexistent/puppet.conf', cert: pki.clientCertPath, key: pki.clientKeyPath, ca: pki.caPath },
      new ExecaCommandRunner(),
    );
    service = new PuppetDbService(puppetdb, ledger);
  });
  afterEach(async () => {
    await puppetdb.close();
    await ledger.close();
    await rm(dir, { recursive: true, force: true });
  });

  const deletedNode = async (name: string): Promise<void> => {
    await ledger.begin('node', name, { groups: [], classes: [], parameters: {} });
    await ledger.commit('node', name, { receipt: {} });
    await ledger.markDeleting('node', name);
  };

  it('afterDeletion: the step is owed durably (on disk) before PuppetDB is asked, and puppetdb_failed is raised', async () => {
    await deletedNode(NAME);
    const error = await service.afterDeletion('node', NAME).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'puppetdb_failed', extensions: { pending_steps: ['puppetdb_deactivation'] } });
    expect((error as ServiceError).detail).toMatch(/PuppetDB: GET \/pdb\/query\/v4\/nodes\/gone\.example\.test: cannot reach/);
    const onDisk = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as { entries: Array<{ name: string; state: string; pending_steps: string[] }> };
    expect(onDisk.entries).toEqual([expect.objectContaining({ name: NAME, state: 'deleted', pending_steps: ['puppetdb_deactivation'] })]);
    expect(service.owes('node', NAME)).toBe(true);
    expect(service.pendingNames()).toEqual([NAME]);
  });

  it('a name the ledger does not owe is never sent anything (settle returns without asking PuppetDB)', async () => {
    await expect(service.settle('not-ours.example.test')).resolves.toBeUndefined();
    await deletedNode('present.example.test');
    await expect(service.settle('present.example.test')).resolves.toBeUndefined();
    expect(ledger.get('node', 'present.example.test')?.state).toBe('deleting');
  });

  it('start() reads the identity at once; an unreadable one is a failed PuppetDbError naming the path', async () => {
    await expect(puppetdb.start()).resolves.toBeUndefined();
    const broken = new PuppetDb(
      { url: 'https://localhost:1', timeoutMs: 1_000, puppet: '/nonexistent/puppet', puppetConfig: '/nonexistent/puppet.conf', cert: '/nonexistent/cert.pem', key: pki.clientKeyPath, ca: pki.caPath },
      new ExecaCommandRunner(),
    );
    await expect(broken.start()).rejects.toMatchObject({ name: 'PuppetDbError', failure: 'failed', message: expect.stringContaining('/nonexistent/cert.pem') });
  });

  it('GET\'s view is null when PuppetDB cannot be asked', async () => {
    await expect(service.view(NAME)).resolves.toBeNull();
  });

  it('the background retry backs off, doubling up to its bound, keeps the step, and never throws', async () => {
    await deletedNode(NAME);
    await service.afterDeletion('node', NAME).catch(() => undefined);
    const retry = new DeactivationRetry(service, { intervalMs: 20, maxIntervalMs: 80 });
    retry.start();
    const waits = new Set<number>();
    const deadline = Date.now() + 10_000;
    while (!waits.has(80) && Date.now() < deadline) {
      waits.add(retry.nextWaitMs);
      await new Promise((r) => setTimeout(r, 5));
    }
    await retry.stop();
    expect([...waits].sort((a, b) => a - b)).toEqual([20, 40, 80]);
    expect(service.pendingNames()).toEqual([NAME]);
  });
});
