/**
 * What only the puppetserver-api backend does (the contract is in contract.test.ts): its TLS
 * identity from ONE `puppet config print` (or none with `[ca] api_*`), node keys made in
 * process (key_bits, the key pool), a CSR the CA already has, the roll-back of a refused
 * signing, the server verified and the client's pp_cli_auth, the request count of a revoke;
 * and, without a puppetserver, an unreachable or silent CA and an unreadable key file.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, access } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CaError, CertificateExistsError } from '../../src/ca/authority.js';
import { PuppetserverApiAuthority, type ApiAnswer } from '../../src/ca/puppetserver-api.js';
import type { CaConfig } from '../../src/config.js';
import { opensslChecks } from '../support/ca.js';
import { caSettings } from '../support/ca-backends.js';
import { describeWith } from '../support/components.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';
import { CountingRunner } from '../support/runner.js';

type Call = (method: string, path: string, body?: { text: string; type: string }) => Promise<ApiAnswer>;

function caConfig(keys: Record<string, string | number>): CaConfig<'puppetserver-api'> {
  const config = caSettings({ backend: 'puppetserver-api', ...keys });
  if (config.backend !== 'puppetserver-api') throw new Error('not the puppetserver-api backend');
  return config;
}

/** Counts the adapter's requests to the CA. */
function countCalls(ca: PuppetserverApiAuthority): { count: number } {
  const counter = { count: 0 };
  const self = ca as unknown as { call: Call };
  const real = self.call.bind(ca);
  self.call = (...args) => {
    counter.count++;
    return real(...args);
  };
  return counter;
}

const availability = puppetserverAvailable();

