/**
 * The HTTPS daemon of the foundation issue, in-process, over real TLS with the certificate
 * espm_setup generated pinned as the only trusted CA.
 */
import { Agent, request as httpsRequest } from 'node:https';
import { connect } from 'node:tls';
import { readFile, writeFile } from 'node:fs/promises';
import request from 'supertest';
import { generateSelfSignedCertificate } from '../../src/setup/certificate.js';
import { generatePsk } from '../../src/setup/psk.js';
import { startEspm, type RunningEspm } from '../support/espm.js';

/** A GET over a given agent, pinning the certificate; resolves status, body and peer fingerprint. */
function get(
  espm: RunningEspm,
  path: string,
  options: { agent?: Agent; authorization?: string; ca?: string } = {},
): Promise<{ status: number; body: string; fingerprint: string; reusedSocket: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${espm.url}${path}`,
      {
        ca: options.ca ?? espm.setup.plan.certificate,
        agent: options.agent,
        headers: options.authorization === undefined ? {} : { authorization: options.authorization },
      },
      (res) => {
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            fingerprint,
            reusedSocket: req.reusedSocket,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('espm over HTTPS', () => {
  let espm: RunningEspm;
  beforeEach(async () => {
    espm = await startEspm();
  });
  afterEach(() => espm.stop());

  const api = () => request(espm.url);

  it('GET /healthz needs no PSK and answers {"status":"ok"} only', async () => {
    const res = await api().get('/healthz').ca(espm.setup.plan.certificate);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('GET /v1/status with the PSK: version, uptime, backends', async () => {
    const res = await api().get('/v1/status').ca(espm.setup.plan.certificate).set('Authorization', espm.authorization);
    expect(res.status).toBe(200);
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(res.body).toEqual({
      version: pkg.version,
      uptime_s: expect.any(Number),
      classifier: { backend: 'dashboard-rake' },
      ca: { backend: 'puppet-cert' },
      ledger: { nodes: { present: 0, uncertain: 0 }, certificates: { present: 0, uncertain: 0 } },
      puppetdb: { enabled: false, pending_deactivations: 0 },
      connections: {
        open: expect.any(Number),
        refused: { total: 0, per_address_limit: 0, total_limit: 0, not_allowed: 0 },
        timed_out: { handshake: 0, first_request: 0, request: 0 },
        memory_releases: 0,
      },
    });
  });

  it.each([
    ['no Authorization header', undefined, /missing Authorization header/],
    ['a wrong PSK of the right length', `Bearer ${generatePsk()}`, /invalid pre-shared key/],
    ['a wrong PSK of another length', 'Bearer abc', /invalid pre-shared key/],
    ['the PSK under another scheme', 'Basic PSK', /invalid pre-shared key/],
    ['an empty bearer', 'Bearer ', /invalid pre-shared key/],
  ])('every /v1 route refuses %s: 401 problem+json', async (_what, authorization, detail) => {
    const header = authorization === 'Basic PSK' ? `Basic ${espm.setup.plan.psk}` : authorization;
    for (const path of ['/v1/status', '/v1/groups', '/v1/nodes/x']) {
      let req = api().get(path).ca(espm.setup.plan.certificate);
      if (header !== undefined) req = req.set('Authorization', header);
      const res = await req;
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="espm"');
      expect(JSON.parse(res.text)).toEqual({
        type: 'urn:espm:problem:unauthorized',
        title: 'Unauthorized',
        status: 401,
        detail: expect.stringMatching(detail),
        code: 'unauthorized',
      });
    }
  });

  it('throttles an address after 10 failed authentications in a minute: 429 + Retry-After, then even with the right PSK', async () => {
    const cert = espm.setup.plan.certificate;
    for (let i = 0; i < 5; i += 1) {
      expect((await api().get('/v1/status').ca(cert).set('Authorization', espm.authorization)).status).toBe(200);
    }
    for (let i = 0; i < 10; i += 1) {
      expect((await api().get('/v1/status').ca(cert).set('Authorization', 'Bearer wrong')).status).toBe(401);
    }
    const blocked = await api().get('/v1/status').ca(cert).set('Authorization', 'Bearer wrong');
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(JSON.parse(blocked.text)).toMatchObject({ status: 429, code: 'too_many_requests' });
    const good = await api().get('/v1/status').ca(cert).set('Authorization', espm.authorization);
    expect(good.status).toBe(429);
    expect((await api().get('/healthz').ca(cert)).status).toBe(200);
  });

  it('never throttles authenticated requests, however many run at once', async () => {
    const cert = espm.setup.plan.certificate;
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => api().get('/v1/status').ca(cert).set('Authorization', espm.authorization)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
  });

  it('unknown routes → 404 problem+json; malformed JSON → 400; bodies over 64 KiB → 413', async () => {
    const cert = espm.setup.plan.certificate;
    const notFound = await api().get('/v1/nope').ca(cert).set('Authorization', espm.authorization);
    expect(notFound.status).toBe(404);
    expect(JSON.parse(notFound.text)).toMatchObject({ code: 'not_found', detail: 'no route for GET /v1/nope' });
    const outside = await api().get('/etc/passwd').ca(cert);
    expect(outside.status).toBe(404);
    expect(outside.headers['content-type']).toMatch(/^application\/problem\+json/);

    const malformed = await api()
      .post('/v1/nodes')
      .ca(cert)
      .set('Authorization', espm.authorization)
      .set('Content-Type', 'application/json')
      .send('{"name": ');
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.text)).toMatchObject({ code: 'invalid_request', detail: 'malformed JSON body' });

    const huge = await api()
      .post('/v1/nodes')
      .ca(cert)
      .set('Authorization', espm.authorization)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ name: 'a'.repeat(65 * 1024) }));
    expect(huge.status).toBe(413);
    expect(JSON.parse(huge.text)).toMatchObject({ code: 'payload_too_large' });
  });

  it('does not parse bodies of unauthenticated requests', async () => {
    const res = await api()
      .post('/v1/nodes')
      .ca(espm.setup.plan.certificate)
      .set('Content-Type', 'application/json')
      .send('{"name": ');
    expect(res.status).toBe(401);
  });

  it('sends helmet headers on every answer', async () => {
    for (const res of [
      await api().get('/healthz').ca(espm.setup.plan.certificate),
      await api().get('/v1/status').ca(espm.setup.plan.certificate),
    ]) {
      expect(res.headers['strict-transport-security']).toMatch(/max-age=/);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['content-security-policy']).toBeDefined();
      expect(res.headers['x-powered-by']).toBeUndefined();
    }
  });

  it('refuses TLS 1.1 and accepts TLS 1.2', async () => {
    const { port } = espm.server.address();
    const handshake = (maxVersion: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve) => {
        const socket = connect({
          host: '127.0.0.1',
          port,
          ca: espm.setup.plan.certificate,
          minVersion: 'TLSv1',
          maxVersion,
          ciphers: 'DEFAULT@SECLEVEL=0',
        });
        socket.on('secureConnect', () => {
          resolve(socket.getProtocol() ?? 'unknown');
          socket.end();
        });
        socket.on('error', (err) => resolve(`error: ${err.message}`));
      });
    expect(await handshake('TLSv1.2')).toBe('TLSv1.2');
    expect(await handshake('TLSv1.1')).toMatch(/^error: .*(protocol version|unsupported protocol)/i);
  });

  it('refuses addresses outside [server] allow when they connect, before any TLS handshake (issue #18)', async () => {
    await espm.stop();
    espm = await startEspm({ server: { allow: '192.0.2.0/24, 2001:db8::/32' } });
    await expect(get(espm, '/v1/status', { authorization: espm.authorization })).rejects.toThrow(/ECONNRESET|socket hang up/);
    await espm.stop();
    espm = await startEspm({ server: { allow: '127.0.0.0/8' } });
    const ok = await api().get('/v1/status').ca(espm.setup.plan.certificate).set('Authorization', espm.authorization);
    expect(ok.status).toBe(200);
  });

  it('logs one line per request (method, path, status, ms, address) and never the PSK or a key', async () => {
    const cert = espm.setup.plan.certificate;
    await api().get('/v1/status?refresh=true').ca(cert).set('Authorization', espm.authorization);
    await api().get('/v1/status').ca(cert).set('Authorization', `Bearer ${espm.setup.plan.psk}x`);
    const requests = espm.logs.records().filter((r) => r['msg'] === 'request');
    expect(requests).toEqual([
      expect.objectContaining({ method: 'GET', path: '/v1/status', status: 200, ms: expect.any(Number), remote: '127.0.0.1' }),
      expect.objectContaining({ method: 'GET', path: '/v1/status', status: 401, remote: '127.0.0.1' }),
    ]);
    const text = espm.logs.text();
    expect(text).not.toContain(espm.setup.plan.psk);
    expect(text).not.toMatch(/authorization|PRIVATE KEY|Bearer/i);
  });

  describe('reload (SIGHUP)', () => {
    it('swaps the PSK and certificate without dropping an open connection', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const oldCert = espm.setup.plan.certificate;
      const first = await get(espm, '/v1/status', { agent, authorization: espm.authorization, ca: oldCert });
      expect(first.status).toBe(200);

      const newPsk = generatePsk();
      const tls = generateSelfSignedCertificate({ hostname: 'localhost', ips: ['127.0.0.1'] });
      await writeFile(espm.config.server.cert, tls.certificate);
      await writeFile(espm.config.server.key, tls.privateKey, { mode: 0o600 });
      await espm.setup.editConfig({ server: { psk: newPsk } });
      expect(espm.server.reload()).toBe(true);

      // Same keep-alive connection: still open, now judged by the new PSK.
      const oldPsk = await get(espm, '/v1/status', { agent, authorization: espm.authorization, ca: oldCert });
      expect(oldPsk.reusedSocket).toBe(true);
      expect(oldPsk.status).toBe(401);
      const sameSocket = await get(espm, '/v1/status', { agent, authorization: `Bearer ${newPsk}`, ca: oldCert });
      expect(sameSocket.reusedSocket).toBe(true);
      expect(sameSocket.status).toBe(200);
      expect(sameSocket.fingerprint).toBe(espm.setup.plan.fingerprintSha256);
      agent.destroy();

      // New connections get the new certificate.
      const fresh = await get(espm, '/v1/status', { authorization: `Bearer ${newPsk}`, ca: tls.certificate });
      expect(fresh.status).toBe(200);
      expect(fresh.fingerprint).toBe(tls.fingerprintSha256);
      expect(espm.logs.records().some((r) => r['msg'] === 'config reloaded')).toBe(true);
      expect(espm.logs.text()).not.toContain(newPsk);
    });

    it('keeps the old config when the new one is broken, and says why', async () => {
      await espm.setup.editConfig({ server: { port: 'not-a-port' } });
      expect(espm.server.reload()).toBe(false);
      const failure = espm.logs.records().find((r) => r['msg'] === 'reload failed; keeping the previous config');
      expect(failure?.['error']).toContain('[server] port');
      const res = await get(espm, '/v1/status', { authorization: espm.authorization });
      expect(res.status).toBe(200);
    });

    it('applies a new allow-list: 403 on an open connection, refused at connect for a new one', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        expect((await get(espm, '/v1/status', { agent, authorization: espm.authorization })).status).toBe(200);
        await espm.setup.editConfig({ server: { allow: '192.0.2.0/24' } });
        expect(espm.server.reload()).toBe(true);
        const res = await get(espm, '/v1/status', { agent, authorization: espm.authorization });
        expect({ status: res.status, reusedSocket: res.reusedSocket }).toEqual({ status: 403, reusedSocket: true });
        expect(JSON.parse(res.body)).toMatchObject({ code: 'forbidden', detail: 'client address 127.0.0.1 is not in [server] allow' });
        await expect(get(espm, '/v1/status', { authorization: espm.authorization })).rejects.toThrow(/ECONNRESET|socket hang up/);
      } finally {
        agent.destroy();
      }
    });
  });
});
