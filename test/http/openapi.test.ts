/**
 * docs/openapi.yaml is a valid OpenAPI 3.1 document, and every answer of the running app —
 * each route, success and error — is documented there for its path, method and status,
 * with a body matching the documented schema (issue #7).
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Response } from 'supertest';
import request from 'supertest';
import YAML from 'yaml';
import { Ledger } from '../../src/ownership/ledger.js';
import { SandboxCertificateAuthority } from '../../src/ca/sandbox.js';
import { apiClient, setUpDir, startEspm, type RunningEspm } from '../support/espm.js';

const SPEC_PATH = new URL('../../docs/openapi.yaml', import.meta.url);
type Doc = { paths: Record<string, Record<string, { responses: Record<string, { $ref?: string; content?: Record<string, unknown> }> }>>; components: { responses: Record<string, { content?: Record<string, unknown> }> } };
const doc = YAML.parse(await readFile(SPEC_PATH, 'utf8')) as Doc;

const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(doc as object, 'espm');

/** JSON pointer escaping. */
const esc = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Which documented path template a concrete path belongs to. */
function template(path: string): string {
  const bare = path.split('?')[0]!;
  for (const t of Object.keys(doc.paths)) {
    const re = new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (re.test(bare)) return t;
  }
  throw new Error(`undocumented path ${bare}`);
}

/** Every (template, method, status) answered during the suite. */
const seen = new Set<string>();

/** Asserts an answer is documented and matches its schema. */
function conforms(method: string, path: string, res: Response): void {
  const t = template(path);
  const operation = doc.paths[t]?.[method.toLowerCase()];
  expect([method, t, operation === undefined ? 'undocumented operation' : 'ok']).toEqual([method, t, 'ok']);
  const status = String(res.status);
  let response = operation!.responses[status];
  expect([method, t, status, response === undefined ? 'undocumented status' : 'ok']).toEqual([method, t, status, 'ok']);
  let pointer = `/paths/${esc(t)}/${method.toLowerCase()}/responses/${status}`;
  if (response!.$ref !== undefined) {
    const name = response!.$ref.split('/').at(-1)!;
    response = doc.components.responses[name]!;
    pointer = `/components/responses/${esc(name)}`;
  }
  seen.add(`${method} ${t} ${status}`);
  if (response!.content === undefined) {
    expect(res.text ?? '').toBe('');
    return;
  }
  const contentType = String(res.headers['content-type'] ?? '').split(';')[0]!;
  expect(Object.keys(response!.content)).toContain(contentType);
  const validate = ajv.getSchema(`espm#${pointer}/content/${esc(contentType)}/schema`)!;
  const body: unknown = JSON.parse(res.text);
  const valid = validate(body);
  expect([method, path, status, valid ? [] : validate.errors]).toEqual([method, path, status, []]);
}

