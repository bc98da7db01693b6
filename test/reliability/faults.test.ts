/**
 * Backend faults (issue #6, docs/design.md "Layers" and "Errors"): every command has a timeout and is killed
 * at it (504 `backend_timeout`, ownership uncertain), the daemon keeps answering meanwhile;
 * a tool's failure is a 502 `backend_failed` carrying the tool's words; a create that fails
 * half-way is rolled back; a missing binary is a clear 503 `backend_unavailable` and a start-up warning; each
 * expected backend failure is logged as a warning with its problem code, never as an unhandled error.
 * Against the console double (real rake) and the puppet cert 2.7 double.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { PUPPET_CERT_DOUBLE, PuppetCertMaster } from '../support/ca.js';
import { ConsoleDouble, findRake } from '../support/console.js';
import { describeWith } from '../support/components.js';
import { startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';
import { fileBytes, ledgerEntries, processAlive, rawRequest, waitFor, type RawAnswer } from './support.js';

const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'rake is not on PATH' : undefined);

const JSON_TYPE = { 'content-type': 'application/json' };

function post(espm: RunningEspm, path: string, body: unknown): Promise<RawAnswer> {
  return rawRequest(espm, { method: 'POST', path, headers: JSON_TYPE, body: JSON.stringify(body) });
}

function expectProblem(res: RawAnswer, status: number, code: string): void {
  expect({ status: res.status, contentType: res.headers['content-type'], code: res.body?.['code'] }).toEqual({
    status,
    contentType: expect.stringMatching(/^application\/problem\+json/),
    code,
  });
}

/** Command lines of running processes (from /proc), for "nothing left running" checks. */
async function runningCommandLines(): Promise<string[]> {
  const ps = await execa('ps', ['-eo', 'pid=,stat=,args='], { reject: false });
  return ps.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^\d+\s+Z/.test(l));
}

