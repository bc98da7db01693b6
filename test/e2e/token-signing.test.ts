/**
 * End to end (issue #17): token signing on a real puppetserver — bin/espm_setup, bin/espm as a
 * child process (puppetserver-api CA), the policy executable espm_setup wrote run by
 * puppetserver as the unprivileged `puppet` user (setpriv, as Debian's unit runs the JVM), real
 * `puppet agent` runs and CSRs from openssl submitted to `PUT /puppet-ca/v1/certificate_request`
 * (which runs the policy exactly as an agent's request does). ONE puppetserver for the suite.
 *
 * Shows: a node's own CSR is signed with no private key in any answer and the manifest sees
 * `$trusted['extensions']['pp_role']`; every wrong CSR is refused (nothing signed) and removed,
 * after which the real node's CSR is signed; a used token, an expired token, a stopped daemon →
 * refused (and a token CSR left by the stopped daemon is signed when it is back); of N
 * concurrent CSRs with one token exactly one is signed; the site's previous policy still
 * decides for certnames espm holds nothing for.
 *
 * Needs `npm run build` (bin/espm runs dist/). Never prints the PSK or a private key.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { parse } from 'yaml';
import { describeWith } from '../support/components.js';
import { makeCsr, type CsrSpec } from '../support/csr.js';
import { editEspmConfig, runEspmSetup, startEspmProcess, stopEspmProcess, waitFor, type EspmProcess, type EspmSetup } from '../support/launch-story.js';
import { freePort } from '../support/net.js';
import { expectStatus, pinnedClient, type PinnedCall } from '../support/pinned-client.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../support/puppetserver.js';

const STAMP = Date.now();
const name = (prefix: string): string => `${prefix}-${STAMP}.example.test`;
const PP_ROLE = '1.3.6.1.4.1.34380.1.1.13';
const PP_ENV = '1.3.6.1.4.1.34380.1.1.12';
/** Seconds a token lives in this suite: the expired case waits it out at the end. */
const TTL_S = 40;

/** The site's previous policy: signs `legacy-ok-*`, refuses the rest; keeps the CSR it got. */
const FALLBACK_SCRIPT = (logDir: string): string => `#!/bin/sh
cat > ${logDir}/"$1".csr
case "$1" in legacy-ok-*) exit 0 ;; *) echo "fallback policy refuses $1" >&2; exit 1 ;; esac
`;

