/**
 * End to end (issue #5): the platform's launch and termination flow against a REAL puppetserver
 * (Debian packages, test/support/puppetserver.ts) whose ENC is the console double's
 * `external_node`, with bin/espm_setup and bin/espm run as child processes, as an operator does.
 *
 * Launch: espm_setup → espm → (platform, pinning espm's certificate) groups/classes → create
 * node (409 node_exists → timestamped name → 201) → certificate → the new server installs
 * cert + key + CA cert and runs `puppet agent --onetime`: the console's parameter reaches the
 * class as a top-scope variable and the agent never sends a CSR.
 * Termination: delete node + revoke certificate → the agent is refused and the ENC forgets it;
 * what espm did not create (seeded nodes, the server's certificate) is untouched.
 *
 * Needs `npm run build` (bin/espm runs dist/); `npm test` does it in its pretest step.
 * Never prints the PSK or a private key.
 */
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import ini from 'ini';
import { revokedSerials } from '../support/ca.js';
import { CONSOLE_EXTERNAL_NODE, CONSOLE_RAKEFILE, ConsoleDouble, findRake, type StoredNode } from '../support/console.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';
import { freePort } from '../support/net.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');
const ESPM_SETUP = join(ROOT, 'bin', 'espm_setup');

/** The group and class the platform puts the new server in: a group without classes (the
 * server has modules for `motd` only) and the `motd` class, which the test's module provides. */
const GROUP = 'no mcollective';
const CLASS = 'motd';
/** Nodes of the double's seed that espm did not create. */
const PRE_EXISTING = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'];

const availability = puppetserverAvailable();
const rake = await findRake();
const ruby = (await execa('/bin/sh', ['-c', 'command -v ruby'], { reject: false })).stdout.trim();
const skipReasons: string[] = [];
if (!availability.available) skipReasons.push(availability.reason ?? 'puppetserver is not available');
if (rake === undefined) skipReasons.push('rake is not installed (apt-get install ruby rake)');
if (skipReasons.length > 0) {
  console.warn(`SKIPPING the end-to-end launch test (issue #5): ${skipReasons.join('; ')}`);
}
const describeE2e = skipReasons.length === 0 ? describe : describe.skip;

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

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * What the operator pastes into the platform, read from espm_setup's stdout: the PSK (the line
 * after `Preshared Key:`), the PEM between `Certificate:` and `SHA-256 Fingerprint:`, and the
 * fingerprint. Errors never quote the output (it holds the PSK).
 */
function parseAnnouncement(stdout: string): { psk: string; certificate: string; fingerprint: string } {
  const psk = /^Preshared Key:\n(\S+)\n/m.exec(stdout)?.[1];
  const certStart = stdout.indexOf('Certificate:\n');
  const fpStart = stdout.indexOf('SHA-256 Fingerprint:\n');
  if (psk === undefined || certStart < 0 || fpStart < certStart) {
    throw new Error('espm_setup output lacks "Preshared Key:", "Certificate:" or "SHA-256 Fingerprint:"');
  }
  const certificate = `${stdout.slice(certStart + 'Certificate:\n'.length, fpStart).trim()}\n`;
  const fingerprint = stdout.slice(fpStart + 'SHA-256 Fingerprint:\n'.length).split('\n')[0]!.trim();
  return { psk, certificate, fingerprint };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  /** SHA-256 fingerprint of the certificate the server presented. */
  peerFingerprint: string;
}