describeWithRake('backend faults', () => {
  let consoleDouble: ConsoleDouble;
  let master: PuppetCertMaster;
  let runner: CountingRunner;
  let espm: RunningEspm | undefined;

  beforeEach(async () => {
    consoleDouble = await ConsoleDouble.create({ version: '1.2.10' });
    master = await PuppetCertMaster.create();
    runner = new CountingRunner();
  });
  afterEach(async () => {
    await espm?.stop();
    espm = undefined;
    await consoleDouble.remove();
    await master.remove();
  });

  async function start(changes: Record<string, Record<string, string | number | boolean>> = {}): Promise<RunningEspm> {
    espm = await startEspm(
      {
        classifier: { ...consoleDouble.classifierConfig(rake!), ...changes['classifier'] },
        ca: { ...master.caConfig(), ...changes['ca'] },
      },
      { runner },
    );
    await waitFor(() => /console found|console not usable/.test(espm!.logs.text()), 15_000, 'start-up console check');
    return espm;
  }

  describe('timeouts', () => {
    it('a hung rake (sleep 30, [classifier] timeout = 2) is killed at its timeout → 504; meanwhile /v1/status and a certificate are served', async () => {
      const espm = await start({ classifier: { timeout: 2 } });
      // Warm the CA (its ssldir look-up) so that the certificate below is one short process.
      expect((await post(espm, '/v1/certificates', { certname: 'warmup.example.test' })).status).toBe(201);
      await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 30 } } });
      await consoleDouble.clearInvocations();

      const t0 = Date.now();
      let settled = false;
      const create = post(espm, '/v1/nodes', { name: 'hung.example.test' }).then((res) => {
        settled = true;
        return { res, at: Date.now() };
      });
      await waitFor(async () => (await consoleDouble.tasksRun()).includes('node:add'), 10_000, 'node:add started');
      const pid = (await consoleDouble.invocations()).find((i) => i.event === 'start' && i.tasks?.includes('node:add'))!.pid;
      expect(await processAlive(pid)).toBe(true);

      // While rake hangs, the daemon answers.
      const [status, cert] = await Promise.all([
        rawRequest(espm, { method: 'GET', path: '/v1/status' }),
        post(espm, '/v1/certificates', { certname: 'meanwhile.example.test' }),
      ]);
      expect(settled).toBe(false);
      expect(status.status).toBe(200);
      expect(cert.status).toBe(201);

      const { res, at } = await create;
      expectProblem(res, 504, 'backend_timeout');
      expect(res.body?.['detail']).toMatch(/did not finish within 2 s/);
      // Killed at the timeout (SIGTERM, SIGKILL 2 s later at worst), not after the 30 s sleep.
      expect(at - t0).toBeGreaterThanOrEqual(2000);
      expect(at - t0).toBeLessThan(8000);
      expect(await processAlive(pid)).toBe(false);
      expect((await runningCommandLines()).filter((l) => l.startsWith(`${pid} `))).toEqual([]);
      expect(await consoleDouble.node('hung.example.test')).toBeUndefined();

      // The outcome is unknown: uncertain, and espm refuses to delete it.
      expect((await ledgerEntries(espm)).find((e) => e.name === 'hung.example.test')).toMatchObject({ kind: 'node', state: 'uncertain' });
      expectProblem(await rawRequest(espm, { method: 'DELETE', path: '/v1/nodes/hung.example.test' }), 409, 'ownership_uncertain');
      expect((await rawRequest(espm, { method: 'GET', path: '/v1/status' })).body?.['ledger']).toMatchObject({ nodes: { present: 0, uncertain: 1 } });
    }, 30_000);

    it('a hung CA command (2.7 double sleeps 30, [ca] timeout = 2) → 504, the process is gone, the CA is usable again', async () => {
      const espm = await start({ ca: { timeout: 2 } });
      await master.setKnobs({ sleep: { generate: 30 } });
      const t0 = Date.now();
      const res = await post(espm, '/v1/certificates', { certname: 'hung.example.test' });
      const elapsed = Date.now() - t0;
      expectProblem(res, 504, 'backend_timeout');
      expect(elapsed).toBeLessThan(8000);

      const log = (await fileBytes(join(master.dir, 'invocations.log'))).toString();
      const starts = log
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { event: string; pid: number; action: string })
        .filter((e) => e.event === 'start' && e.action === 'generate');
      expect(starts).toHaveLength(1);
      const { pid } = starts[0]!;
      expect(await processAlive(pid)).toBe(false);
      // No puppet double of this master left running at all.
      expect((await runningCommandLines()).filter((l) => l.includes(PUPPET_CERT_DOUBLE) && l.includes(master.confPath))).toEqual([]);
      expect((await ledgerEntries(espm)).find((e) => e.name === 'hung.example.test')).toMatchObject({ kind: 'certificate', state: 'uncertain' });
      expectProblem(await rawRequest(espm, { method: 'DELETE', path: '/v1/certificates/hung.example.test' }), 409, 'ownership_uncertain');

      // The CA lock was released: the next certificate is issued.
      await master.setKnobs({});
      expect((await post(espm, '/v1/certificates', { certname: 'after.example.test' })).status).toBe(201);
    }, 30_000);
  });

  describe('tools that fail say why', () => {
    it('nodegroup:list exits 1 with a MySQL error → 502 backend_failed with the message; nothing cached', async () => {
      const espm = await start();
      await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'nodegroup:list': { exit: 1, stdout: 'Mysql::Error: Lost connection to MySQL server during query' } } });
      const res = await rawRequest(espm, { method: 'GET', path: '/v1/groups' });
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('Mysql::Error: Lost connection to MySQL server during query');
      await consoleDouble.setKnobs({ version: '1.2.10' });
      const again = await rawRequest(espm, { method: 'GET', path: '/v1/groups' });
      expect(again.status).toBe(200);
      expect(again.body?.['groups']).toContain('default');
    });

    it('nodeclass:list aborts (rake aborted!, stderr) → 502 with the message', async () => {
      const espm = await start();
      await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'nodeclass:list': { abort: 'Mysql::Error: Too many connections' } } });
      const res = await rawRequest(espm, { method: 'GET', path: '/v1/classes' });
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('Mysql::Error: Too many connections');
    });

    it('node:add exits 1 → 502 with the message; no node, no ledger entry', async () => {
      const espm = await start();
      await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'node:add': { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock found when trying to get lock' } } });
      const res = await post(espm, '/v1/nodes', { name: 'failed.example.test' });
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('Mysql::Error: Deadlock found when trying to get lock');
      expect(await consoleDouble.node('failed.example.test')).toBeUndefined();
      expect(await ledgerEntries(espm)).toEqual([]);
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/nodes/failed.example.test' }), 404, 'node_not_found');
    });

    it('puppet cert generate fails (Puppet 3 style: Error: on stderr, exit 1) → 502 with the message; no ledger entry; works again after', async () => {
      const espm = await start();
      await master.setKnobs({ fault: { generate: { exit: 1, stdout: '', stderr: 'Error: Could not write /etc/puppetlabs/puppet/ssl/ca/serial: No space left on device\n' } } });
      const res = await post(espm, '/v1/certificates', { certname: 'nospace.example.test' });
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('No space left on device');
      expect(await ledgerEntries(espm)).toEqual([]);
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/certificates/nospace.example.test' }), 404, 'certificate_not_found');
      await master.setKnobs({});
      expect((await post(espm, '/v1/certificates', { certname: 'nospace.example.test' })).status).toBe(201);
    });
  });

  describe('a create that fails half-way is rolled back', () => {
    it('node:parameters fails → the node is deleted again (absent from the console), 502, no ledger entry; the same create then succeeds', async () => {
      const espm = await start();
      await consoleDouble.setKnobs({ version: '1.2.10', faults: { 'node:parameters': { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock found' } } });
      await consoleDouble.clearInvocations();
      const body = { name: 'half.example.test', groups: ['default'], parameters: { role: 'web' } };
      const res = await post(espm, '/v1/nodes', body);
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('Mysql::Error: Deadlock found');
      expect(res.body?.['detail']).toContain('rolled back');
      expect(await consoleDouble.tasksRun()).toEqual(expect.arrayContaining(['node:add', 'node:parameters', 'node:del']));
      expect(await consoleDouble.node('half.example.test')).toBeUndefined();
      expect(await ledgerEntries(espm)).toEqual([]);
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/nodes/half.example.test' }), 404, 'node_not_found');

      await consoleDouble.setKnobs({ version: '1.2.10' });
      expect((await post(espm, '/v1/nodes', body)).status).toBe(201);
      expect(await consoleDouble.node('half.example.test')).toMatchObject({ groups: ['default'], parameters: [['role', 'web']] });
    });

    it('node:parameters fails and the rollback (node:del) fails too → 502 saying so, the node uncertain: DELETE refused', async () => {
      const espm = await start();
      await consoleDouble.setKnobs({
        version: '1.2.10',
        faults: {
          'node:parameters': { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock found' },
          'node:del': { exit: 1, stdout: 'Mysql::Error: Lost connection to MySQL server during query' },
        },
      });
      const res = await post(espm, '/v1/nodes', { name: 'stuck.example.test', parameters: { role: 'web' } });
      expectProblem(res, 502, 'backend_failed');
      expect(res.body?.['detail']).toContain('rolling the node back failed');
      expect(await consoleDouble.node('stuck.example.test')).toBeDefined();
      expect(await ledgerEntries(espm)).toEqual([expect.objectContaining({ kind: 'node', name: 'stuck.example.test', state: 'uncertain' })]);
      expectProblem(await rawRequest(espm, { method: 'DELETE', path: '/v1/nodes/stuck.example.test' }), 409, 'ownership_uncertain');
    });
  });

  describe('missing binaries', () => {
    it('rake = /nonexistent/rake: a start-up warning, then a clear 503 backend_unavailable (cannot run …) for lists and creates', async () => {
      const espm = await start({ classifier: { rake: '/nonexistent/rake' } });
      const warning = espm.logs.records().find((r) => String(r['msg']).startsWith('console not usable'));
      expect(warning).toMatchObject({ level: 40 });
      expect(String(warning?.['error'])).toContain('/nonexistent/rake');
      expect(espm.logs.text()).not.toContain('console found');

      for (const path of ['/v1/groups', '/v1/classes']) {
        const res = await rawRequest(espm, { method: 'GET', path });
        expectProblem(res, 503, 'backend_unavailable');
        expect(res.body?.['detail']).toMatch(/cannot run .*\/nonexistent\/rake/);
      }
      const create = await post(espm, '/v1/nodes', { name: 'norake.example.test' });
      expectProblem(create, 503, 'backend_unavailable');
      expect(create.body?.['detail']).toMatch(/cannot run .*\/nonexistent\/rake/);
      expect(await ledgerEntries(espm)).toEqual([]);
      // Logged as expected failures: warnings with their code and detail, no stack, no `unhandled error`.
      const failures = espm.logs.records().filter((r) => r['msg'] === 'backend failure');
      expect(failures).toHaveLength(3);
      for (const line of failures) {
        expect(line).toMatchObject({ level: 40, code: 'backend_unavailable', status: 503 });
        expect(String(line['detail'])).toContain('/nonexistent/rake');
        expect(line['err']).toBeUndefined();
      }
      expect(espm.logs.records().filter((r) => r['msg'] === 'unhandled error')).toEqual([]);
      expect(espm.logs.records().filter((r) => r['msg'] === 'request failed' || (r['msg'] === 'request' && Number(r['status']) >= 500)).every((r) => r['level'] === 40)).toBe(true);
      // The rest of the daemon works.
      expect((await rawRequest(espm, { method: 'GET', path: '/v1/status' })).status).toBe(200);
      expect((await post(espm, '/v1/certificates', { certname: 'norake.example.test' })).status).toBe(201);
    });

    it('puppet = /nonexistent/puppet: a clear 503 backend_unavailable (cannot run …) for a certificate, no ledger entry', async () => {
      const espm = await start({ ca: { puppet: '/nonexistent/puppet' } });
      const res = await post(espm, '/v1/certificates', { certname: 'nopuppet.example.test' });
      expectProblem(res, 503, 'backend_unavailable');
      expect(res.body?.['detail']).toMatch(/cannot run .*\/nonexistent\/puppet/);
      expect(await ledgerEntries(espm)).toEqual([]);
      expect((await post(espm, '/v1/nodes', { name: 'nopuppet.example.test' })).status).toBe(201);
    });
  });
});
