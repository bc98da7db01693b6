/**
 * Proves test/support/puppetserver.ts against a real Puppet Server: CA CLI generate, the cert
 * verifies against the CA, an agent with the pre-generated cert gets the ENC's class applied,
 * clean makes the server refuse the agent.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';

const NODE = 'node1.example.test';
const SAN_NODE = 'san1.example.test';

const availability = puppetserverAvailable();
if (!availability.available) {
  console.warn(`SKIPPING real puppetserver harness test: ${availability.reason}`);
}
const describeReal = availability.available ? describe : describe.skip;

/** VmRSS of a process in kB, or undefined. */
function rssKb(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

describeReal('real puppetserver harness', () => {
  let server: RealPuppetserver;
  let work: string;
  let agentDir: string;
  const timings: Record<string, number | string | undefined> = {};

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'espm-harness-test-'));
    agentDir = path.join(work, 'agent');
    const enc = path.join(work, 'enc.sh');
    await writeFile(
      enc,
      `#!/bin/sh
case "$1" in
  ${NODE}) printf -- '---\\nclasses:\\n  motd:\\n    message: "hello from ENC for %s"\\nenvironment: production\\nparameters:\\n  enc_source: test\\n' "$1" ;;
  *) printf -- '---\\nclasses: {}\\n' ;;
esac
`,
    );
    await chmod(enc, 0o755);
    const motd = `class motd (String $message = 'default') {
  notify { 'motd-applied': message => "motd class applied: \${message} (enc_source=\${::enc_source})" }
  file { '${path.join(agentDir, 'motd.txt')}': ensure => file, content => "\${message}\\n" }
}
`;
    server = await startPuppetserver({ enc, modules: { motd }, allowSubjectAltNames: true });
    timings.startMs = server.startupMs;
    timings.rssKbAfterStart = rssKb(server.pid);
  }, 180_000);

  afterAll(async () => {
    if (server) {
      timings.rssKbAtEnd = rssKb(server.pid);
      const stopStarted = Date.now();
      await server.stop();
      timings.stopMs = Date.now() - stopStarted;
      await server.stop(); // idempotent
      expect(existsSync(`/proc/${server.pid}`)).toBe(false);
      if (!process.env.ESPM_KEEP_PUPPETSERVER) expect(existsSync(server.dir)).toBe(false);
    }
    if (work && !process.env.ESPM_KEEP_PUPPETSERVER) await rm(work, { recursive: true, force: true });
    console.log(`puppetserver harness timings: ${JSON.stringify(timings)}`);
  }, 60_000);

  test('server is up on the chosen port with the configured paths', async () => {
    expect(server.port).toBeGreaterThan(0);
    const conf = await readFile(server.confPath, 'utf8');
    expect(conf).toContain(`masterport = ${server.port}`);
    expect(conf).toContain(`ssldir = ${server.ssldir}`);
    expect(conf).toContain('node_terminus = exec');
    expect(existsSync(path.join(server.ssldir, 'certs', 'ca.pem'))).toBe(true);
    expect(existsSync(path.join(server.cadir, 'ca_crt.pem'))).toBe(true);
  });

  test('ca generate issues a certificate that verifies against certs/ca.pem', async () => {
    const generated = await server.caCli(['generate', '--certname', NODE]);
    timings.generateMs = generated.durationMs;
    expect({ code: generated.exitCode, out: generated.stdout }).toMatchObject({ code: 0 });
    expect(generated.stdout).toContain(`Successfully saved certificate for ${NODE}`);

    const again = await server.caCli(['generate', '--certname', NODE]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain('Existing file at');

    const verify = await execa(
      'openssl',
      ['verify', '-CAfile', path.join(server.ssldir, 'certs', 'ca.pem'), path.join(server.ssldir, 'certs', `${NODE}.pem`)],
      { reject: false },
    );
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout).toContain(': OK');
  }, 60_000);

  test('allowSubjectAltNames lets generate --subject-alt-names succeed', async () => {
    const generated = await server.caCli(['generate', '--certname', SAN_NODE, '--subject-alt-names', 'alt1.example.test']);
    expect({ code: generated.exitCode, err: generated.stderr }).toMatchObject({ code: 0 });
    const text = await execa('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', path.join(server.ssldir, 'certs', `${SAN_NODE}.pem`)]);
    expect(text.stdout).toContain('DNS:alt1.example.test');
  }, 60_000);

  test('an agent with the pre-generated certificate gets the ENC class applied (exit 2)', async () => {
    await server.installAgentCertificate(agentDir, NODE, {
      certificate: await readFile(path.join(server.ssldir, 'certs', `${NODE}.pem`), 'utf8'),
      privateKey: await readFile(path.join(server.ssldir, 'private_keys', `${NODE}.pem`), 'utf8'),
      caCertificate: await readFile(path.join(server.ssldir, 'certs', 'ca.pem'), 'utf8'),
      crl: await readFile(path.join(server.ssldir, 'crl.pem'), 'utf8'),
    });
    const run = await server.agent(NODE, agentDir);
    timings.agentRunMs = run.durationMs;
    expect({ code: run.exitCode, out: run.stdout, err: run.stderr }).toMatchObject({ code: 2 });
    expect(run.stdout).toContain(`motd class applied: hello from ENC for ${NODE} (enc_source=test)`);
    expect(await readFile(path.join(agentDir, 'motd.txt'), 'utf8')).toBe(`hello from ENC for ${NODE}\n`);

    // The agent sent no CSR: the only certificate_request lines come from the CA CLI's generates.
    const csrLines = (await server.accessLog()).split('\n').filter((l) => l.includes('certificate_request'));
    expect(csrLines.length).toBe(2); // NODE and SAN_NODE
  }, 120_000);

  test('after ca clean the agent is refused (exit 1)', async () => {
    const clean = await server.caCli(['clean', '--certname', NODE]);
    timings.cleanMs = clean.durationMs;
    expect({ code: clean.exitCode, out: clean.stdout, err: clean.stderr }).toMatchObject({ code: 0 });
    expect(clean.stdout).toContain(`Cleaned files related to ${NODE}`);

    // clean leaves the copies generate wrote into the server ssldir.
    for (const sub of ['certs', 'private_keys', 'public_keys']) {
      const file = path.join(server.ssldir, sub, `${NODE}.pem`);
      expect(existsSync(file)).toBe(true);
      await rm(file, { force: true });
    }

    const run = await server.agent(NODE, agentDir);
    timings.refusedAgentRunMs = run.durationMs;
    expect({ code: run.exitCode, out: run.stdout, err: run.stderr }).toMatchObject({ code: 1 });
    expect(`${run.stdout}\n${run.stderr}`).toMatch(/certificate (unknown|revoked)/i);
  }, 120_000);
});
