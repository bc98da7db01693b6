/**
 * End to end (issue #5): the platform's launch and termination flow against a REAL puppetserver
 * (Debian packages, test/support/puppetserver.ts) whose ENC is the console double's
 * `external_node`, with bin/espm_setup and bin/espm run as child processes, as an operator does.
 *
 * Launch: espm_setup → espm → (platform, pinning espm's certificate) groups/classes → create
 * node (409 node_exists → timestamped name → 201) → certificate → the new server installs
 * cert + key + CA cert and runs `puppet agent --onetime`: the console's parameter reaches the
 * class as a top-scope variable, the certificate's trusted extension `pp_role` (asked in the
 * POST) reaches the manifest as `$trusted['extensions']['pp_role']`, and the agent never sends a CSR.
 * Termination: delete node + revoke certificate → the agent is refused and the ENC forgets it;
 * what espm did not create (seeded nodes, the server's certificate) is untouched.
 *
 * The set-up (master with the console as ENC, espm_setup + espm, the agent run) is the launch
 * story the demo tells too (test/support/launch-story.ts); the platform's calls go through the
 * pinned client (test/support/pinned-client.ts). Under CI=true a missing puppetserver,
 * puppet-agent or rake fails the suite (test/support/components.ts).
 *
 * Needs `npm run build` (bin/espm runs dist/); `npm test` does it in its pretest step.
 * Never prints the PSK or a private key.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { execa } from 'execa';
import { revokedSerials } from '../support/ca.js';
import { describeWith } from '../support/components.js';
import { CONSOLE_RAKEFILE, findRake, type ConsoleDouble, type StoredNode } from '../support/console.js';
import {
  editEspmConfig,
  firstAgentRun,
  missingForRealStory,
  PRE_EXISTING_NODES as PRE_EXISTING,
  realBackendConfig,
  runEspmSetup,
  startConsoleDouble,
  startEspmProcess,
  startMaster,
  stopEspmProcess,
  STORY_CLASS as CLASS,
  STORY_GROUP as GROUP,
  withTimestamp,
  type EspmProcess,
  type EspmSetup,
  type StoryMaster,
} from '../support/launch-story.js';
import { freePort } from '../support/net.js';
import { expectStatus, pinnedClient, type PinnedCall } from '../support/pinned-client.js';
import { trustedExtensionValues } from '../support/trusted-extensions.js';

const missing = await missingForRealStory();
/** The trusted extension `pp_role` the platform asks for; the manifest must see it. */
const ROLE = 'web';
const describeE2e = describeWith(
  'puppetserver, puppet-agent and rake (Debian packages puppetserver puppet-agent ruby rake)',
  missing.length === 0 ? undefined : missing.join('; '),
);
const rake = await findRake();

/** Wall-clock duration of each step, printed at the end (no secrets). */
const timings: Array<[string, number]> = [];
async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await fn();
  } finally {
    timings.push([label, Date.now() - start]);
  }
}

