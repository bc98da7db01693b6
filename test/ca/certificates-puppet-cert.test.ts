/**
 * Certificates through the puppet-cert adapter against the puppet cert 2.7.12 double (a real
 * OpenSSL CA with 2.7's output and exit-0 errors), over HTTPS (issue #4).
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findRake } from '../support/console.js';
import { neverOverlapping, opensslChecks, PuppetCertMaster, revokedSerials } from '../support/ca.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';

// The double is Ruby; rake's presence means ruby is there too.
const ruby = await findRake();
if (ruby === undefined) console.warn('SKIPPING puppet-cert certificate tests: ruby is not installed (apt-get install ruby)');
const describeWithRuby = ruby === undefined ? describe.skip : describe;

describeWithRuby('certificates through puppet cert 2.7 (double)', () => {
  let master: PuppetCertMaster;
  let espm: RunningEspm;
  let runner: CountingRunner;
  let api: ReturnType<typeof apiClient>;

  beforeEach(async () => {
    master = await PuppetCertMaster.create();
    runner = new CountingRunner();
    espm = await startEspm({ ca: master.caConfig() }, { runner });
    api = apiClient(espm);
  });
  afterEach(async () => {
    await espm.stop();
    await master.remove();
  });

  const caCrl = () => readFile(join(master.ssldir, 'ca', 'ca_crl.pem'), 'utf8');

  it('issues a verifiable certificate + key for the certname, keeps no key on the master, answers metadata', async () => {
    const res = await api.post('/v1/certificates', { certname: 'web01.example.test' });
    expect(res.status).toBe(201);
    expect(res.headers['location']).toBe('/v1/certificates/web01.example.test');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(Object.keys(res.body).sort()).toEqual(
      ['ca_certificate', 'certificate', 'certname', 'fingerprint_sha256', 'not_after', 'private_key'].sort(),
    );
    const checks = await opensslChecks(res.body);
    expect(checks.verify).toContain('OK');
    expect(checks.keyMatches).toBe(true);
    expect(checks.text).toMatch(/Subject: CN ?= ?web01\.example\.test/);
    expect(checks.text).not.toContain('Subject Alternative Name');
    expect(res.body.not_after).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(res.body.fingerprint_sha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    await expect(access(join(master.ssldir, 'private_keys', 'web01.example.test.pem'))).rejects.toMatchObject({ code: 'ENOENT' });

    const meta = await api.get('/v1/certificates/web01.example.test');
    expect(meta.status).toBe(200);
    expect(meta.body).toEqual({
      certname: 'web01.example.test',
      fingerprint_sha256: res.body.fingerprint_sha256,
      not_after: res.body.not_after,
      serial: expect.stringMatching(/^[0-9A-F]+$/),
      dns_alt_names: [],
      created_at: expect.any(String),
    });
    expect(JSON.stringify(meta.body)).not.toContain('PRIVATE KEY');
    expect(espm.logs.text()).not.toContain('PRIVATE KEY');
  });

  it('adds DNS alt names when asked', async () => {
    const res = await api.post('/v1/certificates', { certname: 'web02.example.test', dns_alt_names: ['www.example.test'] });
    expect(res.status).toBe(201);
    const { text } = await opensslChecks(res.body);
    expect(text).toMatch(/DNS:web02\.example\.test/);
    expect(text).toMatch(/DNS:www\.example\.test/);
    expect((await api.get('/v1/certificates/web02.example.test')).body.dns_alt_names).toEqual(['www.example.test']);
  });

  it('409 for a second POST (espm\'s: nothing spawned) and for a name the CA has (2.7 err: with exit 0)', async () => {
    expect((await api.post('/v1/certificates', { certname: 'a.example.test' })).status).toBe(201);
    const before = runner.count;
    const again = await api.post('/v1/certificates', { certname: 'a.example.test' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('certificate_exists');
    expect(runner.count).toBe(before);

    expect((await master.puppet('cert', 'generate', 'theirs.example.test')).exitCode).toBe(0);
    const theirs = await api.post('/v1/certificates', { certname: 'theirs.example.test' });
    expect(theirs.status).toBe(409);
    expect(theirs.body).toMatchObject({ code: 'certificate_exists' });
    expect(theirs.body.detail).toContain('A Certificate already exists for theirs.example.test');
    // The operator's key is untouched.
    await access(join(master.ssldir, 'private_keys', 'theirs.example.test.pem'));
  });

  it('an err: line with exit 0 and no certificate → 502 with the tool\'s message', async () => {
    await master.setKnobs({ fault: { generate: { exit: 0, stdout: 'err: Could not call generate: Permission denied - /etc/puppetlabs/puppet/ssl/ca/serial\n' } } });
    const res = await api.post('/v1/certificates', { certname: 'b.example.test' });
    expect(res.status).toBe(502);
    expect(res.body.code).toBe('backend_failed');
    expect(res.body.detail).toContain('Permission denied - /etc/puppetlabs/puppet/ssl/ca/serial');
    expect((await api.get('/v1/certificates/b.example.test')).status).toBe(404);
    await master.setKnobs({});
    expect((await api.post('/v1/certificates', { certname: 'b.example.test' })).status).toBe(201);
  });

  it('an err: line after the certificate was written (autosign.conf) is still a success, judged by the files', async () => {
    await master.setKnobs({ autosign_err: true });
    const res = await api.post('/v1/certificates', { certname: 'c.example.test' });
    expect(res.status).toBe(201);
    expect((await opensslChecks(res.body)).verify).toContain('OK');
  });

  it('DELETE revokes (serial in the CRL) and cleans; POST of the same name then succeeds', async () => {
    const issued = (await api.post('/v1/certificates', { certname: 'd.example.test' })).body;
    const { serial } = (await api.get('/v1/certificates/d.example.test')).body as { serial: string };
    const del = await api.delete('/v1/certificates/d.example.test');
    expect(del.status).toBe(204);
    expect(await revokedSerials(await caCrl())).toContain(serial.replace(/^0+/, ''));
    expect((await opensslChecks(issued, await caCrl())).verify).toMatch(/certificate revoked/);
    await expect(access(join(master.ssldir, 'certs', 'd.example.test.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await api.get('/v1/certificates/d.example.test')).status).toBe(404);
    expect((await api.delete('/v1/certificates/d.example.test')).status).toBe(404);
    const again = await api.post('/v1/certificates', { certname: 'd.example.test' });
    expect(again.status).toBe(201);
    expect(again.body.fingerprint_sha256).not.toBe(issued.fingerprint_sha256);
  });

  it('DELETE of a certificate espm did not issue → 404, and it stays valid', async () => {
    await master.puppet('cert', 'generate', 'other.example.test');
    const res = await api.delete('/v1/certificates/other.example.test');
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('certificate_not_found');
    const signed = await readFile(join(master.ssldir, 'ca', 'signed', 'other.example.test.pem'), 'utf8');
    const ca = await readFile(join(master.ssldir, 'ca', 'ca_crt.pem'), 'utf8');
    const verdict = await opensslChecks({ certificate: signed, ca_certificate: ca, private_key: await readFile(join(master.ssldir, 'private_keys', 'other.example.test.pem'), 'utf8') }, await caCrl());
    expect(verdict.verify).toContain('OK');
  });

  it('never revokes a certificate re-issued under espm\'s name by someone else: 409, left alone', async () => {
    await api.post('/v1/certificates', { certname: 'e.example.test' });
    await master.puppet('cert', 'clean', 'e.example.test');
    await master.puppet('cert', 'generate', 'e.example.test');
    const res = await api.delete('/v1/certificates/e.example.test');
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('ownership_uncertain');
    await access(join(master.ssldir, 'ca', 'signed', 'e.example.test.pem'));
  });

  it('20 concurrent POSTs of distinct names all succeed, never two CA processes at once', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `burst${i}.example.test`);
    const answers = await Promise.all(names.map((certname) => api.post('/v1/certificates', { certname })));
    expect(answers.map((a) => [a.status, a.status === 201 ? "" : a.text])).toEqual(Array(20).fill([201, ""]));
    const intervals = await master.processIntervals();
    expect(intervals.filter((i) => i.action === 'generate')).toHaveLength(20);
    expect(neverOverlapping(intervals)).toBe(true);
  }, 60_000);
});
