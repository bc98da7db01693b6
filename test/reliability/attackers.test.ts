/**
 * Attackers (issue #6, docs/design.md "HTTP contract v1" and "Config"): PSK guessing is throttled per
 * client address; the PSK comparison hashes both sides (no length or value oracle); TLS below
 * 1.2 is refused; another deployment's PSK is worthless here; espm refuses to start with a
 * config or TLS key that group/others can read; and no PSK or private key ever reaches a log.
 *
 * Two source addresses without IPv6: Linux routes all of 127.0.0.0/8 to loopback, so a client
 * socket bound to 127.0.0.2 reaches espm on 127.0.0.1 from another address.
 */
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type SecureVersion } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { accessSettings, pskMatches } from '../../src/http/access.js';
import { setUpDir, startEspm, type RunningEspm, type SetUpDir } from '../support/espm.js';
import { rawRequest, type RawAnswer } from './support.js';
import { freePort } from '../support/net.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');
const SANDBOX = { classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } };

/** Everything any espm of this file logged or printed; scanned by the last test. */
const captured: Array<{ text: () => string }> = [];
/** Every PSK (real or guessed) and private key seen in this file. */
const secrets: string[] = [];

function expectProblem(res: RawAnswer, status: number, code: string): void {
  expect({ status: res.status, contentType: res.headers['content-type'], code: res.body?.['code'] }).toEqual({
    status,
    contentType: expect.stringMatching(/^application\/problem\+json/),
    code,
  });
}

/** A wrong PSK: random, URL-safe, `length` characters. */
function guess(length: number): string {
  const value = randomBytes(length).toString('base64url').slice(0, length);
  secrets.push(value);
  return value;
}

/** A TLS handshake pinned to `ca` with exactly one protocol version: the protocol, or the error. */
function handshake(port: number, ca: string, version: SecureVersion): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca,
      minVersion: version,
      maxVersion: version,
      // Lets this client offer TLS 1.0/1.1 at all (OpenSSL 3 refuses them at level ≥ 1).
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    socket.once('secureConnect', () => {
      resolve({ ok: true, detail: socket.getProtocol() ?? '' });
      socket.destroy();
    });
    socket.once('error', (err) => resolve({ ok: false, detail: err.message }));
  });
}