describeE2e('launch and terminate a server through espm, on a real puppetserver (issue #5)', () => {
  let work: string;
  let consoleDouble: ConsoleDouble;
  let master: StoryMaster;
  let server: StoryMaster['server'];
  let espm: EspmProcess | undefined;
  let espmPort: number;
  let announcement: EspmSetup;
  let call: PinnedCall;
  let agentDir: string;
  let motdFile: string;
  /** Seeded nodes (as stored) and their ENC answers, before espm ran. */
  const before = new Map<string, { stored: string; enc: string }>();
  let serverCertBefore: Buffer;
  /** The platform's names: first choice (taken), final one, parameter value. */
  let baseName: string;
  let nodeName: string;
  const message = `Launched by the platform (espm e2e ${Date.now()})`;
  let issued: { certname: string; certificate: string; private_key: string; ca_certificate: string; fingerprint_sha256: string };

  const rakeTask = (...args: string[]) =>
    execa(rake!, ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', ...args], { cwd: consoleDouble.dir, reject: false });
  const enc = (certname: string) => master.enc(certname);
  const storedNode = async (name: string): Promise<StoredNode | undefined> => consoleDouble.node(name);
  const espmOut = (): string => (espm?.lines ?? []).join('\n');
  const accessLines = (log: string, needle: string): string[] => log.split('\n').filter((line) => line.includes(needle));

  beforeAll(async () => {
    const started = Date.now();
    work = await mkdtemp(join(tmpdir(), 'espm-e2e-'));

    // The console double (seeded: its first rake task creates console.json).
    consoleDouble = await timed('console double seeded', async () => {
      const double = await startConsoleDouble();
      const store = await double.store();
      for (const name of PRE_EXISTING) {
        const node = store.nodes.find((n) => n.name === name);
        if (node === undefined) throw new Error(`seed lacks ${name}`);
        before.set(name, { stored: JSON.stringify(node), enc: '' });
      }
      return double;
    });

    // puppetserver with the console's external_node as ENC and the motd module.
    master = await timed('puppetserver start (ca setup + JVM)', () => startMaster(work, consoleDouble));
    ({ server, agentDir, motdFile } = master);
    for (const name of PRE_EXISTING) {
      const answer = await enc(name);
      if (answer.exitCode !== 0) throw new Error(`external_node ${name} exited ${answer.exitCode}`);
      before.get(name)!.enc = answer.stdout;
    }
    serverCertBefore = await readFile(join(server.ssldir, 'certs', 'localhost.pem'));

    // espm_setup, as the operator runs it; the config pointed at the console double and the real CA.
    espmPort = await freePort();
    announcement = await timed('espm_setup', () => runEspmSetup(work, espmPort));
    await editEspmConfig(announcement.configPath, await realBackendConfig(master));

    espm = await timed('espm start (until "listening")', () => startEspmProcess(announcement.configPath, 20_000));
    call = pinnedClient({ port: espmPort, certificate: announcement.certificate, psk: announcement.psk });
    timings.push(['beforeAll total', Date.now() - started]);
  }, 180_000);

  afterAll(async () => {
    if (espm !== undefined && !espm.exited()) espm.child.kill('SIGKILL');
    await espm?.child;
    await server?.stop();
    await consoleDouble?.remove();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    if (timings.length > 0) {
      console.log(`end-to-end timings:\n${timings.map(([label, ms]) => `  ${label}: ${(ms / 1000).toFixed(1)} s`).join('\n')}`);
    }
  }, 60_000);

  it('the platform pins espm\'s certificate and lists the console\'s groups and classes', async () => {
    await timed('GET /v1/groups + /v1/classes', async () => {
      const pinned = new X509Certificate(announcement.certificate);
      expect(pinned.fingerprint256).toBe(announcement.fingerprint);

      const groups = await call('GET', '/v1/groups');
      expectStatus(groups, 200, 'GET /v1/groups');
      expect(groups.peerFingerprint).toBe(announcement.fingerprint);
      expect(groups.body['groups']).toEqual(expect.arrayContaining([GROUP, 'default', 'webservers']));

      const classes = await call('GET', '/v1/classes');
      expectStatus(classes, 200, 'GET /v1/classes');
      expect(classes.body['classes']).toEqual(expect.arrayContaining([CLASS]));

      // A platform with a different pinned certificate refuses espm.
      const stranger = await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { reject: false });
      expect(stranger.exitCode).toBe(0);
      await expect(pinnedClient({ port: espmPort, certificate: stranger.stdout, psk: announcement.psk })('GET', '/v1/groups')).rejects.toThrow(
        /self[- ]signed certificate/i,
      );
    });
  }, 120_000);

  it('creates the node (node_exists → timestamped name → 201) and its certificate', async () => {
    baseName = `web01-${Date.now()}.example.test`;
    // Someone else already has this name in the console: the first POST must get 409.
    const direct = await rakeTask('node:add', `name=${baseName}`);
    expect(direct.stdout.trim()).toBe('Node successfully created!');
    const directNode = JSON.stringify(await storedNode(baseName));

    const attempts: number[] = [];
    await timed('POST /v1/nodes (409, retry, 201)', async () => {
      let name = baseName;
      for (let attempt = 0; attempt < 3; attempt++) {
        const res = await call('POST', '/v1/nodes', {
          name,
          groups: [GROUP],
          classes: [CLASS],
          parameters: { motd_message: message },
        });
        attempts.push(res.status);
        if (res.status === 409 && res.body['code'] === 'node_exists') {
          name = withTimestamp(baseName);
          continue;
        }
        expectStatus(res, 201, `POST /v1/nodes ${name}`);
        expect(res.headers.location).toBe(`/v1/nodes/${name}`);
        expect(res.body).toMatchObject({ name, groups: [GROUP], classes: [CLASS], parameters: { motd_message: message } });
        nodeName = name;
        break;
      }
    });
    expect(attempts).toEqual([409, 201]);
    expect(nodeName).toMatch(/^web01-\d+-\d+\.example\.test$/);
    // The other party's node is untouched; ours is in the console as asked.
    expect(JSON.stringify(await storedNode(baseName))).toBe(directNode);
    expect(await storedNode(nodeName)).toMatchObject({
      groups: [GROUP],
      classes: [CLASS],
      parameters: [['motd_message', message]],
    });
    const encAnswer = await enc(nodeName);
    expect(encAnswer.exitCode).toBe(0);
    expect(encAnswer.stdout).toContain(`motd_message: ${message}`);

    await timed('POST /v1/certificates', async () => {
      const res = await call('POST', '/v1/certificates', { certname: nodeName, extensions: { pp_role: ROLE } });
      expectStatus(res, 201, `POST /v1/certificates ${nodeName}`);
      const body = res.body as unknown as typeof issued;
      expect(body.certname).toBe(nodeName);
      for (const field of ['certificate', 'ca_certificate'] as const) {
        expect(body[field]).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
      }
      // Checked without ever letting jest print the key.
      expect(typeof body.private_key === 'string' && /^-----BEGIN (RSA )?PRIVATE KEY-----\n/.test(body.private_key)).toBe(true);
      expect(body.ca_certificate).toBe(await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8'));
      const cert = new X509Certificate(body.certificate);
      expect(cert.subject).toBe(`CN=${nodeName}`);
      expect(cert.verify(new X509Certificate(body.ca_certificate).publicKey)).toBe(true);
      expect(cert.fingerprint256).toBe(body.fingerprint_sha256);
      // The trusted extension, carried by `puppetserver ca generate` from espm's per-call csr_attributes.
      expect(trustedExtensionValues(body.certificate)).toEqual({ '1.3.6.1.4.1.34380.1.1.13': ROLE });
      issued = body;
    });
  }, 120_000);

  it('the new server\'s first agent run applies the class with the console\'s parameter, sending no CSR', async () => {
    expect(issued).toBeDefined();
    const logBefore = await server.accessLog();
    // espm's `puppetserver ca generate` submitted one CSR of its own.
    expect(accessLines(logBefore, `certificate_request/${nodeName}`)).toHaveLength(1);
    const csrsBefore = accessLines(logBefore, 'certificate_request').length;

    const run = await timed('certificate into the agent ssldir + puppet agent --onetime', () => firstAgentRun(master, nodeName, issued));
    if (run.exitCode !== 2) {
      throw new Error(`agent exited ${run.exitCode} (expected 2)\n${run.stdout}\n${run.stderr}`);
    }
    expect(run.stdout).toContain(`motd applied: ${message}`);
    // The manifest sees the certificate's trusted extension.
    expect(run.stdout).toContain(`motd role: ${ROLE}`);
    expect(await readFile(motdFile, 'utf8')).toBe(`${message}\n`);

    const logAfter = await server.accessLog();
    expect(accessLines(logAfter, 'certificate_request')).toHaveLength(csrsBefore);
    expect(accessLines(logAfter, `/puppet/v3/catalog/${nodeName}`).length).toBeGreaterThanOrEqual(1);
  }, 120_000);

  it('termination: delete node + revoke certificate → 204 each; the agent is refused and the ENC forgets the node', async () => {
    await timed('DELETE /v1/nodes + /v1/certificates', async () => {
      expectStatus(await call('DELETE', `/v1/nodes/${nodeName}`), 204, `DELETE /v1/nodes/${nodeName}`);
      expectStatus(await call('DELETE', `/v1/certificates/${nodeName}`), 204, `DELETE /v1/certificates/${nodeName}`);
    });
    expect((await call('GET', `/v1/nodes/${nodeName}`)).status).toBe(404);
    expect((await call('GET', `/v1/certificates/${nodeName}`)).status).toBe(404);

    const cert = new X509Certificate(issued.certificate);
    const crl = await readFile(join(server.cadir, 'ca_crl.pem'), 'utf8');
    expect(await revokedSerials(crl)).toContain(cert.serialNumber.toUpperCase().replace(/^0+(?=.)/, ''));

    await rm(motdFile, { force: true });
    const refused = await timed('puppet agent after revoke (refused)', () => server.agent(nodeName, agentDir));
    if (refused.exitCode !== 1) {
      throw new Error(`agent exited ${refused.exitCode} (expected 1)\n${refused.stdout}\n${refused.stderr}`);
    }
    // The server's TLS layer refuses the revoked certificate (puppet-ca.md: `certificate unknown`).
    expect(`${refused.stdout}\n${refused.stderr}`).toMatch(/certificate (unknown|revoked)/);
    await expect(readFile(motdFile, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });

    const store = JSON.parse(await readFile(join(consoleDouble.dir, 'console.json'), 'utf8')) as { nodes: StoredNode[] };
    expect(store.nodes.map((n) => n.name)).not.toContain(nodeName);
    expect(store.nodes.map((n) => n.name)).toContain(baseName); // the other party's node stays
    expect((await enc(nodeName)).stdout).toBe('---\nclasses: []\n');
  }, 120_000);

  it('leaves what it did not create alone, and stops on SIGTERM with exit 0', async () => {
    await timed('checks of untouched state', async () => {
      const store = JSON.parse(await readFile(join(consoleDouble.dir, 'console.json'), 'utf8')) as { nodes: StoredNode[] };
      for (const name of PRE_EXISTING) {
        const node = store.nodes.find((n) => n.name === name);
        expect(JSON.stringify(node)).toBe(before.get(name)!.stored);
        expect((await enc(name)).stdout).toBe(before.get(name)!.enc);
      }

      const serverCert = join(server.ssldir, 'certs', 'localhost.pem');
      expect((await readFile(serverCert)).equals(serverCertBefore)).toBe(true);
      const verify = await execa(
        'openssl',
        ['verify', '-CAfile', join(server.ssldir, 'certs', 'ca.pem'), '-crl_check', '-CRLfile', join(server.cadir, 'ca_crl.pem'), serverCert],
        { reject: false, all: true },
      );
      expect(verify.all).toContain(': OK');
      // …and it is still the certificate the running server presents.
      const puppetCa = await readFile(join(server.ssldir, 'certs', 'ca.pem'), 'utf8');
      const presented = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            servername: 'localhost',
            port: server.port,
            path: '/status/v1/simple',
            // Jetty rejects a Host header that differs from the SNI name.
            headers: { host: `localhost:${server.port}` },
            ca: puppetCa, // verified against the Puppet CA (and the name localhost)
            agent: false,
          },
          (res) => {
            const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
            res.resume();
            res.on('end', () => resolve(fp));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(presented).toBe(new X509Certificate(serverCertBefore).fingerprint256);
    });

    await timed('espm SIGTERM → exit', async () => {
      const result = await stopEspmProcess(espm!);
      expect(result.exitCode).toBe(0);
    });
    expect(espmOut()).toContain('"msg":"stopped"');
    for (const secret of [announcement.psk, 'PRIVATE KEY']) expect(espmOut().includes(secret)).toBe(false);
  }, 120_000);
});
