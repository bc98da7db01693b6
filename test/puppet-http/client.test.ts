/**
 * The one Puppet HTTPS client (src/puppet-http) against a local mutual-TLS server: client
 * certificate presented, CA pinned, timeout, size cap, reads retried and changing requests
 * never, the service and the request named in every error, token mode, identity look-up.
 */
import { join } from 'node:path';
import { PuppetHttpClient, type PuppetHttpClientOptions } from '../../src/puppet-http/client.js';
import { PuppetHttpError } from '../../src/puppet-http/errors.js';
import { parseSettings, readTlsIdentity, resolvePuppetIdentity } from '../../src/puppet-http/identity.js';
import { makeTestPki, startTestHttpsServer, type TestHttpsServer, type TestPki } from '../support/ca-pki.js';
import { CountingRunner } from '../support/runner.js';
import { freePort } from '../support/net.js';

const SERVICE = 'Puppet Server CA';
let pki: TestPki;
let server: TestHttpsServer;
const clients: PuppetHttpClient[] = [];

/** 503 for the first `flaky[path]` hits of a path, then 200. */
const flaky = new Map<string, number>();

beforeAll(async () => {
  pki = await makeTestPki();
  server = await startTestHttpsServer(pki, (req, res) => {
    const path = req.path.split('?')[0]!;
    if (path === '/base/hang') return; // never answers
    if (path === '/base/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(64 * 1024));
      return;
    }
    if (path === '/base/big-chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < 64; i++) res.write('y'.repeat(1024));
      res.end();
      return;
    }
    if (path === '/base/reset') {
      // the request was received: drop the connection without answering
      res.socket?.destroy();
      return;
    }
    const left = flaky.get(path);
    if (left !== undefined && left > 0) {
      flaky.set(path, left - 1);
      res.writeHead(503).end('starting');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, path: req.path, cn: req.clientCn ?? null, token: req.headers['x-authentication'] ?? null, body: req.body }));
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.destroy()));
  await server?.close();
  await pki?.remove();
});

function client(options: Partial<PuppetHttpClientOptions> = {}): PuppetHttpClient {
  const c = new PuppetHttpClient({
    baseUrl: `${server.url}/base`,
    service: SERVICE,
    tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
    timeoutMs: 2_000,
    retryDelayMs: 10,
    ...options,
  });
  clients.push(c);
  return c;
}

async function failure(promise: Promise<unknown>): Promise<PuppetHttpError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(PuppetHttpError);
    return err as PuppetHttpError;
  }
  throw new Error('no error');
}

