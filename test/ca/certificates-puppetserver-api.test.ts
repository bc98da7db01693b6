/**
 * Certificates through the puppetserver-api adapter (`[ca] backend = puppetserver-api`, issue
 * #8) against a REAL puppetserver 7.9.5 (Debian packages, throwaway config, started by
 * test/support/puppetserver.ts): the same story as certificates-puppetserver.test.ts, plus
 * "no process per certificate", the CA mutex seen from the HTTP requests, the roll-back of a
 * failed signing, and the adapter's error mapping.
 */
import { X509Certificate } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CaError, CertificateExistsError } from '../../src/ca/authority.js';
import { PuppetserverApiAuthority, type ApiAnswer } from '../../src/ca/puppetserver-api.js';
import { parseConfig, type Config } from '../../src/config.js';
import { neverOverlapping, opensslChecks, revokedSerials } from '../support/ca.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';
import { CountingRunner } from '../support/runner.js';

const availability = puppetserverAvailable();
if (!availability.available) {
  console.warn(`SKIPPING puppetserver-api certificate tests: ${availability.reason} (apt-get install puppetserver puppet-agent)`);
}
const describeWithServer = availability.available ? describe : describe.skip;

/** A `[ca]` config as parseConfig makes it from these INI keys. */
function caConfig(keys: Record<string, string | number>): Config['ca'] {
  return parseConfig({ server: { cert: '/c.pem', key: '/k.pem', psk: 'p'.repeat(40) }, ca: { backend: 'puppetserver-api', ...keys } }, '/test.ini').ca;
}

type Call = (method: string, path: string, body?: { text: string; type: string }) => Promise<ApiAnswer>;
type Operation = 'issue' | 'revoke' | 'currentFingerprint';

/**
 * Test-only instrumentation of every PuppetserverApiAuthority: [start, end] of each CA
 * operation, and the largest number of HTTP requests to the CA in flight at once.
 */
class Recorder {
  readonly operations: Array<{ op: Operation; certname: string; start: number; end: number }> = [];
  inFlight = 0;
  maxInFlight = 0;
  requests = 0;
  private readonly originals = new Map<string, unknown>();

  install(): void {
    const proto = PuppetserverApiAuthority.prototype as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const op of ['issue', 'revoke', 'currentFingerprint'] as const) {
      const original = proto[op]!;
      this.originals.set(op, original);
      const operations = this.operations;
      proto[op] = async function (this: unknown, ...args: unknown[]) {
        const start = Date.now();
        try {
          return await original.apply(this, args);
        } finally {
          operations.push({ op, certname: String(args[0]), start, end: Date.now() });
        }
      };
    }
    const call = proto['call']!;
    this.originals.set('call', call);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const recorder = this;
    proto['call'] = async function (this: unknown, ...args: unknown[]) {
      recorder.requests++;
      recorder.inFlight++;
      recorder.maxInFlight = Math.max(recorder.maxInFlight, recorder.inFlight);
      try {
        return await call.apply(this, args);
      } finally {
        recorder.inFlight--;
      }
    };
  }

  uninstall(): void {
    const proto = PuppetserverApiAuthority.prototype as unknown as Record<string, unknown>;
    for (const [name, original] of this.originals) proto[name] = original;
  }
}