describe('attackers', () => {
  let espm: RunningEspm;
  let other: RunningEspm;

  beforeAll(async () => {
    espm = await startEspm(SANDBOX);
    other = await startEspm(SANDBOX);
    captured.push(espm.logs, other.logs);
    secrets.push(espm.setup.plan.psk, other.setup.plan.psk);
    secrets.push(await readFile(espm.config.server.key, 'utf8'), await readFile(other.config.server.key, 'utf8'));
  }, 60_000);
  afterAll(async () => {
    await espm?.stop();
    await other?.stop();
  });

  describe('PSK guessing', () => {
    it('is throttled per address: the 11th wrong attempt → 429 + Retry-After (even with the right PSK then); another address is unaffected', async () => {
      const attacker = '127.0.0.2';
      // Wrong PSKs of the right length and of other lengths, and none at all, all count.
      const attempts = [48, 48, 1, 47, 49, 200, 48, 12, 48, 64].map(guess);
      for (const [i, psk] of attempts.entries()) {
        const res = await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${psk}`, localAddress: attacker });
        expect({ attempt: i + 1, status: res.status }).toEqual({ attempt: i + 1, status: 401 });
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.body?.['code']).toBe('unauthorized');
      }
      const eleventh = await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${guess(48)}`, localAddress: attacker });
      expectProblem(eleventh, 429, 'too_many_requests');
      const retryAfter = Number(eleventh.headers['retry-after']);
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);

      // The blocked address learns nothing: the right PSK is refused too, and nothing is created.
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/status', localAddress: attacker }), 429, 'too_many_requests');
      const create = await rawRequest(espm, {
        method: 'POST',
        path: '/v1/nodes',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'blocked.example.test' }),
        localAddress: attacker,
      });
      expectProblem(create, 429, 'too_many_requests');

      // Another address: the right PSK works, a wrong one is a plain 401.
      const bystander = '127.0.0.3';
      expect((await rawRequest(espm, { method: 'GET', path: '/v1/status', localAddress: bystander })).status).toBe(200);
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${guess(48)}`, localAddress: bystander }), 401, 'unauthorized');
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/nodes/blocked.example.test', localAddress: bystander }), 404, 'node_not_found');
      // /healthz needs no PSK and is not throttled.
      expect((await rawRequest(espm, { method: 'GET', path: '/healthz', authorization: null, localAddress: attacker })).status).toBe(200);
    });

    it('a wrong PSK of the right length and one of any other length get the same answer', async () => {
      const address = '127.0.0.4';
      const answers: string[] = [];
      for (const length of [48, 1, 47, 49, 4096]) {
        const res = await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${guess(length)}`, localAddress: address });
        expect(res.status).toBe(401);
        answers.push(JSON.stringify(res.body));
      }
      // A PSK differing from the real one in its last character only.
      const psk = espm.setup.plan.psk;
      const nearMiss = `${psk.slice(0, -1)}${psk.endsWith('A') ? 'B' : 'A'}`;
      const res = await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${nearMiss}`, localAddress: address });
      expect(res.status).toBe(401);
      answers.push(JSON.stringify(res.body));
      expect(new Set(answers).size).toBe(1);
    });

    it('pskMatches hashes both sides: no throw and false for any other length; the digest is SHA-256 of the PSK', () => {
      const psk = espm.setup.plan.psk;
      const { pskDigest } = accessSettings(psk, []);
      expect(pskDigest).toHaveLength(32);
      expect(pskDigest.equals(createHash('sha256').update(psk, 'utf8').digest())).toBe(true);
      expect(pskDigest.includes(Buffer.from(psk))).toBe(false);

      expect(pskMatches(psk, pskDigest)).toBe(true);
      const wrong = [
        '',
        'x',
        psk.slice(0, -1),
        `${psk}x`,
        `${psk}\u0000`,
        psk.toUpperCase() === psk ? psk.toLowerCase() : psk.toUpperCase(),
        'é'.repeat(psk.length), // same length in characters, not in bytes
        'x'.repeat(100_000),
        pskDigest.toString('hex'),
        pskDigest.toString('base64'),
        pskDigest.toString('latin1'),
      ];
      for (const presented of wrong) {
        expect(() => pskMatches(presented, pskDigest)).not.toThrow();
        expect({ length: presented.length, matches: pskMatches(presented, pskDigest) }).toEqual({ length: presented.length, matches: false });
      }
      // The presented value is hashed, not compared raw: a 32-byte value against itself as the
      // "digest" does not match (a raw comparison would say true).
      const raw32 = 'a'.repeat(32);
      expect(pskMatches(raw32, Buffer.from(raw32))).toBe(false);
      expect(pskMatches(raw32, createHash('sha256').update(raw32).digest())).toBe(true);
    });

    it('the PSK of another deployment (a second espm_setup) is refused, both ways', async () => {
      expect(other.setup.plan.psk).not.toBe(espm.setup.plan.psk);
      expect(other.setup.plan.psk).toHaveLength(espm.setup.plan.psk.length);
      const address = '127.0.0.5';
      expectProblem(await rawRequest(espm, { method: 'GET', path: '/v1/status', authorization: `Bearer ${other.setup.plan.psk}`, localAddress: address }), 401, 'unauthorized');
      expectProblem(await rawRequest(other, { method: 'GET', path: '/v1/status', authorization: `Bearer ${espm.setup.plan.psk}`, localAddress: address }), 401, 'unauthorized');
      // Each with its own PSK is fine.
      expect((await rawRequest(espm, { method: 'GET', path: '/v1/status', localAddress: '127.0.0.6' })).status).toBe(200);
      expect((await rawRequest(other, { method: 'GET', path: '/v1/status', localAddress: '127.0.0.6' })).status).toBe(200);
    });
  });

  describe('TLS', () => {
    it('TLS 1.0 and 1.1 handshakes are refused (the same client completes them with a permissive server); 1.2 and 1.3 are accepted', async () => {
      const port = espm.server.address().port;
      const ca = espm.setup.plan.certificate;
      // Control: a server allowing TLS 1.0 with espm's own certificate — the client can speak it.
      const control = createTlsServer(
        { cert: ca, key: await readFile(espm.config.server.key, 'utf8'), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' },
        (socket) => socket.end(),
      );
      control.listen(0, '127.0.0.1');
      await once(control, 'listening');
      const controlPort = (control.address() as { port: number }).port;
      try {
        expect(await handshake(controlPort, ca, 'TLSv1')).toEqual({ ok: true, detail: 'TLSv1' });
        expect(await handshake(controlPort, ca, 'TLSv1.1')).toEqual({ ok: true, detail: 'TLSv1.1' });
      } finally {
        control.close();
      }
      for (const version of ['TLSv1', 'TLSv1.1'] as const) {
        const result = await handshake(port, ca, version);
        expect({ version, ok: result.ok }).toEqual({ version, ok: false });
        expect(result.detail).toMatch(/protocol version|unsupported protocol|no protocols available/i);
      }
      expect(await handshake(port, ca, 'TLSv1.2')).toEqual({ ok: true, detail: 'TLSv1.2' });
      expect(await handshake(port, ca, 'TLSv1.3')).toEqual({ ok: true, detail: 'TLSv1.3' });
    });
  });

  describe('secret files readable by others: espm refuses to start (bin/espm, exit 2)', () => {
    let setup: SetUpDir;
    let port: number;
    beforeAll(async () => {
      // bin/espm runs dist/: `npm run build` (npm test's pretest) must have run.
      await access(join(ROOT, 'dist', 'cli', 'espm.js')).catch(() => {
        throw new Error('dist/cli/espm.js is missing: run `npm run build` first');
      });
      setup = await setUpDir();
      port = await freePort();
      await setup.editConfig({ ...SANDBOX, server: { port } });
      secrets.push(setup.plan.psk, await readFile(join(setup.dir, 'certs', 'espm.key'), 'utf8'));
    }, 60_000);
    afterAll(() => setup?.remove());

    async function runEspm(): Promise<{ exitCode: number | undefined; stderr: string; stdout: string }> {
      const result = await execa(ESPM, ['-c', setup.plan.configPath], { reject: false, timeout: 20_000 });
      captured.push({ text: () => `${result.stdout}\n${result.stderr}` });
      return { exitCode: result.exitCode, stderr: result.stderr, stdout: result.stdout };
    }

    it.each([
      ['the PSK-bearing config', '0640', 'config', 0o640],
      ['the PSK-bearing config', '0604', 'config', 0o604],
      ['the PSK-bearing config', '0644', 'config', 0o644],
      ['the PSK-bearing config', '0620 (group-writable)', 'config', 0o620],
      ['the TLS key', '0640', 'key', 0o640],
      ['the TLS key', '0644', 'key', 0o644],
      ['the TLS key', '0604', 'key', 0o604],
    ] as const)('%s at mode %s', async (_what, _label, which, mode) => {
      const path = which === 'config' ? setup.plan.configPath : join(setup.dir, 'certs', 'espm.key');
      await chmod(path, mode);
      try {
        const result = await runEspm();
        expect(result.exitCode).toBe(2);
        const label = which === 'config' ? 'config file' : '[server] key';
        expect(result.stderr).toContain(`${label} ${path} is readable or writable by group/others (mode 0${mode.toString(8)})`);
        expect(result.stderr).toContain(`chmod 600 ${path}`);
        expect(result.stdout).not.toContain('listening');
      } finally {
        await chmod(path, 0o600);
      }
    }, 30_000);

    it('control: with both at 0600 the same espm starts and stops cleanly', async () => {
      const child = execa(ESPM, ['-c', setup.plan.configPath], { reject: false });
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      captured.push({ text: () => out });
      const deadline = Date.now() + 15_000;
      while (!out.includes('"msg":"listening"') && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(out).toContain('"msg":"listening"');
      child.kill('SIGTERM');
      expect((await child).exitCode).toBe(0);
    }, 30_000);
  });

  describe('secrets in logs', () => {
    it('after a certificate (with its private key) was handed out and every attack above, no PSK or private key appears in any log', async () => {
      const issued = await rawRequest(espm, {
        method: 'POST',
        path: '/v1/certificates',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ certname: 'secret.example.test' }),
        localAddress: '127.0.0.7',
      });
      expect(issued.status).toBe(201);
      const privateKey = String(issued.body?.['private_key']);
      expect(privateKey).toContain('PRIVATE KEY');
      secrets.push(privateKey);

      const logs = captured.map((c) => c.text()).join('\n');
      // Non-trivial: every espm logged its requests, including the refused ones.
      expect(logs).toContain('"status":401');
      expect(logs).toContain('"status":429');
      expect(logs).toContain('"status":201');
      expect(logs).not.toContain('PRIVATE KEY');
      for (const secret of secrets) {
        // Keys: any line of their base64 body; PSKs and guesses: the value itself.
        const needles = secret.includes('-----BEGIN')
          ? secret.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'))
          : secret.length >= 8
            ? [secret]
            : [];
        for (const needle of needles) expect({ leaked: logs.includes(needle) }).toEqual({ leaked: false });
      }
      expect(secrets.length).toBeGreaterThanOrEqual(20);
    }, 60_000);
  });
});