describe('docs/openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document with the bearer (PSK) scheme', async () => {
    const result = await new Validator().validate(doc as unknown as Parameters<Validator["validate"]>[0]);
    expect(result).toEqual({ valid: true });
    expect(YAML.parse(await readFile(SPEC_PATH, 'utf8'))).toMatchObject({
      openapi: '3.1.0',
      components: { securitySchemes: { psk: { type: 'http', scheme: 'bearer' } } },
    });
  });

  describe('live answers of the running app', () => {
    let espm: RunningEspm;
    let api: ReturnType<typeof apiClient>;
    let dir: string;
    beforeAll(async () => {
      espm = await startEspm({ classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } });
      api = apiClient(espm);
      dir = await mkdtemp(join(tmpdir(), 'espm-openapi-'));
    });
    afterAll(async () => {
      await espm.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, extra?: (r: request.Test) => request.Test): Promise<Response> => {
      let r = method === 'GET' ? api.get(path) : method === 'POST' ? api.post(path, body) : api.delete(path);
      if (extra !== undefined) r = extra(r);
      const res = await r;
      conforms(method, path, res);
      return res;
    };

    it('discovery, nodes and certificates: successes and refusals', async () => {
      const health = await request(espm.url).get('/healthz').ca(espm.setup.plan.certificate);
      conforms('GET', '/healthz', health);
      await call('GET', '/v1/status');
      const groups = await call('GET', '/v1/groups');
      await call('GET', '/v1/groups', undefined, (r) => r.set('If-None-Match', groups.headers['etag'] as string));
      await call('GET', '/v1/classes?refresh=true');

      await call('POST', '/v1/nodes', { name: 'web01.example.test', groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
      await call('GET', '/v1/nodes/web01.example.test');
      await call('POST', '/v1/nodes', { name: 'web01.example.test' });
      await call('POST', '/v1/nodes', { name: 'Bad Name' });
      await call('POST', '/v1/nodes', { name: 'x.example.test', groups: ['nosuch'] });
      await call('POST', '/v1/nodes', 'name=x', (r) => r.type('form'));
      await call('POST', '/v1/nodes', { name: 'x'.repeat(70_000) });
      await call('GET', '/v1/nodes/master.example.com');
      await call('GET', '/v1/nodes/Not..Valid');
      await call('DELETE', '/v1/nodes/master.example.com');
      await call('DELETE', '/v1/nodes/web01.example.test');

      await call('POST', '/v1/certificates', { certname: 'web01.example.test', dns_alt_names: ['www.example.test'], extensions: { pp_role: 'web' } });
      await call('POST', '/v1/certificates', { certname: 'auth.example.test', extensions: { pp_cli_auth: 'true' } });
      await call('GET', '/v1/certificates/web01.example.test');
      await call('POST', '/v1/certificates', { certname: 'web01.example.test' });
      await call('POST', '/v1/certificates', { certname: 'web01.example.test', extra: true });
      await call('GET', '/v1/certificates/nosuch.example.test');
      await call('DELETE', '/v1/certificates/nosuch.example.test');
      await call('DELETE', '/v1/certificates/web01.example.test');
    });

    it('ownership uncertain, re-issued certificates', async () => {
      await call('POST', '/v1/certificates', { certname: 'taken.example.test' });
      const ca = new SandboxCertificateAuthority(join(espm.config.state.dir), {});
      await ca.revoke('taken.example.test');
      await ca.issue({ certname: 'taken.example.test', dnsAltNames: [], extensions: [] });
      await call('DELETE', '/v1/certificates/taken.example.test');
    });

    it('authentication, throttling and the allow-list', async () => {
      const unauth = await request(espm.url).get('/v1/status').ca(espm.setup.plan.certificate);
      conforms('GET', '/v1/status', unauth);
      for (let i = 0; i < 10; i += 1) await request(espm.url).get('/v1/groups').ca(espm.setup.plan.certificate).set('Authorization', 'Bearer x');
      const throttled = await request(espm.url).get('/v1/groups').ca(espm.setup.plan.certificate).set('Authorization', 'Bearer x');
      conforms('GET', '/v1/groups', throttled);
      expect(throttled.status).toBe(429);

      // [server] allow refuses a new connection when it is accepted (issue #18); the 403 answer is
      // for a request on a connection opened before a reload removed its address.
      const other = await startEspm({ server: { allow: '127.0.0.0/8' }, classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } });
      const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: other.setup.plan.certificate });
      try {
        expect((await request(other.url).get('/healthz').agent(agent)).status).toBe(200);
        await other.setup.editConfig({ server: { allow: '192.0.2.0/24' } });
        expect(other.server.reload()).toBe(true);
        const res = await request(other.url).get('/healthz').agent(agent);
        conforms('GET', '/healthz', res);
        expect(res.status).toBe(403);
      } finally {
        agent.destroy();
        await other.stop();
      }
    });

    it('backend failures and timeouts, and a create interrupted by a crash', async () => {
      const slowRake = join(dir, 'slow-rake');
      await writeFile(slowRake, '#!/bin/sh\nsleep 5\n');
      await chmod(slowRake, 0o755);
      const setup = await setUpDir();
      const ledger = await Ledger.open(join(setup.dir, 'var'));
      await ledger.begin('node', 'crashed.example.test', { groups: [], classes: [], parameters: {} });
      await ledger.close();
      const broken = await startEspm({ classifier: { rake: '/nonexistent/rake' }, ca: { backend: 'sandbox' } }, { setup });
      try {
        const b = apiClient(broken);
        const unavailable = await b.get('/v1/groups');
        conforms('GET', '/v1/groups', unavailable);
        expect(unavailable.status).toBe(503);
        const uncertain = await b.delete('/v1/nodes/crashed.example.test');
        conforms('DELETE', '/v1/nodes/crashed.example.test', uncertain);
        expect(uncertain.status).toBe(409);
      } finally {
        await broken.stop();
        await setup.remove();
      }
      const failingRake = join(dir, 'failing-rake');
      await writeFile(failingRake, '#!/bin/sh\necho "rake aborted!" >&2\nexit 1\n');
      await chmod(failingRake, 0o755);
      const failing = await startEspm({ classifier: { rake: failingRake, cwd: dir, worker: false }, ca: { backend: 'sandbox' } });
      try {
        const res = await apiClient(failing).get('/v1/groups');
        conforms('GET', '/v1/groups', res);
        expect(res.status).toBe(502);
      } finally {
        await failing.stop();
      }
      const slow = await startEspm({ classifier: { rake: slowRake, cwd: dir, timeout: 1 }, ca: { backend: 'sandbox' } });
      try {
        const res = await apiClient(slow).get('/v1/classes');
        conforms('GET', '/v1/classes', res);
        expect(res.status).toBe(504);
      } finally {
        await slow.stop();
      }
    }, 30_000);

    afterAll(() => {
      // Every documented operation was exercised.
      const operations = Object.entries(doc.paths).flatMap(([t, ops]) => Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${t}`));
      const exercised = new Set([...seen].map((s) => s.split(' ').slice(0, 2).join(' ')));
      expect(operations.filter((o) => !exercised.has(o))).toEqual([]);
    });
  });
});
