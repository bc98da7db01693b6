/**
 * End to end (issue #16): PuppetDB at termination, no double anywhere — a real puppetserver
 * storing reports in a real PuppetDB 7.12.1 on PostgreSQL 15 (test/support/puppetdb.ts, ONE for
 * the whole suite), espm as its ENC (`bin/espm enc`), bin/espm_setup and bin/espm as child
 * processes, real `puppet agent` runs with espm's pre-signed certificates.
 *
 * Shows: before the first run GET says `unknown`; after it `active` / `changed` (on both GETs);
 * the first DELETE deactivates the certname (the second sends nothing); a node espm does not own
 * stays active; a name that never checked in gets no command (no ghost row). With PuppetDB
 * stopped, DELETE answers 502 `puppetdb_failed` and the step is owed (status counts it; the
 * ledger holds it); after SIGKILL of espm and a restart of PuppetDB and espm nothing is lost:
 * the next DELETE settles one name (204), the background retry the other.
 *
 * Needs `npm run build` (bin/espm runs dist/). Never prints the PSK or a private key.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWith } from '../support/components.js';
import { encClassifierKeys, environmentClassesRule, makeEncFiles, STORY_ENC_GROUP, STORY_GROUPS_YAML, webserverModule, type EncFiles } from '../support/enc-rig.js';
import { editEspmConfig, ESPM_BIN, motdModule, runEspmSetup, startEspmProcess, stopEspmProcess, waitFor, type EspmProcess, type EspmSetup } from '../support/launch-story.js';
import { freePort } from '../support/net.js';
import { expectStatus, pinnedClient, type PinnedCall } from '../support/pinned-client.js';
import { PUPPETDB_COMPONENT, puppetdbMissing, startPuppetDbStack, type PuppetDbStack } from '../support/puppetdb.js';
import { PUPPETSERVER_BIN } from '../support/puppetserver.js';

const STAMP = Date.now();
const NODE = `web-${STAMP}.example.test`;
const QUIET = `quiet-${STAMP}.example.test`;
const OTHER = `other-${STAMP}.example.test`;
const LATE = [`late1-${STAMP}.example.test`, `late2-${STAMP}.example.test`] as const;

/** docs/openapi.yaml's schema `name`: every body below is checked against the contract. */
const openapi = YAML.parse(await readFile(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8')) as object;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(openapi, 'espm');
function expectContract(schema: 'Node' | 'OwnedCertificate' | 'Problem' | 'Status', body: unknown): void {
  const validate = ajv.getSchema(`espm#/components/schemas/${schema}`)!;
  expect([schema, validate(body) ? [] : validate.errors]).toEqual([schema, []]);
}

interface PdbNode {
  certname: string;
  deactivated: string | null;
  latest_report_status: string | null;
}

describeWith(PUPPETDB_COMPONENT, puppetdbMissing())('PuppetDB at termination, on a real PuppetDB and puppetserver (issue #16)', () => {
  let work: string;
  let files: EncFiles;
  let stack: PuppetDbStack;
  let setup: EspmSetup;
  let espm: EspmProcess | undefined;
  let call: PinnedCall;

  const pdbNode = async (certname: string): Promise<PdbNode | undefined> => {
    const answer = await stack.puppetdb.get(`/pdb/query/v4/nodes/${certname}`);
    if (answer.status === 404) return undefined;
    expect(answer.status).toBe(200);
    return answer.body as PdbNode;
  };
  /** Creates the node and its certificate through espm; returns the issued PEMs. */
  const create = async (name: string): Promise<Record<string, unknown>> => {
    expectStatus(await call('POST', '/v1/nodes', { name, groups: [STORY_ENC_GROUP], classes: ['motd'], parameters: { motd_message: `hi ${name}` } }), 201, 'POST /v1/nodes');
    const issued = await call('POST', '/v1/certificates', { certname: name });
    expectStatus(issued, 201, 'POST /v1/certificates');
    return issued.body;
  };
  /** The node's first agent run with espm's certificate (exit 2: motd changed something). */
  const firstRun = async (name: string, issued: Record<string, unknown>): Promise<void> => {
    const agentDir = join(work, 'agents', name);
    await stack.server.installAgentCertificate(agentDir, name, {
      certificate: String(issued['certificate']),
      privateKey: String(issued['private_key']),
      caCertificate: String(issued['ca_certificate']),
    });
    const agent = await stack.server.agent(name, agentDir);
    expect({ name, exitCode: agent.exitCode }).toEqual({ name, exitCode: 2 });
  };
  const launch = async (name: string): Promise<void> => firstRun(name, await create(name));
  const pending = async (): Promise<number> => {
    const status = await call('GET', '/v1/status');
    expectStatus(status, 200, 'GET /v1/status');
    expectContract('Status', status.body);
    return (status.body['puppetdb'] as { pending_deactivations: number }).pending_deactivations;
  };
  const startEspm = async (retryInterval: string): Promise<void> => {
    await editEspmConfig(setup.configPath, { puppetdb: { retry_interval: retryInterval, retry_max_interval: retryInterval } });
    espm = await startEspmProcess(setup.configPath, 30_000);
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'espm-e2e-puppetdb-'));
    files = await makeEncFiles(STORY_GROUPS_YAML);
    await mkdir(join(work, 'agents'), { recursive: true });
    stack = await startPuppetDbStack({
      port: 0,
      enc: `${ESPM_BIN} enc -f ${files.classificationFile}`,
      authRules: [environmentClassesRule('localhost')],
      modules: { motd: motdModule(join(work, 'motd.txt')), webserver: webserverModule(join(work, 'web.txt')), dbserver: 'class dbserver { }\n' },
    });
    setup = await runEspmSetup(work, await freePort());
    await editEspmConfig(setup.configPath, {
      classifier: encClassifierKeys(stack.server, files),
      ca: { backend: 'puppetserver-ca', puppetserver: PUPPETSERVER_BIN, puppet: '/usr/bin/puppet', config: stack.server.confPath, ssldir: stack.server.ssldir },
      // The master's identity is asked of puppet, as in production.
      puppetdb: { url: stack.puppetdb.url, timeout: '10', puppet: '/usr/bin/puppet', config: stack.server.confPath },
    });
    await startEspm('1');
    call = pinnedClient({ port: setup.port, certificate: setup.certificate, psk: setup.psk });
    await waitFor(() => existsSync(files.classificationFile), 'the classification file', 20_000);
  }, 420_000);

  afterAll(async () => {
    if (espm !== undefined) await stopEspmProcess(espm);
    await stack?.stop();
    await files?.remove();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it('GET shows PuppetDB\'s view: unknown before the first run, active / changed after it', async () => {
    const issued = await create(NODE);
    for (const path of [`/v1/nodes/${NODE}`, `/v1/certificates/${NODE}`]) {
      const before = await call('GET', path);
      expectStatus(before, 200, `GET ${path}`);
      expect(before.body['puppetdb']).toEqual({ state: 'unknown', latest_report_status: null, report_timestamp: null });
      expectContract(path.startsWith('/v1/nodes') ? 'Node' : 'OwnedCertificate', before.body);
    }
    await firstRun(NODE, issued);
    for (const path of [`/v1/nodes/${NODE}`, `/v1/certificates/${NODE}`]) {
      const after = await call('GET', path);
      expectStatus(after, 200, `GET ${path}`);
      expect(after.body['puppetdb']).toEqual({ state: 'active', latest_report_status: 'changed', report_timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      expectContract(path.startsWith('/v1/nodes') ? 'Node' : 'OwnedCertificate', after.body);
    }
  }, 240_000);

  it('the first DELETE deactivates the certname; the second sends nothing; others are untouched; a name that never checked in gets no command', async () => {
    // A node espm does not own, known to PuppetDB (certificate made by the CA's own CLI).
    expect((await stack.server.caCli(['generate', '--certname', OTHER])).exitCode).toBe(0);
    const otherDir = join(work, 'agents', OTHER);
    const pem = (kind: string) => readFile(join(stack.server.ssldir, kind, `${OTHER}.pem`), 'utf8');
    await stack.server.installAgentCertificate(otherDir, OTHER, { certificate: await pem('certs'), privateKey: await pem('private_keys'), caCertificate: await readFile(join(stack.server.ssldir, 'certs', 'ca.pem'), 'utf8') });
    expect([0, 2]).toContain((await stack.server.agent(OTHER, otherDir)).exitCode);
    expect((await pdbNode(OTHER))?.deactivated).toBeNull();

    expectStatus(await call('DELETE', `/v1/nodes/${NODE}`), 204, 'DELETE /v1/nodes');
    const deactivated = (await pdbNode(NODE))?.deactivated;
    expect(deactivated).toEqual(expect.stringMatching(/^\d{4}-/));
    expectStatus(await call('DELETE', `/v1/certificates/${NODE}`), 204, 'DELETE /v1/certificates');
    expect((await pdbNode(NODE))?.deactivated).toBe(deactivated); // not sent again

    expectStatus(await call('DELETE', `/v1/nodes/${OTHER}`), 404, 'DELETE of a node espm does not own');
    expect((await pdbNode(OTHER))?.deactivated).toBeNull();

    await create(QUIET);
    expectStatus(await call('DELETE', `/v1/nodes/${QUIET}`), 204, 'DELETE /v1/nodes (never checked in)');
    expectStatus(await call('DELETE', `/v1/certificates/${QUIET}`), 204, 'DELETE /v1/certificates (never checked in)');
    expect(await pdbNode(QUIET)).toBeUndefined(); // no ghost row
    expect(await pending()).toBe(0);
  }, 240_000);

  it('PuppetDB stopped: 502 puppetdb_failed, the step owed across SIGKILL and restarts; the next DELETE and the retry finish it', async () => {
    for (const name of LATE) await launch(name);
    await stack.puppetdb.stopPuppetDb();
    for (const name of LATE) {
      const failed = await call('DELETE', `/v1/nodes/${name}`);
      expectStatus(failed, 502, 'DELETE /v1/nodes with PuppetDB down');
      expect(failed.body).toMatchObject({ code: 'puppetdb_failed', pending_steps: ['puppetdb_deactivation'] });
      expectContract('Problem', failed.body);
    }
    const revoked = await call('DELETE', `/v1/certificates/${LATE[0]}`);
    expect(revoked.body['code']).toBe('puppetdb_failed');
    expectStatus(await call('GET', `/v1/certificates/${LATE[0]}`), 404, 'GET of a revoked certificate'); // its own work stands
    expect(await pending()).toBe(2);

    espm!.child.kill('SIGKILL');
    await espm!.child;
    espm = undefined;
    const ledger = JSON.parse(await readFile(join(setup.stateDir, 'ledger.json'), 'utf8')) as { entries: Array<{ kind: string; name: string; state: string; pending_steps: string[] }> };
    const owed = ledger.entries.filter((e) => e.pending_steps.includes('puppetdb_deactivation')).map((e) => `${e.kind} ${e.name} ${e.state}`);
    expect(owed.sort()).toEqual([`certificate ${LATE[0]} deleted`, `node ${LATE[0]} deleted`, `node ${LATE[1]} deleted`]);

    await stack.puppetdb.start();
    for (const name of LATE) expect((await pdbNode(name))?.deactivated).toBeNull();
    // espm again, its retry far away: the next DELETE settles the first name.
    await startEspm('3600');
    expect(await pending()).toBe(2);
    expectStatus(await call('DELETE', `/v1/nodes/${LATE[0]}`), 204, 'DELETE /v1/nodes once PuppetDB is back');
    expect((await pdbNode(LATE[0]))?.deactivated).toEqual(expect.stringMatching(/^\d{4}-/));
    expectStatus(await call('DELETE', `/v1/certificates/${LATE[0]}`), 404, 'DELETE /v1/certificates (settled with the node)');
    expect(await pending()).toBe(1);
    // and with a short retry interval the background retry settles the other.
    await stopEspmProcess(espm!);
    await startEspm('1');
    const deadline = Date.now() + 30_000;
    while ((await pending()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await pending()).toBe(0);
    expect((await pdbNode(LATE[1]))?.deactivated).toEqual(expect.stringMatching(/^\d{4}-/));
    expectStatus(await call('DELETE', `/v1/nodes/${LATE[1]}`), 404, 'DELETE /v1/nodes after the retry');
  }, 420_000);
});