describeWith('a real puppetserver (Debian packages puppetserver, puppet-agent)', availability.available ? undefined : availability.reason)(
  'puppetserver-api against a real puppetserver',
  () => {
    let server: RealPuppetserver;
    /** The master's own identity (has pp_cli_auth): what puppet config print reports. */
    let identity: { api_url: string; api_cert: string; api_key: string; api_ca: string };
    const opened: PuppetserverApiAuthority[] = [];
    const adapter = (keys: Record<string, string | number>, runner = new CountingRunner()): PuppetserverApiAuthority => {
      const ca = new PuppetserverApiAuthority(caConfig(keys), runner);
      opened.push(ca);
      return ca;
    };

    beforeAll(async () => {
      server = await startPuppetserver({ allowSubjectAltNames: true, port: 0 });
      identity = {
        api_url: `https://localhost:${server.port}`,
        api_cert: join(server.ssldir, 'certs', 'localhost.pem'),
        api_key: join(server.ssldir, 'private_keys', 'localhost.pem'),
        api_ca: join(server.ssldir, 'certs', 'ca.pem'),
      };
    }, 240_000);
    afterAll(async () => {
      for (const ca of opened) ca.close();
      await server?.stop();
    }, 60_000);

    it('the identity comes from ONE puppet config print; then no process; nothing written to the ssldir; a PKCS#1 key of key_bits', async () => {
      const runner = new CountingRunner();
      const ca = adapter({ puppet: '/usr/bin/puppet', config: server.confPath, key_bits: 2048 }, runner);
      const issued = await ca.issue({ certname: 'web01.example.test', dnsAltNames: [], extensions: [] });
      await ca.issue({ certname: 'web02.example.test', dnsAltNames: [], extensions: [] });
      expect(runner.calls).toHaveLength(1);
      expect(runner.calls[0]).toMatchObject({
        file: '/usr/bin/puppet',
        args: ['config', 'print', 'hostcert', 'hostprivkey', 'localcacert', 'ca_server', 'ca_port', '--section', 'server', '--config', server.confPath],
      });
      expect(issued.privateKey).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n/);
      expect(new X509Certificate(issued.certificate).publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      expect(issued.caCertificate).toBe(await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8'));
      for (const dir of ['certs', 'private_keys', 'public_keys']) {
        await expect(access(join(server.ssldir, dir, 'web01.example.test.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
      }
    }, 60_000);

    it('with [ca] api_* set: no process at all; default key_bits 4096; a revoke is one status GET and one clean', async () => {
      const none = new CountingRunner();
      const config = caConfig({ ...identity, puppet: '/nonexistent/puppet' });
      expect(config.keyBits).toBe(4096);
      const ca = adapter({ ...identity, puppet: '/nonexistent/puppet' }, none);
      const issued = await ca.issue({ certname: 'big.example.test', dnsAltNames: [], extensions: [] });
      expect(new X509Certificate(issued.certificate).publicKey.asymmetricKeyDetails?.modulusLength).toBe(4096);
      const calls = countCalls(ca);
      expect(await ca.revoke('big.example.test', issued.receipt)).toBe('revoked');
      expect(calls.count).toBe(2);
      expect(none.count).toBe(0);
    }, 60_000);

    it('[ca] key_pool: keys made after start() are what issues hand out (each once), the pool refills behind them, close() drops them', async () => {
      const ca = new PuppetserverApiAuthority(caConfig({ ...identity, key_bits: 2048, key_pool: 2 }), new CountingRunner());
      try {
        expect(ca.keys.available).toBe(0);
        ca.start();
        const deadline = Date.now() + 30_000;
        while (ca.keys.available < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(ca.keys.available).toBe(2);
        const first = await ca.issue({ certname: 'pool1.example.test', dnsAltNames: [], extensions: [] });
        expect(ca.keys.available + ca.keys.generating).toBe(2);
        const second = await ca.issue({ certname: 'pool2.example.test', dnsAltNames: [], extensions: [] });
        expect(first.receipt.public_key_sha256).not.toBe(second.receipt.public_key_sha256);
        for (const issued of [first, second]) {
          expect((await opensslChecks({ certificate: issued.certificate, private_key: issued.privateKey, ca_certificate: issued.caCertificate })).keyMatches).toBe(true);
        }
      } finally {
        ca.close();
      }
      expect(ca.keys.available).toBe(0);
      await expect(ca.issue({ certname: 'pool3.example.test', dnsAltNames: [], extensions: [] })).rejects.toThrow(/closed/);
      expect(caConfig({ ...identity }).keyPool).toBe(10);
    }, 60_000);

    it('a CSR the CA has → CertificateExistsError; revoke of a name with only a CSR → absent and the CSR stays', async () => {
      const ca = adapter({ ...identity, key_bits: 2048 });
      const dir = await mkdtemp(join(tmpdir(), 'espm-csr-'));
      try {
        await execa('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-subj', '/CN=pending.example.test', '-out', join(dir, 'r.csr')]);
        const csr = await readFile(join(dir, 'r.csr'), 'utf8');
        const put = await (ca as unknown as { call: Call }).call('PUT', '/certificate_request/pending.example.test', { text: csr, type: 'text/plain' });
        expect(put.status).toBe(200);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const err = await ca.issue({ certname: 'pending.example.test', dnsAltNames: [], extensions: [] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CertificateExistsError);
      expect((err as CertificateExistsError).output).toMatch(/pending\.example\.test already has a requested certificate/);
      expect(await ca.currentFingerprint('pending.example.test')).toBeUndefined();
      expect(await ca.revoke('pending.example.test', null)).toBe('absent');
      expect((await ca.status('pending.example.test'))?.state).toBe('requested');
    }, 60_000);

    it('signing refused after the CSR was submitted → CaError failed with the answer, the CSR withdrawn, a retry works', async () => {
      const ca = adapter({ ...identity, key_bits: 2048 });
      const self = ca as unknown as { call: Call };
      const real = self.call.bind(ca);
      let refuse = true;
      self.call = async (method, path, body) => {
        if (refuse && method === 'PUT' && path.startsWith('/certificate_status/')) return { status: 409, body: 'Simulated refusal to sign\n' };
        return real(method, path, body);
      };
      const err = await ca.issue({ certname: 'refused.example.test', dnsAltNames: ['alt.example.test'], extensions: [] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CaError);
      expect(err).toMatchObject({ failure: 'failed', output: 'Simulated refusal to sign' });
      expect(await ca.status('refused.example.test')).toBeUndefined();
      refuse = false;
      const issued = await ca.issue({ certname: 'refused.example.test', dnsAltNames: ['alt.example.test'], extensions: [] });
      expect(new X509Certificate(issued.certificate).subjectAltName).toBe('DNS:refused.example.test, DNS:alt.example.test');
    }, 60_000);

    it('verifies the server: a name its certificate does not carry → unavailable; a client certificate without pp_cli_auth → 403 failed', async () => {
      const wrongName = adapter({ ...identity, api_url: `https://127.0.0.1:${server.port}` });
      await expect(wrongName.currentFingerprint('web01.example.test')).rejects.toMatchObject({
        failure: 'unavailable',
        message: expect.stringMatching(/^Puppet Server CA: GET \/puppet-ca\/v1\/certificate_status\/web01\.example\.test: .*ERR_TLS_CERT_ALTNAME_INVALID/),
      });
      const node = await adapter({ ...identity, key_bits: 2048 }).issue({ certname: 'client.example.test', dnsAltNames: [], extensions: [] });
      const dir = await mkdtemp(join(tmpdir(), 'espm-node-identity-'));
      try {
        await writeFile(join(dir, 'cert.pem'), node.certificate);
        await writeFile(join(dir, 'key.pem'), node.privateKey, { mode: 0o600 });
        const unprivileged = adapter({ ...identity, api_cert: join(dir, 'cert.pem'), api_key: join(dir, 'key.pem') });
        await expect(unprivileged.currentFingerprint('web01.example.test')).rejects.toMatchObject({
          failure: 'failed',
          message: expect.stringMatching(/answered 403 .*pp_cli_auth/),
          output: expect.stringMatching(/Forbidden request/),
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 60_000);
  },
);

describe('puppetserver-api adapter: unreachable CA (no puppetserver needed)', () => {
  let dir: string;
  let identity: { api_cert: string; api_key: string; api_ca: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-api-identity-'));
    await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    identity = { api_cert: join(dir, 'cert.pem'), api_key: join(dir, 'key.pem'), api_ca: join(dir, 'cert.pem') };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('connection refused → CaError unavailable naming the service, nothing spawned', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const runner = new CountingRunner();
    const ca = new PuppetserverApiAuthority(caConfig({ ...identity, api_url: `https://localhost:${closed}` }), runner);
    try {
      await expect(ca.issue({ certname: 'x.example.test', dnsAltNames: [], extensions: [] })).rejects.toMatchObject({
        name: 'CaError',
        failure: 'unavailable',
        message: expect.stringMatching(/^Puppet Server CA: GET \/puppet-ca\/v1\/certificate\/ca: .*ECONNREFUSED/),
      });
      await expect(ca.revoke('x.example.test', null)).rejects.toMatchObject({ failure: 'unavailable' });
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