describeWithServer('certificates through the puppetserver CA API (real puppetserver)', () => {
  let server: RealPuppetserver;
  let espm: RunningEspm;
  let runner: CountingRunner;
  let api: ReturnType<typeof apiClient>;
  const recorder = new Recorder();
  /** The master's own identity (has pp_cli_auth): what puppet config print reports. */
  let identity: { api_url: string; api_cert: string; api_key: string; api_ca: string };

  beforeAll(async () => {
    recorder.install();
    server = await startPuppetserver({ allowSubjectAltNames: true, port: 0 });
    identity = {
      api_url: `https://localhost:${server.port}`,
      api_cert: join(server.ssldir, 'certs', 'localhost.pem'),
      api_key: join(server.ssldir, 'private_keys', 'localhost.pem'),
      api_ca: join(server.ssldir, 'certs', 'ca.pem'),
    };
    runner = new CountingRunner();
    espm = await startEspm(
      { ca: { backend: 'puppetserver-api', puppet: '/usr/bin/puppet', config: server.confPath, ssldir: '', key_bits: 2048 } },
      { runner },
    );
    api = apiClient(espm);
  }, 240_000);
  afterAll(async () => {
    await espm?.stop();
    await server?.stop();
    recorder.uninstall();
  }, 60_000);

  const crl = () => readFile(join(server.cadir, 'ca_crl.pem'), 'utf8');
  /** Commands the CA adapter ran (the classifier's start-up probe is not the CA's). */
  const caRuns = () => runner.calls.filter((c) => c.file === '/usr/bin/puppet' || c.file === '/usr/bin/puppetserver');
  const nodeFilesGone = async (certname: string) => {
    for (const dir of ['certs', 'private_keys', 'public_keys']) {
      await expect(access(join(server.ssldir, dir, `${certname}.pem`))).rejects.toMatchObject({ code: 'ENOENT' });
    }
  };

  it('issues a certificate the returned CA verifies, whose key matches and whose CN/SAN are the certname; nothing written to the ssldir; one puppet config print, then no process', async () => {
    const started = Date.now();
    const res = await api.post('/v1/certificates', { certname: 'web01.example.test', dns_alt_names: ['www.example.test'] });
    const firstMs = Date.now() - started;
    expect(res.status).toBe(201);
    const checks = await opensslChecks(res.body);
    expect(checks.verify).toContain('OK');
    expect(checks.keyMatches).toBe(true);
    expect(checks.text).toMatch(/Subject: CN ?= ?web01\.example\.test/);
    expect(checks.text).toMatch(/DNS:web01\.example\.test/);
    expect(checks.text).toMatch(/DNS:www\.example\.test/);
    expect(new X509Certificate(res.body.certificate).publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(res.body.private_key).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n/);
    expect(res.body.ca_certificate).toBe(await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8'));
    await nodeFilesGone('web01.example.test');
    const meta = await api.get('/v1/certificates/web01.example.test');
    expect(meta.body).toMatchObject({ certname: 'web01.example.test', fingerprint_sha256: res.body.fingerprint_sha256, dns_alt_names: ['www.example.test'] });
    // The TLS identity came from ONE puppet config print; nothing else was spawned.
    expect(caRuns()).toHaveLength(1);
    expect(caRuns()[0]).toMatchObject({
      file: '/usr/bin/puppet',
      args: ['config', 'print', 'hostcert', 'hostprivkey', 'localcacert', 'ca_server', 'ca_port', '--section', 'server', '--config', server.confPath],
    });
    // The private key is never logged.
    const keyBody = res.body.private_key.split('\n')[1] as string;
    expect(espm.logs.text()).not.toContain(keyBody);
    console.log(`puppetserver-api: first certificate (with puppet config print and TLS set-up) ${firstMs} ms`);
  }, 60_000);

  it("a second POST → 409; a name the CA has (generated directly) → 409 with the server's words", async () => {
    expect((await api.post('/v1/certificates', { certname: 'web01.example.test' })).status).toBe(409);
    const direct = await server.caCli(['generate', '--certname', 'direct.example.test']);
    expect(direct.exitCode).toBe(0);
    const res = await api.post('/v1/certificates', { certname: 'direct.example.test' });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('certificate_exists');
    expect(res.body.detail).toMatch(/direct\.example\.test already has a signed certificate/);
  }, 60_000);

  it("DELETE → 204, the serial is in the CA's CRL; POST of the same name afterwards succeeds", async () => {
    const issued = (await api.post('/v1/certificates', { certname: 'again.example.test' })).body;
    const { serial } = (await api.get('/v1/certificates/again.example.test')).body as { serial: string };
    expect((await api.delete('/v1/certificates/again.example.test')).status).toBe(204);
    expect(await revokedSerials(await crl())).toContain(serial.replace(/^0+/, ''));
    expect((await opensslChecks(issued, await crl())).verify).toMatch(/certificate revoked/);
    await nodeFilesGone('again.example.test');
    expect((await api.get('/v1/certificates/again.example.test')).status).toBe(404);
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

  it('20 concurrent POSTs of distinct names all succeed, one CA operation and one CA request at a time, no process spawned', async () => {
    const spawned = caRuns().length;
    const fromOp = recorder.operations.length;
    recorder.maxInFlight = 0;
    const names = Array.from({ length: 20 }, (_, i) => `burst${i}.example.test`);
    const started = Date.now();
    const answers = await Promise.all(names.map((certname) => api.post('/v1/certificates', { certname })));
    const totalMs = Date.now() - started;
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    const issues = recorder.operations.slice(fromOp).filter((o) => o.op === 'issue');
    expect(issues.map((o) => o.certname).sort()).toEqual([...names].sort());
    expect(neverOverlapping(recorder.operations.slice(fromOp))).toBe(true);
    expect(recorder.maxInFlight).toBe(1);
    expect(caRuns()).toHaveLength(spawned);
    const each = issues.map((o) => o.end - o.start).sort((a, b) => a - b);
    console.log(
      `puppetserver-api, 2048-bit keys: 20 concurrent POSTs in ${totalMs} ms; per certificate ` +
        `min ${each[0]} / median ${each[10]} / max ${each[19]} ms`,
    );
    for (const a of answers) expect((await opensslChecks(a.body)).verify).toContain('OK');
  }, 180_000);

  it('DELETE through the API is one status GET and one clean, no process', async () => {
    const spawned = caRuns().length;
    const requests = recorder.requests;
    const started = Date.now();
    expect((await api.delete('/v1/certificates/burst0.example.test')).status).toBe(204);
    const ms = Date.now() - started;
    // currentFingerprint (status) + revoke (status, clean)
    expect(recorder.requests - requests).toBe(3);
    expect(caRuns()).toHaveLength(spawned);
    console.log(`puppetserver-api: DELETE ${ms} ms`);
  }, 60_000);

  it('with [ca] api_* set: no process at all; default key_bits 4096; revoke → revoked, then absent', async () => {
    const none = new CountingRunner();
    const config = caConfig({ ...identity, puppet: '/nonexistent/puppet' });
    expect(config.keyBits).toBe(4096);
    const ca = new PuppetserverApiAuthority(config, none);
    try {
      const started = Date.now();
      const issued = await ca.issue('big.example.test', []);
      const ms = Date.now() - started;
      const x509 = new X509Certificate(issued.certificate);
      expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).toBe(4096);
      expect(x509.checkIssued(new X509Certificate(issued.caCertificate))).toBe(true);
      expect((await opensslChecks({ certificate: issued.certificate, private_key: issued.privateKey, ca_certificate: issued.caCertificate })).keyMatches).toBe(true);
      expect(await ca.currentFingerprint('big.example.test')).toBe(x509.fingerprint256);
      expect(await ca.revoke('big.example.test')).toBe('revoked');
      expect(await ca.currentFingerprint('big.example.test')).toBeUndefined();
      expect(await ca.revoke('big.example.test')).toBe('absent');
      expect(none.count).toBe(0);
      console.log(`puppetserver-api, 4096-bit key: one certificate ${ms} ms`);
    } finally {
      ca.close();
    }
  }, 60_000);

  it('[ca] key_pool: keys made after start() are what issues hand out (each once), the pool refills behind them, close() drops them', async () => {
    const config = caConfig({ ...identity, key_bits: 2048, key_pool: 2 });
    expect(config.keyPool).toBe(2);
    const ca = new PuppetserverApiAuthority(config, new CountingRunner());
    try {
      expect(ca.keys.available).toBe(0);
      ca.start();
      const deadline = Date.now() + 30_000;
      while (ca.keys.available < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(ca.keys.available).toBe(2);
      expect(ca.keys.generating).toBe(0);
      const first = await ca.issue('pool1.example.test', []);
      // The issue took a ready key (no generation for it) and the background refill started.
      expect(ca.keys.available + ca.keys.generating).toBe(2);
      const second = await ca.issue('pool2.example.test', []);
      const keys = [first, second].map((i) => new X509Certificate(i.certificate).publicKey.export({ type: 'spki', format: 'pem' }));
      expect(keys[0]).not.toBe(keys[1]);
      for (const issued of [first, second]) {
        expect((await opensslChecks({ certificate: issued.certificate, private_key: issued.privateKey, ca_certificate: issued.caCertificate })).keyMatches).toBe(true);
        expect(new X509Certificate(issued.certificate).publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      }
      expect(await ca.revoke('pool1.example.test')).toBe('revoked');
      expect(await ca.revoke('pool2.example.test')).toBe('revoked');
    } finally {
      ca.close();
    }
    expect(ca.keys.available).toBe(0);
    await expect(ca.issue('pool3.example.test', [])).rejects.toThrow(/closed/);
    expect(caConfig({ ...identity }).keyPool).toBe(10);
  }, 60_000);

  it('a CSR the CA has → CertificateExistsError; revoke of a name with only a CSR → absent and the CSR stays', async () => {
    const ca = new PuppetserverApiAuthority(caConfig({ ...identity, key_bits: '2048' }), new CountingRunner());
    try {
      const dir = await mkdtemp(join(tmpdir(), 'espm-csr-'));
      try {
        await execa('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-subj', '/CN=pending.example.test', '-out', join(dir, 'r.csr')]);
        const csr = await readFile(join(dir, 'r.csr'), 'utf8');
        const put = await (ca as unknown as { call: Call }).call('PUT', '/certificate_request/pending.example.test', { text: csr, type: 'text/plain' });
        expect(put.status).toBe(200);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const err = await ca.issue('pending.example.test', []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CertificateExistsError);
      expect((err as CertificateExistsError).output).toMatch(/pending\.example\.test already has a requested certificate/);
      expect(await ca.currentFingerprint('pending.example.test')).toBeUndefined();
      expect(await ca.revoke('pending.example.test')).toBe('absent');
      expect((await ca.status('pending.example.test'))?.state).toBe('requested');
    } finally {
      ca.close();
    }
  }, 60_000);

  it('signing refused after the CSR was submitted → CaError failed with the answer, the CSR withdrawn, a retry works', async () => {
    const ca = new PuppetserverApiAuthority(caConfig({ ...identity, key_bits: '2048' }), new CountingRunner());
    const real = (ca as unknown as { call: Call }).call.bind(ca);
    let refuse = true;
    (ca as unknown as { call: Call }).call = async (method, path, body) => {
      if (refuse && method === 'PUT' && path.startsWith('/certificate_status/')) return { status: 409, body: 'Simulated refusal to sign\n' };
      return real(method, path, body);
    };
    try {
      const err = await ca.issue('refused.example.test', ['alt.example.test']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CaError);
      expect(err).toMatchObject({ failure: 'failed', output: 'Simulated refusal to sign' });
      expect(await ca.status('refused.example.test')).toBeUndefined();
      refuse = false;
      const issued = await ca.issue('refused.example.test', ['alt.example.test']);
      expect(new X509Certificate(issued.certificate).subjectAltName).toBe('DNS:refused.example.test, DNS:alt.example.test');
    } finally {
      ca.close();
    }
  }, 60_000);

  it('verifies the server: a name its certificate does not carry → unavailable; a client certificate without pp_cli_auth → 403 failed', async () => {
    const wrongName = new PuppetserverApiAuthority(caConfig({ ...identity, api_url: `https://127.0.0.1:${server.port}` }), new CountingRunner());
    try {
      await expect(wrongName.currentFingerprint('web01.example.test')).rejects.toMatchObject({ failure: 'unavailable', message: expect.stringMatching(/ERR_TLS_CERT_ALTNAME_INVALID/) });
    } finally {
      wrongName.close();
    }
    const dir = await mkdtemp(join(tmpdir(), 'espm-node-identity-'));
    const node = await api.post('/v1/certificates', { certname: 'client.example.test' });
    await writeFile(join(dir, 'cert.pem'), node.body.certificate);
    await writeFile(join(dir, 'key.pem'), node.body.private_key, { mode: 0o600 });
    const unprivileged = new PuppetserverApiAuthority(
      caConfig({ ...identity, api_cert: join(dir, 'cert.pem'), api_key: join(dir, 'key.pem') }),
      new CountingRunner(),
    );
    try {
      await expect(unprivileged.currentFingerprint('web01.example.test')).rejects.toMatchObject({
        failure: 'failed',
        message: expect.stringMatching(/answered 403 .*pp_cli_auth/),
        output: expect.stringMatching(/Forbidden request/),
      });
    } finally {
      unprivileged.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('puppetserver-api adapter: unreachable CA (no puppetserver needed)', () => {
  let dir: string;
  let identity: { api_cert: string; api_key: string; api_ca: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-api-identity-'));
    await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    identity = { api_cert: join(dir, 'cert.pem'), api_key: join(dir, 'key.pem'), api_ca: join(dir, 'cert.pem') };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('connection refused → CaError unavailable, nothing spawned', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const runner = new CountingRunner();
    const ca = new PuppetserverApiAuthority(caConfig({ ...identity, api_url: `https://localhost:${closed}` }), runner);
    try {
      await expect(ca.issue('x.example.test', [])).rejects.toMatchObject({ name: 'CaError', failure: 'unavailable', message: expect.stringMatching(/ECONNREFUSED/) });
      await expect(ca.revoke('x.example.test')).rejects.toMatchObject({ failure: 'unavailable' });
      expect(runner.count).toBe(0);
    } finally {
      ca.close();
    }
  });

  it('no answer within [ca] timeout → CaError timeout', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const ca = new PuppetserverApiAuthority({ ...caConfig({ ...identity, api_url: `https://localhost:${port}` }), timeoutMs: 300 }, new CountingRunner());
    try {
      const started = Date.now();
      await expect(ca.currentFingerprint('x.example.test')).rejects.toMatchObject({ failure: 'timeout', message: expect.stringMatching(/no answer .* within 0.3 s/) });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      ca.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('a missing client key file → CaError failed naming the path (and never its content)', async () => {
    const ca = new PuppetserverApiAuthority(caConfig({ ...identity, api_key: join(dir, 'missing.pem'), api_url: 'https://localhost:1' }), new CountingRunner());
    await expect(ca.currentFingerprint('x.example.test')).rejects.toMatchObject({ failure: 'failed', message: expect.stringContaining(join(dir, 'missing.pem')) });
  });
});
