/**
 * End to end (issue #14): open-source Puppet with espm as its ENC, no double anywhere — a real
 * puppetserver (Debian packages) whose `external_nodes` is `bin/espm-enc -f <classification
 * file>` (the sh front: owned names → `bin/espm enc`, any other → the old ENC directly, as the
 * daemon wrote it from `fallback_enc` into `owned/.fallback`), bin/espm_setup and bin/espm as
 * child processes, the site's previous ENC (a shell script) as `fallback_enc` — its one place —
 * and a real `puppet agent` with the pre-signed certificate.
 *
 * Shows: the exec ENC is bin/espm-enc; the classes list is what the environment really has; an
 * agent applies the group's class (with the group's Integer parameter and top-scope variable)
 * and the node's class with its parameter (exit 2); a node espm did not create is classified by
 * the fallback byte for byte as before (and cannot be taken over: 409); after DELETE the name
 * goes back to the fallback; puppetserver's own node lookup shows the fallback's answer, and a
 * SIGHUP that changes `fallback_enc` in espm.ini changes it, the external_nodes line untouched.
 *
 * Needs `npm run build` (bin/espm runs dist/). Never prints the PSK or a private key.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { describeWith } from '../support/components.js';
import { ENC_COMPONENT, ENC_MISSING, encClassifierKeys, environmentClassesRule, LEGACY_NODE, makeEncFiles, STORY_ENC_GROUP, STORY_GROUPS_YAML, webserverModule, type EncFiles } from '../support/enc-rig.js';
import { editEspmConfig, ESPM_BIN, motdModule, runEspmSetup, startEspmProcess, stopEspmProcess, waitFor, type EspmProcess, type EspmSetup } from '../support/launch-story.js';
import { freePort } from '../support/net.js';
import { expectStatus, pinnedClient, type PinnedCall } from '../support/pinned-client.js';
import { PUPPETSERVER_BIN, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { DEFAULTS } from '../../src/config.js';

/** bin/espm-enc, beside bin/espm. */
const ESPM_ENC_BIN = join(dirname(ESPM_BIN), 'espm-enc');

const GROUP = STORY_ENC_GROUP;
const NODE = `web01-${Date.now()}.example.test`;
const MESSAGE = 'hello from the platform, through espm enc';
/** Lets the master's certificate (certname `localhost`) read what the ENC gives {@link LEGACY_NODE} (before the stock node rule, sort-order 500, which allows only the node itself). */
const LEGACY_NODE_RULE = `{ match-request: { path: "/puppet/v3/node/${LEGACY_NODE}", type: path, method: get }, allow: "localhost", sort-order: 400, name: "test: the master reads the legacy node" }`;