describe('PuppetHttpClient', () => {
  it('presents the client certificate, verifies the server against the pinned CA, sends the body', async () => {
    const answer = await client().request('PUT', '/thing/a%20b', { text: '{"x":1}', type: 'application/json' });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ method: 'PUT', path: '/base/thing/a%20b', cn: 'master.example.test', token: null, body: '{"x":1}' });
  });

  it('refuses a server its CA did not sign → unavailable, naming the service and the request; no retry of a TLS refusal', async () => {
    const before = server.seen.length;
    const err = await failure(client({ tls: { ca: pki.otherCa, cert: pki.clientCert, key: pki.clientKey } }).request('GET', '/ok'));
    expect(err.failure).toBe('unavailable');
    expect(err.message).toMatch(/^Puppet Server CA: GET \/base\/ok: cannot reach https:\/\/localhost:\d+/);
    expect(server.seen.length).toBe(before);
  });

  it('refuses a server whose certificate does not carry the host name → unavailable', async () => {
    const c = client({ baseUrl: `https://127.0.0.1:${server.port}` }); // the certificate names localhost only
    const err = await failure(c.request('GET', '/ok'));
    expect(err.failure).toBe('unavailable');
    expect(err.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('token mode: X-Authentication sent, no client certificate', async () => {
    const answer = await client({ token: 'rbac-token-123' }).request('GET', '/whoami');
    expect(JSON.parse(answer.body)).toMatchObject({ cn: null, token: 'rbac-token-123' });
  });

  it('no answer within the timeout → timeout, naming the service, the request and the seconds', async () => {
    const started = Date.now();
    const err = await failure(client({ timeoutMs: 300 }).request('GET', '/hang'));
    expect(err.failure).toBe('timeout');
    expect(err.message).toMatch(/^Puppet Server CA: GET \/base\/hang: got no answer from localhost:\d+ within 0.3 s/);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(server.hits('/base/hang')).toBe(1); // a timeout is not retried
  });

  it('an answer over the size cap → failed (announced length, or streamed)', async () => {
    const c = client({ maxResponseBytes: 16 * 1024 });
    const err = await failure(c.request('GET', '/big'));
    expect(err.failure).toBe('failed');
    expect(err.message).toMatch(/^Puppet Server CA: GET \/base\/big: the answer exceeds 16384 bytes/);
    const chunked = await failure(c.request('GET', '/big-chunked'));
    expect(chunked.message).toContain('exceeds 16384 bytes');
    // The client still works after dropping a connection.
    expect((await c.request('GET', '/ok')).status).toBe(200);
  });

  it('GET is retried on 503 (bounded); PUT, POST and DELETE never', async () => {
    flaky.set('/base/flaky-get', 2);
    expect((await client().request('GET', '/flaky-get')).status).toBe(200);
    expect(server.hits('/base/flaky-get')).toBe(3);

    flaky.set('/base/always', 100);
    expect((await client({ readRetries: 2 }).request('GET', '/always')).status).toBe(503);
    expect(server.hits('/base/always')).toBe(3);

    for (const method of ['PUT', 'POST', 'DELETE'] as const) {
      const path = `/flaky-${method}`;
      flaky.set(`/base${path}`, 1);
      expect((await client().request(method, path)).status).toBe(503);
      expect(server.hits(`/base${path}`)).toBe(1);
    }
  });

  it('a connection dropped after a PUT was received → timeout (outcome unknown), not retried; a GET → retried, then unavailable', async () => {
    const put = await failure(client().request('PUT', '/reset', { text: 'x', type: 'text/plain' }));
    expect(put.failure).toBe('timeout');
    expect(put.message).toMatch(/^Puppet Server CA: PUT \/base\/reset: .*outcome is unknown/);
    expect(server.hits('/base/reset')).toBe(1);
    const get = await failure(client().request('GET', '/reset'));
    expect(get.failure).toBe('unavailable');
    expect(server.hits('/base/reset')).toBe(1 + 3);
  });

  it('connection refused → unavailable, GET retried and still refused', async () => {
    const port = await freePort();
    const err = await failure(client({ baseUrl: `https://localhost:${port}` }).request('GET', '/x'));
    expect(err.failure).toBe('unavailable');
    expect(err.message).toMatch(/^Puppet Server CA: GET \/x: cannot reach https:\/\/localhost:\d+: ECONNREFUSED/);
  });

  it('refuses a base URL that is not https', () => {
    expect(() => new PuppetHttpClient({ baseUrl: 'http://localhost:1', service: 'PuppetDB', tls: { ca: '' }, timeoutMs: 1 })).toThrow(/^PuppetDB: configuration: /);
  });
});

describe('the master identity', () => {
  it('overrides all set: no puppet run', async () => {
    const runner = new CountingRunner();
    const identity = await resolvePuppetIdentity({
      service: SERVICE,
      puppet: '/usr/bin/puppet',
      config: '/etc/puppet/puppet.conf',
      timeoutMs: 1000,
      runner,
      hostPortSettings: ['ca_server', 'ca_port'],
      overrides: { url: 'https://ca.example.test:8140', cert: '/c', key: '/k', ca: '/a' },
    });
    expect(identity).toEqual({ url: 'https://ca.example.test:8140', cert: '/c', key: '/k', ca: '/a' });
    expect(runner.count).toBe(0);
  });

  it('parses `puppet config print a b` output', () => {
    const settings = parseSettings('hostcert = /ssl/certs/m.pem\nhostprivkey = /ssl/private_keys/m.pem\nca_server = puppet\nca_port = 8140\n');
    expect(Object.fromEntries(settings)).toEqual({ hostcert: '/ssl/certs/m.pem', hostprivkey: '/ssl/private_keys/m.pem', ca_server: 'puppet', ca_port: '8140' });
  });

  it('an unreadable key file → failed naming the path, never a content', async () => {
    const missing = join(pki.dir, 'missing.key');
    const err = await failure(readTlsIdentity({ cert: pki.clientCertPath, key: missing, ca: pki.caPath }, SERVICE));
    expect(err.failure).toBe('failed');
    expect(err.message).toContain(missing);
    expect(err.message).not.toContain('PRIVATE KEY');
    await expect(readTlsIdentity({ cert: '/nonexistent', key: missing, ca: pki.caPath }, SERVICE, false)).resolves.toEqual({ ca: pki.ca });
  });
});
