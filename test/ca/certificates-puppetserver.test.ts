/**
 * Certificates through the puppetserver-ca adapter against a REAL puppetserver (Debian
 * packages, throwaway config, started by test/support/puppetserver.ts), over HTTPS (issue #4).
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { neverOverlapping, opensslChecks, revokedSerials } from '../support/ca.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';
import { CountingRunner } from '../support/runner.js';

const availability = puppetserverAvailable();
if (!availability.available) {
  console.warn(`SKIPPING puppetserver-ca certificate tests: ${availability.reason} (apt-get install puppetserver puppet-agent)`);
}
const describeWithServer = availability.available ? describe : describe.skip;

describeWithServer('certificates through puppetserver ca (real puppetserver)', () => {
  let server: RealPuppetserver;
  let espm: RunningEspm;
  let runner: CountingRunner;
  let api: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    server = await startPuppetserver({ allowSubjectAltNames: true, port: 0 });
    runner = new CountingRunner();
    espm = await startEspm(
      { ca: { backend: 'puppetserver-ca', puppetserver: '/usr/bin/puppetserver', puppet: '/usr/bin/puppet', config: server.confPath, ssldir: '' } },
      { runner },
    );
    api = apiClient(espm);
  }, 180_000);
  afterAll(async () => {
    await espm?.stop();
    await server?.stop();
  }, 60_000);

  const crl = () => readFile(join(server.cadir, 'ca_crl.pem'), 'utf8');

  it('issues a certificate the returned CA verifies, whose key matches and whose CN/SAN are the certname; no key left on the master', async () => {
    const res = await api.post('/v1/certificates', { certname: 'web01.example.test', dns_alt_names: ['www.example.test'] });
    expect(res.status).toBe(201);
    const checks = await opensslChecks(res.body);
    expect(checks.verify).toContain('OK');
    expect(checks.keyMatches).toBe(true);
    expect(checks.text).toMatch(/Subject: CN ?= ?web01\.example\.test/);
    expect(checks.text).toMatch(/DNS:web01\.example\.test/);
    expect(checks.text).toMatch(/DNS:www\.example\.test/);
    expect(res.body.ca_certificate).toBe(await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8'));
    await expect(access(join(server.ssldir, 'private_keys', 'web01.example.test.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
    const meta = await api.get('/v1/certificates/web01.example.test');
    expect(meta.body).toMatchObject({ certname: 'web01.example.test', fingerprint_sha256: res.body.fingerprint_sha256 });
  }, 60_000);

  it('a second POST → 409; a name the CA has (generated directly) → 409 with the tool\'s words', async () => {
    expect((await api.post('/v1/certificates', { certname: 'web01.example.test' })).status).toBe(409);
    const direct = await server.caCli(['generate', '--certname', 'direct.example.test']);
    expect(direct.exitCode).toBe(0);
    const res = await api.post('/v1/certificates', { certname: 'direct.example.test' });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('certificate_exists');
    expect(res.body.detail).toMatch(/Existing file at|already has a signed certificate/);
  }, 60_000);

  it('DELETE → 204, the serial is in the CA\'s CRL; POST of the same name afterwards succeeds', async () => {
    const issued = (await api.post('/v1/certificates', { certname: 'again.example.test' })).body;
    const { serial } = (await api.get('/v1/certificates/again.example.test')).body as { serial: string };
    expect((await api.delete('/v1/certificates/again.example.test')).status).toBe(204);
    expect(await revokedSerials(await crl())).toContain(serial.replace(/^0+/, ''));
    expect((await opensslChecks(issued, await crl())).verify).toMatch(/certificate revoked/);
    for (const dir of ['certs', 'private_keys', 'public_keys']) {
      await expect(access(join(server.ssldir, dir, 'again.example.test.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
    }
    const second = await api.post('/v1/certificates', { certname: 'again.example.test' });
    expect(second.status).toBe(201);
    expect(second.body.fingerprint_sha256).not.toBe(issued.fingerprint_sha256);
  }, 60_000);

  it('DELETE of a certificate espm did not issue → 404, and it is still valid', async () => {
    const res = await api.delete('/v1/certificates/direct.example.test');
    expect(res.status).toBe(404);
    const cert = await readFile(join(server.ssldir, 'certs', 'direct.example.test.pem'), 'utf8');
    const key = await readFile(join(server.ssldir, 'private_keys', 'direct.example.test.pem'), 'utf8');
    const ca = await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8');
    expect((await opensslChecks({ certificate: cert, private_key: key, ca_certificate: ca }, await crl())).verify).toContain('OK');
    const listed = await server.caCli(['list', '--certname', 'direct.example.test']);
    expect(listed.stdout).toContain('direct.example.test');
  }, 60_000);

  it('20 concurrent POSTs of distinct names all succeed, never two CA processes at once', async () => {
    const from = runner.intervals.length;
    const names = Array.from({ length: 20 }, (_, i) => `burst${i}.example.test`);
    const answers = await Promise.all(names.map((certname) => api.post('/v1/certificates', { certname })));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    const caRuns = runner.intervals.slice(from).filter((i) => i.file === '/usr/bin/puppetserver');
    expect(caRuns).toHaveLength(20);
    expect(neverOverlapping(caRuns)).toBe(true);
  }, 180_000);
});