/** The platform's HTTPS client: espm's certificate is the ONLY trusted CA (pinning). */
function platformClient(port: number, pinned: string, psk: string) {
  return (method: string, path: string, body?: unknown): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          method,
          ca: pinned,
          agent: false, // one connection per call: nothing kept alive across espm's SIGTERM drain
          headers: {
            authorization: `Bearer ${psk}`,
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const peerFingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            let parsed: Record<string, unknown> = {};
            if (text !== '') {
              try {
                parsed = JSON.parse(text) as Record<string, unknown>;
              } catch {
                parsed = { unparsed: text.slice(0, 200) };
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, peerFingerprint });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
}

/**
 * Asserts the status; on a mismatch the message carries only the problem fields (code, title,
 * detail) — never a whole body, which may hold a private key.
 */
function expectStatus(answer: Answer, expected: number, what: string): void {
  if (answer.status !== expected) {
    const { code, title, detail } = answer.body as { code?: unknown; title?: unknown; detail?: unknown };
    throw new Error(
      `${what}: expected HTTP ${expected}, got ${answer.status} ` + JSON.stringify({ code, title, detail }),
    );
  }
}

/** `web01-1.example.test` → `web01-1-<ms>.example.test`: the platform's retry on node_exists. */
function withTimestamp(name: string): string {
  const dot = name.indexOf('.');
  return `${name.slice(0, dot)}-${Date.now()}${name.slice(dot)}`;
}

function accessLines(log: string, needle: string): string[] {
  return log.split('\n').filter((line) => line.includes(needle));
}

describeE2e('launch and terminate a server through espm, on a real puppetserver (issue #5)', () => {
  let work: string;
  let consoleDouble: ConsoleDouble;
  let server: RealPuppetserver;
  let espm: ResultPromise | undefined;
  let espmOut = '';
  let espmErr = '';
  let espmPort: number;
  let announcement: ReturnType<typeof parseAnnouncement>;
  let call: ReturnType<typeof platformClient>;
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
  const enc = (certname: string) =>
    execa(CONSOLE_EXTERNAL_NODE, ['--dir', consoleDouble.dir, certname], { reject: false, stripFinalNewline: false });
  const storedNode = async (name: string): Promise<StoredNode | undefined> => consoleDouble.node(name);

  beforeAll(async () => {
    const started = Date.now();
    work = await mkdtemp(join(tmpdir(), 'espm-e2e-'));
    agentDir = join(work, 'agent');
    motdFile = join(agentDir, 'motd.txt');
    await mkdir(agentDir, { recursive: true });

    // The console double (seeded: its first rake task creates console.json).
    consoleDouble = await timed('console double seeded', async () => {
      const double = await ConsoleDouble.create();
      const store = await double.store();
      for (const name of PRE_EXISTING) {
        const node = store.nodes.find((n) => n.name === name);
        if (node === undefined) throw new Error(`seed lacks ${name}`);
        before.set(name, { stored: JSON.stringify(node), enc: '' });
      }
      return double;
    });
    for (const name of PRE_EXISTING) {
      const answer = await enc(name);
      if (answer.exitCode !== 0) throw new Error(`external_node ${name} exited ${answer.exitCode}: ${answer.stderr}`);
      before.get(name)!.enc = answer.stdout;
    }

    // The ENC puppetserver execs with the certname only: a wrapper pointing at the console dir.
    const wrapper = join(work, 'enc.sh');
    await writeFile(wrapper, `#!/bin/sh\nexec ${CONSOLE_EXTERNAL_NODE} --dir ${consoleDouble.dir} "$1"\n`);
    await chmod(wrapper, 0o755);

    // Console parameters reach Puppet as top-scope variables: the class defaults to $::motd_message.
    const motd = [
      'class motd (String $message = $::motd_message) {',
      `  file { '${motdFile}': ensure => file, content => "\${message}\\n" }`,
      "  notify { 'motd-applied': message => \"motd applied: ${message}\" }",
      '}',
      '',
    ].join('\n');
    server = await timed('puppetserver start (ca setup + JVM)', () =>
      startPuppetserver({ port: 0, enc: wrapper, modules: { motd } }),
    );
    serverCertBefore = await readFile(join(server.ssldir, 'certs', 'localhost.pem'));

    // espm_setup, as the operator runs it.
    espmPort = await freePort();
    const configDir = join(work, 'espm');
    const configPath = join(configDir, 'espm.ini');
    const setup = await timed('espm_setup', () =>
      execa(
        ESPM_SETUP,
        ['--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(espmPort),
          '-d', configDir, '-c', join(configDir, 'certs'), '--state-dir', join(work, 'state')],
        { reject: false },
      ),
    );
    if (setup.exitCode !== 0) throw new Error(`espm_setup exited ${setup.exitCode}: ${setup.stderr}`);
    announcement = parseAnnouncement(setup.stdout);

    // Point the config at the console double and the real CA; keep it 0600.
    const parsed = ini.parse(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    parsed['classifier'] = {
      ...parsed['classifier'],
      rake: rake!,
      rakefile: CONSOLE_RAKEFILE,
      cwd: consoleDouble.dir,
      rails_env: 'production',
      ...(ruby.startsWith('/') ? { ruby } : {}),
    };
    parsed['ca'] = {
      ...parsed['ca'],
      backend: 'puppetserver-ca',
      puppetserver: '/usr/bin/puppetserver',
      puppet: '/usr/bin/puppet',
      config: server.confPath,
      ssldir: server.ssldir,
    };
    await writeFile(configPath, ini.stringify(parsed), { mode: 0o600 });
    await chmod(configPath, 0o600);

    await timed('espm start (until "listening")', async () => {
      espm = execa(ESPM, ['-c', configPath], { reject: false });
      espm.stdout!.on('data', (chunk: Buffer) => (espmOut += chunk.toString()));
      espm.stderr!.on('data', (chunk: Buffer) => (espmErr += chunk.toString()));
      let exited = false;
      void espm.then(() => (exited = true));
      await waitFor(() => espmOut.includes('"msg":"listening"') || exited, 'espm to log "listening"');
      if (!espmOut.includes('"msg":"listening"')) throw new Error(`espm did not start: ${espmErr}`);
    });
    call = platformClient(espmPort, announcement.certificate, announcement.psk);
    timings.push(['beforeAll total', Date.now() - started]);
  }, 180_000);

  afterAll(async () => {
    if (espm !== undefined && espm.exitCode === undefined) espm.kill('SIGKILL');
    await espm;
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
      await expect(platformClient(espmPort, stranger.stdout, announcement.psk)('GET', '/v1/groups')).rejects.toThrow(
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
      const res = await call('POST', '/v1/certificates', { certname: nodeName });
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
      issued = body;
    });
  }, 120_000);

  it('the new server\'s first agent run applies the class with the console\'s parameter, sending no CSR', async () => {
    expect(issued).toBeDefined();
    await timed('install certificate into the agent ssldir', () =>
      server.installAgentCertificate(agentDir, nodeName, {
        certificate: issued.certificate,
        privateKey: issued.private_key,
        caCertificate: issued.ca_certificate,
      }),
    );
    const logBefore = await server.accessLog();
    // espm's `puppetserver ca generate` submitted one CSR of its own.
    expect(accessLines(logBefore, `certificate_request/${nodeName}`)).toHaveLength(1);
    const csrsBefore = accessLines(logBefore, 'certificate_request').length;

    const run = await timed('puppet agent --onetime (pre-generated cert)', () => server.agent(nodeName, agentDir));
    if (run.exitCode !== 2) {
      throw new Error(`agent exited ${run.exitCode} (expected 2)\n${run.stdout}\n${run.stderr}`);
    }
    expect(run.stdout).toContain(`motd applied: ${message}`);
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
      espm!.kill('SIGTERM');
      const result = await espm!;
      expect(result.exitCode).toBe(0);
    });
    expect(espmOut).toContain('"msg":"stopped"');
    for (const secret of [announcement.psk, 'PRIVATE KEY']) expect(espmOut.includes(secret)).toBe(false);
  }, 120_000);
});