describeWith(ENC_COMPONENT, ENC_MISSING)('open-source Puppet: espm is the ENC for its nodes, on a real puppetserver (issue #14)', () => {
  let work: string;
  let files: EncFiles;
  let master: RealPuppetserver;
  let setup: EspmSetup;
  let espm: EspmProcess | undefined;
  let call: PinnedCall;
  let agentDir: string;
  let motdFile: string;
  let webFile: string;
  /** The external_nodes command espm_setup prints: the classification file only (the fallback is fallback_enc's). */
  const encCommand = (): string => `${ESPM_ENC_BIN} -f ${files.classificationFile}`;
  /** bin/espm-enc exactly as puppetserver runs it: the setting split on whitespace, the certname appended. */
  const espmEnc = (certname: string) => {
    const [file, ...args] = encCommand().split(/\s+/) as [string, ...string[]];
    return execa(file, [...args, certname], { reject: false, stripFinalNewline: false, encoding: 'buffer' });
  };
  const fallback = (certname: string) => execa(files.fallbackEnc, [certname], { reject: false, stripFinalNewline: false, encoding: 'buffer' });
  /** What puppetserver's node terminus (its exec ENC, run by puppetserver) gives a certname: `GET /puppet/v3/node/N` with the master's certificate. */
  const nodeFromPuppetserver = async (certname: string): Promise<{ classes: unknown; parameters: Record<string, unknown> }> => {
    const pem = (path: string) => readFileSync(join(master.ssldir, path), 'utf8');
    const dispatcher = new Agent({ connect: { ca: pem('certs/ca.pem'), cert: pem('certs/localhost.pem'), key: pem('private_keys/localhost.pem'), servername: 'localhost' } });
    try {
      const answer = await request(`https://127.0.0.1:${master.port}/puppet/v3/node/${certname}?environment=production`, { dispatcher, headers: { accept: 'application/json', host: `localhost:${master.port}` } });
      const body = await answer.body.text();
      if (answer.statusCode !== 200) throw new Error(`GET /puppet/v3/node/${certname}: ${answer.statusCode} ${body}`);
      return JSON.parse(body) as { classes: unknown; parameters: Record<string, unknown> };
    } finally {
      await dispatcher.close();
    }
  };

  /** puppet.conf's external_nodes lines. */
  const puppetConfLines = async () => (await readFile(master.confPath, 'utf8')).split('\n').filter((line) => line.startsWith('external_nodes'));

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'espm-e2e-enc-'));
    files = await makeEncFiles(STORY_GROUPS_YAML);
    agentDir = join(work, 'agent');
    await mkdir(agentDir, { recursive: true });
    motdFile = join(agentDir, 'motd.txt');
    webFile = join(agentDir, 'web.txt');
    master = await startPuppetserver({
      port: 0,
      enc: encCommand(),
      authRules: [environmentClassesRule('localhost'), LEGACY_NODE_RULE],
      modules: { motd: motdModule(motdFile), webserver: webserverModule(webFile), dbserver: 'class dbserver { }\n' },
    });
    setup = await runEspmSetup(work, await freePort());
    await editEspmConfig(setup.configPath, {
      classifier: encClassifierKeys(master, files),
      ca: { backend: 'puppetserver-ca', puppetserver: PUPPETSERVER_BIN, puppet: '/usr/bin/puppet', config: master.confPath, ssldir: master.ssldir },
    });
    espm = await startEspmProcess(setup.configPath, 30_000);
    call = pinnedClient({ port: setup.port, certificate: setup.certificate, psk: setup.psk });
    await waitFor(() => existsSync(files.classificationFile), 'the classification file', 20_000);
  }, 240_000);

  afterAll(async () => {
    if (espm !== undefined) await stopEspmProcess(espm);
    await master?.stop();
    await files?.remove();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }, 90_000);

  it('puppetserver\'s exec ENC is bin/espm-enc -f FILE (the front of bin/espm enc); the daemon wrote fallback_enc and timeout for it', async () => {
    const conf = await readFile(master.confPath, 'utf8');
    expect(conf).toContain('node_terminus = exec');
    expect(await puppetConfLines()).toEqual([`external_nodes = ${ESPM_ENC_BIN} -f ${files.classificationFile}`]);
    const owned = join(dirname(files.classificationFile), 'owned');
    expect(await readFile(join(owned, '.fallback'), 'utf8')).toBe(`${files.fallbackEnc}\n`);
    expect(await readFile(join(owned, '.timeout'), 'utf8')).toBe(`${DEFAULTS.classifier.timeout}\n`);
  });

  it('groups = the groups file\'s keys; classes = what the environment really has (environment_classes)', async () => {
    const groups = await call('GET', '/v1/groups');
    expectStatus(groups, 200, 'GET /v1/groups');
    expect(groups.body['groups']).toEqual(['databases', GROUP]);
    const classes = await call('GET', '/v1/classes');
    expectStatus(classes, 200, 'GET /v1/classes');
    expect(classes.body['classes']).toEqual(['dbserver', 'motd', 'webserver']);
  });

  it('an agent with the pre-signed certificate applies the group\'s class and the node\'s class with its parameter (exit 2)', async () => {
    const created = await call('POST', '/v1/nodes', { name: NODE, groups: [GROUP], classes: ['motd'], parameters: { motd_message: MESSAGE } });
    expectStatus(created, 201, 'POST /v1/nodes');
    const issued = await call('POST', '/v1/certificates', { certname: NODE });
    expectStatus(issued, 201, 'POST /v1/certificates');
    const answer = await espmEnc(NODE);
    expect(answer.exitCode).toBe(0);
    expect(Buffer.from(answer.stdout).toString()).toBe(
      `---\nclasses:\n  webserver:\n    port: 8080\n  motd: {}\nparameters:\n  tier: web\n  motd_message: ${MESSAGE}\nenvironment: production\n`,
    );
    await master.installAgentCertificate(agentDir, NODE, {
      certificate: String(issued.body['certificate']),
      privateKey: String(issued.body['private_key']),
      caCertificate: String(issued.body['ca_certificate']),
    });
    const run = await master.agent(NODE, agentDir);
    expect({ exitCode: run.exitCode, stderr: run.stderr }).toEqual({ exitCode: 2, stderr: expect.any(String) });
    expect((await readFile(motdFile, 'utf8')).trim()).toBe(MESSAGE);
    expect(await readFile(webFile, 'utf8')).toBe('port=8080 tier=web\n');
  }, 180_000);

  it('a node espm did not create is classified by the fallback, byte for byte as before, and cannot be taken over', async () => {
    for (const name of [LEGACY_NODE, 'other.example.test', 'broken.example.test']) {
      const [mine, before] = await Promise.all([espmEnc(name), fallback(name)]);
      expect({ name, exitCode: mine.exitCode, stdout: Buffer.from(mine.stdout).toString('hex'), stderr: Buffer.from(mine.stderr).toString('hex') }).toEqual({
        name,
        exitCode: before.exitCode,
        stdout: Buffer.from(before.stdout).toString('hex'),
        stderr: Buffer.from(before.stderr).toString('hex'),
      });
    }
    const taken = await call('POST', '/v1/nodes', { name: LEGACY_NODE, groups: [GROUP], classes: [], parameters: {} });
    expectStatus(taken, 409, 'POST /v1/nodes (the fallback classifies it)');
    expect(taken.body['code']).toBe('node_exists');
    expect((await fallback(LEGACY_NODE)).stdout).toEqual((await espmEnc(LEGACY_NODE)).stdout);
  }, 60_000);

  it('after DELETE the name goes back to the fallback', async () => {
    const deleted = await call('DELETE', `/v1/nodes/${NODE}`);
    expectStatus(deleted, 204, 'DELETE /v1/nodes');
    const [mine, before] = await Promise.all([espmEnc(NODE), fallback(NODE)]);
    expect(mine.exitCode).toBe(before.exitCode);
    expect(Buffer.from(mine.stdout).toString()).toBe(Buffer.from(before.stdout).toString());
    // The agent now gets the fallback's empty classification: nothing of espm's is applied.
    await rm(motdFile, { force: true });
    const run = await master.agent(NODE, agentDir);
    expect([0, 2]).toContain(run.exitCode);
    expect(existsSync(motdFile)).toBe(false);
  }, 120_000);

  it('fallback_enc is the one place: a SIGHUP that changes it changes what puppetserver answers for a node espm did not create', async () => {
    expect(await nodeFromPuppetserver(LEGACY_NODE)).toMatchObject({ classes: { ntp: {} }, parameters: { legacy_source: 'old ENC' } });
    const newEnc = join(files.dir, 'new-enc');
    await writeFile(newEnc, '#!/bin/sh\nprintf -- \'---\\nclasses:\\n  motd: {}\\nparameters:\\n  legacy_source: "new ENC %s"\\n\' "$1"\n', { mode: 0o755 });
    await editEspmConfig(setup.configPath, { classifier: { fallback_enc: `${newEnc} --site` } });
    espm!.child.kill('SIGHUP');
    const fallbackFile = join(dirname(files.classificationFile), 'owned', '.fallback');
    await waitFor(() => readFileSync(fallbackFile, 'utf8') === `${newEnc} --site\n`, 'owned/.fallback to follow fallback_enc', 20_000);
    const after = await nodeFromPuppetserver(LEGACY_NODE);
    expect(after.classes).toEqual({ motd: {} });
    expect(after.parameters).toMatchObject({ legacy_source: `new ENC --site` });
    expect(await puppetConfLines()).toEqual([`external_nodes = ${ESPM_ENC_BIN} -f ${files.classificationFile}`]);
  }, 60_000);
});