describeWith('puppetserver + puppet-agent + openssl (Debian packages)', puppetserverAvailable().reason)('token signing on a real puppetserver (issue #17)', () => {
  let work: string;
  let master: RealPuppetserver;
  let setup: EspmSetup;
  let espm: EspmProcess | undefined;
  let call: PinnedCall;
  let ca: Agent;
  let caPem: string;
  let expiring: { certname: string; challenge: string; at: number };
  const answers: string[] = [];

  const order = async (certname: string, extra: Record<string, unknown> = {}) => {
    const answer = await call('POST', '/v1/certificates', { certname, signing: 'token', extensions: { pp_role: 'web' }, ...extra });
    answers.push(JSON.stringify(answer.body));
    expectStatus(answer, 201, `token for ${certname}`);
    return answer.body as { certname: string; challenge_password: string; expires_at: string; ca_certificate: string; csr_attributes: string; signing: string };
  };
  const puppetCa = async (method: 'GET' | 'PUT', path: string, body?: string) => {
    const answer = await request(`https://127.0.0.1:${master.port}/puppet-ca/v1${path}`, {
      method,
      dispatcher: ca,
      // puppetserver's Jetty wants the Host header to match the SNI name (its certificate's, localhost).
      headers: { host: `localhost:${master.port}`, ...(body === undefined ? {} : { 'content-type': 'text/plain' }) },
      ...(body === undefined ? {} : { body }),
    });
    return { status: answer.statusCode, text: await answer.body.text() };
  };
  const submit = (certname: string, csr: string) => puppetCa('PUT', `/certificate_request/${certname}`, csr);
  const signedCertificate = async (certname: string): Promise<string | undefined> => {
    const answer = await puppetCa('GET', `/certificate/${certname}`);
    return answer.status === 200 ? answer.text : undefined;
  };
  const pending = async (certname: string): Promise<boolean> => (await puppetCa('GET', `/certificate_request/${certname}`)).status === 200;
  /** espm removes a CSR it refused for a token name: waits until the CA holds none. */
  const removed = async (certname: string): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (await pending(certname)) {
      if (Date.now() > deadline) throw new Error(`the refused CSR of ${certname} is still at the CA`);
      await sleep(200);
    }
  };
  const csrFor = (spec: CsrSpec) => makeCsr(spec);
  const refusedAndRemoved = async (certname: string, spec: CsrSpec): Promise<void> => {
    await submit(certname, (await csrFor(spec)).csr);
    expect(await signedCertificate(certname)).toBeUndefined();
    await removed(certname);
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'espm-e2e-token-'));
    // puppetserver's user must reach <work>/autosign (espm_setup makes it root:puppet 0750).
    await chmod(work, 0o755);
    const logDir = join(work, 'fallback-log');
    await mkdir(logDir, { mode: 0o777 });
    await chmod(logDir, 0o777);
    await writeFile(join(work, 'fallback.sh'), FALLBACK_SCRIPT(logDir), { mode: 0o755 });
    setup = await runEspmSetup(work, await freePort());
    const policy = join(work, 'autosign', 'policy');
    expect(setup.stderr).toContain(`autosign = ${policy}`);
    // puppetserver here runs as root; the policy runs as `puppet`, as under Debian's unit.
    const asPuppet = join(work, 'autosign-as-puppet.sh');
    await writeFile(asPuppet, `#!/bin/sh\nexec /usr/bin/setpriv --reuid=puppet --regid=puppet --init-groups ${policy} "$1"\n`, { mode: 0o755 });
    master = await startPuppetserver({ port: 0, allowSubjectAltNames: true, autosign: asPuppet });
    await writeFile(join(master.dir, 'code', 'environments', 'production', 'manifests', 'site.pp'), 'notify { "role=${trusted[\'extensions\'][\'pp_role\']}": }\n');
    caPem = await readFile(join(master.ssldir, 'certs', 'ca.pem'), 'utf8');
    ca = new Agent({ connect: { ca: caPem, servername: 'localhost' } });
    await editEspmConfig(setup.configPath, {
      ca: { backend: 'puppetserver-api', puppet: '/usr/bin/puppet', config: master.confPath, key_bits: '2048', key_pool: '0' },
      autosign: { token_ttl: String(TTL_S), fallback: join(work, 'fallback.sh') },
    });
    espm = await startEspmProcess(setup.configPath, 30_000);
    call = pinnedClient({ port: setup.port, certificate: setup.certificate, psk: setup.psk });
    await waitFor(() => existsSync(join(work, 'autosign', 'espm.sock')), 'the autosign socket', 20_000);
    const certname = name('expiring');
    expiring = { certname, challenge: (await order(certname)).challenge_password, at: Date.now() };
  }, 300_000);

  afterAll(async () => {
    if (espm !== undefined) await stopEspmProcess(espm);
    await ca?.close();
    await master?.stop();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it('a real agent makes its own key; its CSR is signed, its manifest sees pp_role, no answer holds a private key', async () => {
    const certname = name('web');
    const agentDir = join(work, 'agent-web');
    const body = await order(certname, { dns_alt_names: ['web-alias.example.test'] });
    expect(body).toEqual(expect.objectContaining({ certname, signing: 'token', ca_certificate: caPem }));
    expect(body).not.toHaveProperty('private_key');
    expect(body).not.toHaveProperty('certificate');
    expect(parse(body.csr_attributes)).toEqual({ custom_attributes: { '1.2.840.113549.1.9.7': body.challenge_password }, extension_requests: { pp_role: 'web' } });
    expect((await call('GET', `/v1/certificates/${certname}`)).body).toEqual(expect.objectContaining({ state: 'awaiting_csr', signing: 'token' }));
    await mkdir(join(agentDir, 'etc'), { recursive: true });
    await writeFile(join(agentDir, 'etc', 'csr_attributes.yaml'), body.csr_attributes);
    await writeFile(join(agentDir, 'etc', 'puppet.conf'), '[main]\ndns_alt_names = web-alias.example.test\n');
    const run = await master.agent(certname, agentDir);
    expect({ exit: run.exitCode, out: run.stdout }).toEqual({ exit: 2, out: expect.stringContaining('role=web') });
    const pem = await signedCertificate(certname);
    const x509 = new X509Certificate(pem!);
    expect(x509.subjectAltName).toContain('DNS:web-alias.example.test');
    const got = await call('GET', `/v1/certificates/${certname}`);
    answers.push(JSON.stringify(got.body));
    expect(got.body).toEqual(expect.objectContaining({ state: 'signed', fingerprint_sha256: x509.fingerprint256 }));
    for (const answer of answers) expect(answer).not.toMatch(/PRIVATE KEY/);
  }, 180_000);

  it('a real agent with a wrong token is refused; its CSR is removed; the same node with the right token is signed', async () => {
    const certname = name('agent-refused');
    const agentDir = join(work, 'agent-refused');
    const body = await order(certname);
    await mkdir(join(agentDir, 'etc'), { recursive: true });
    await writeFile(join(agentDir, 'etc', 'csr_attributes.yaml'), body.csr_attributes.replace(body.challenge_password, 'f'.repeat(48)));
    const refused = await master.agent(certname, agentDir);
    expect(refused.exitCode).toBe(1);
    expect(await signedCertificate(certname)).toBeUndefined();
    await removed(certname);
    await rm(join(agentDir, 'ssl'), { recursive: true, force: true });
    await writeFile(join(agentDir, 'etc', 'csr_attributes.yaml'), body.csr_attributes);
    expect((await master.agent(certname, agentDir)).exitCode).toBe(2);
  }, 180_000);

  it('refuses and removes every CSR that does not match exactly; then signs the real one; a used token is refused', async () => {
    const certname = name('direct');
    const { challenge_password: challenge } = await order(certname, { dns_alt_names: ['alias.example.test'] });
    const other = await order(name('other'));
    const good: CsrSpec = { certname, challenge, altNames: [`DNS:${certname}`, 'DNS:alias.example.test'], extensions: { [PP_ROLE]: 'web' } };
    await refusedAndRemoved(certname, { ...good, challenge: 'a'.repeat(48) }); // wrong token
    await refusedAndRemoved(certname, { ...good, challenge: other.challenge_password }); // another certname's token
    await refusedAndRemoved(certname, { ...good, extensions: { [PP_ROLE]: 'web', [PP_ENV]: 'production' } }); // extension not asked for
    await refusedAndRemoved(certname, { ...good, altNames: [...good.altNames!, 'DNS:evil.example.test'] }); // alt name not asked for
    await refusedAndRemoved(certname, { ...good, extensions: {} }); // extension asked for, missing
    await refusedAndRemoved(certname, { ...good, altNames: [`DNS:${certname}`] }); // alt name asked for, missing
    const real = await csrFor(good);
    await submit(certname, real.csr);
    const pem = await signedCertificate(certname);
    expect(pem).toBeDefined();
    expect(new X509Certificate(pem!).publicKey.equals(createPublicKey(real.key))).toBe(true);
    // The certificate goes (out of band); the used token cannot sign a second CSR.
    expect((await master.caCli(['clean', '--certname', certname])).exitCode).toBe(0);
    await submit(certname, (await csrFor(good)).csr);
    expect(await signedCertificate(certname)).toBeUndefined();
  }, 180_000);

  it('of 5 concurrent CSRs with one token exactly one is signed', async () => {
    const certname = name('race');
    const { challenge_password: challenge } = await order(certname, { extensions: {} });
    const csrs = await Promise.all(Array.from({ length: 5 }, () => csrFor({ certname, challenge })));
    await Promise.all(csrs.map((c) => submit(certname, c.csr)));
    const pem = await signedCertificate(certname);
    expect(pem).toBeDefined();
    const key = new X509Certificate(pem!).publicKey;
    expect(csrs.filter((c) => key.equals(createPublicKey(c.key)))).toHaveLength(1);
  }, 120_000);

  it('the previous policy still decides for certnames espm holds nothing for, with the CSR on its stdin', async () => {
    const yes = name('legacy-ok');
    const no = name('legacy-no');
    const csr = (await csrFor({ certname: yes })).csr;
    await submit(yes, csr);
    expect(await signedCertificate(yes)).toBeDefined();
    expect(await readFile(join(work, 'fallback-log', `${yes}.csr`), 'utf8')).toBe(csr);
    await submit(no, (await csrFor({ certname: no })).csr);
    expect(await signedCertificate(no)).toBeUndefined();
    await sleep(1500);
    expect(await pending(no)).toBe(true); // not espm's name: its CSR is left alone
  }, 120_000);

  it('an expired token is refused and purged', async () => {
    await sleep(Math.max(0, expiring.at + TTL_S * 1000 + 1000 - Date.now()));
    const { certname, challenge } = expiring;
    await submit(certname, (await csrFor({ certname, challenge, extensions: { [PP_ROLE]: 'web' } })).csr);
    expect(await signedCertificate(certname)).toBeUndefined();
    expect((await call('GET', `/v1/certificates/${certname}`)).status).toBe(404);
  }, 120_000);

  it('daemon stopped → every CSR is refused; started again, espm signs the waiting token CSR and leaves the other', async () => {
    const certname = name('stopped');
    const { challenge_password: challenge } = await order(certname);
    await stopEspmProcess(espm!);
    espm = undefined;
    const node = await csrFor({ certname, challenge, extensions: { [PP_ROLE]: 'web' } });
    await submit(certname, node.csr);
    expect(await signedCertificate(certname)).toBeUndefined();
    const yes = name('legacy-ok-stopped');
    await submit(yes, (await csrFor({ certname: yes })).csr);
    expect(await signedCertificate(yes)).toBeUndefined();
    espm = await startEspmProcess(setup.configPath, 30_000);
    const deadline = Date.now() + 20_000;
    while ((await signedCertificate(certname)) === undefined && Date.now() < deadline) await sleep(250);
    const pem = await signedCertificate(certname);
    expect(pem).toBeDefined();
    expect(new X509Certificate(pem!).publicKey.equals(createPublicKey(node.key))).toBe(true);
    expect(await signedCertificate(yes)).toBeUndefined();
    expect(await pending(yes)).toBe(true);
  }, 120_000);
});
