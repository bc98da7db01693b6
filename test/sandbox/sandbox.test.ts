/**
 * The sandbox backends (issue #5) over HTTPS, with `[classifier] backend = sandbox` and
 * `[ca] backend = sandbox` — and not one process spawned — plus the adapters' own behaviour
 * and their state across a restart. The classification story every backend tells is
 * test/classifier/classification.test.ts, the Classifier contract test/classifier/contract.test.ts
 * (the sandbox is one entry of each); here is what only the sandbox does.
 */
import { access, readdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaError, CertificateExistsError } from '../../src/ca/authority.js';
import { certificateInfo } from '../../src/ca/certificate-info.js';
import { SandboxCertificateAuthority, sandboxCaFiles, serialHex } from '../../src/ca/sandbox.js';
import { ClassifierError, NodeExistsError } from '../../src/classifier/classifier.js';
import { SandboxClassifier, seedStore, type SandboxStore } from '../../src/classifier/sandbox.js';
import { parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { SANDBOX_WARNING, warnAboutSandboxes } from '../../src/compose.js';
import { opensslChecks } from '../support/ca.js';
import { apiClient, LogCapture, setUpDir, startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';

const SANDBOX = { classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } };

/** The seed's lists, sorted (a PE 2.5 console, as the console double's). */
const SEED_GROUPS = ['default', 'legacy_web', 'mcollective', 'no mcollective', 'puppet_console', 'puppet_master', 'webservers'];
const SEED_CLASSES = ['apache', 'apache::vhost', 'motd', 'ntp', 'pe_accounts', 'pe_compliance', 'pe_mcollective'];
const DB_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;

async function consoleStore(stateDir: string): Promise<SandboxStore> {
  return JSON.parse(await readFile(join(stateDir, 'sandbox', 'console.json'), 'utf8')) as SandboxStore;
}

async function revokedRecord(stateDir: string): Promise<Array<{ serial: string; certname: string; fingerprint_sha256: string; revoked_at: string }>> {
  const text = await readFile(sandboxCaFiles(stateDir).revoked, 'utf8');
  return (JSON.parse(text) as { revoked: Array<{ serial: string; certname: string; fingerprint_sha256: string; revoked_at: string }> }).revoked;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('sandbox backends over HTTPS: no process spawned', () => {
  let espm: RunningEspm;
  let runner: CountingRunner;
  let api: ReturnType<typeof apiClient>;
  let stateDir: string;
  /** The same sandbox console and CA, used directly as an operator would (not through espm). */
  let console: SandboxClassifier;
  let ca: SandboxCertificateAuthority;

  beforeAll(async () => {
    runner = new CountingRunner();
    espm = await startEspm(SANDBOX, { runner });
    api = apiClient(espm);
    stateDir = espm.config.state.dir;
    console = new SandboxClassifier(stateDir);
    ca = new SandboxCertificateAuthority(stateDir);
  });
  afterAll(async () => {
    await espm.stop();
  });

  it('logs at start-up that the sandbox backends are not for production', () => {
    const warning = espm.logs.records().find((r) => typeof r['msg'] === 'string' && r['msg'].startsWith(SANDBOX_WARNING));
    expect(warning).toMatchObject({
      level: 40,
      backends: ['[classifier] backend = sandbox', '[ca] backend = sandbox'],
      state: join(stateDir, 'sandbox'),
    });
    expect(warning!['msg']).toBe(
      `${SANDBOX_WARNING}: [classifier] backend = sandbox, [ca] backend = sandbox ` +
        `(their nodes and certificates exist only in ${join(stateDir, 'sandbox')}; no Puppet master knows them)`,
    );
  });

  it('GET /v1/status names the sandbox backends', async () => {
    const res = await api.get('/v1/status');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } });
  });

  it('lists groups and classes exactly as the seed has them, sorted; the store is the seed', async () => {
    const groups = await api.get('/v1/groups?refresh=true');
    expect(groups.status).toBe(200);
    expect(groups.body).toEqual({ groups: SEED_GROUPS });
    const classes = await api.get('/v1/classes?refresh=true');
    expect(classes.body).toEqual({ classes: SEED_CLASSES });
    expect(await consoleStore(stateDir)).toEqual(seedStore());
  });

  it('creates a node as the console stores it: next id, Rails timestamps, nothing else changed, served by its ENC', async () => {
    const name = 'web01.example.test';
    const parameters = { motd_message: 'hello, world = yes', role: 'web' };
    const res = await api.post('/v1/nodes', { name, groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters });
    expect(res.status).toBe(201);
    const store = await consoleStore(stateDir);
    expect(store.nodes.find((n) => n.name === name)).toEqual({
      id: 4,
      name,
      groups: ['default', 'no mcollective'],
      classes: ['ntp', 'apache::vhost'],
      parameters: [
        ['motd_message', 'hello, world = yes'],
        ['role', 'web'],
      ],
      created_at: expect.stringMatching(DB_TIME),
      updated_at: expect.stringMatching(DB_TIME),
    });
    const seed = seedStore();
    expect(store.nodes.filter((n) => n.name !== name)).toEqual(seed.nodes);
    expect(store.node_groups).toEqual(seed.node_groups);
    expect(store.node_classes).toEqual(seed.node_classes);
    expect(await console.externalNode(name)).toEqual({ name, classes: ['motd', 'ntp', 'apache::vhost'], parameters });
  });

  it('issues a verifiable certificate + key (CN, SANs, EKU, trusted extensions, 5 years); keeps the certificate, never the key', async () => {
    const certname = 'web01.example.test';
    const extensions = { pp_role: 'web', '1.3.6.1.4.1.34380.1.2.1': 'private' };
    const res = await api.post('/v1/certificates', { certname, dns_alt_names: ['www.example.test'], extensions });
    expect(res.status).toBe(201);
    expect(res.headers['location']).toBe(`/v1/certificates/${certname}`);
    expect(Object.keys(res.body).sort()).toEqual(['ca_certificate', 'certificate', 'certname', 'fingerprint_sha256', 'not_after', 'private_key']);
    for (const pem of [res.body.certificate, res.body.private_key, res.body.ca_certificate] as string[]) {
      expect(pem).not.toContain('\r');
      expect(pem.endsWith('\n')).toBe(true);
    }
    const checks = await opensslChecks(res.body);
    expect(checks.verify).toContain('OK');
    expect(checks.keyMatches).toBe(true);
    expect(checks.text).toMatch(/Subject: CN ?= ?web01\.example\.test/);
    expect(checks.text).toMatch(/Issuer: CN ?= ?Puppet CA: espm sandbox/);
    expect(checks.text).toMatch(/DNS:web01\.example\.test, DNS:www\.example\.test/);
    expect(checks.text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(checks.text).toMatch(/Public-Key: \(2048 bit\)/);
    // Puppet's encoding: a DER UTF8String (0C 03 "web") that openssl prints as `..web`.
    expect(checks.text).toMatch(/1\.3\.6\.1\.4\.1\.34380\.1\.1\.13:\s*\n\s*\.\.web\n/);
    expect(checks.text).toMatch(/1\.3\.6\.1\.4\.1\.34380\.1\.2\.1:\s*\n\s*\.\.private\n/);
    const years = (Date.parse(res.body.not_after as string) - Date.now()) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(4.99);
    expect(years).toBeLessThan(5.01);

    const files = sandboxCaFiles(stateDir);
    expect(await readFile(files.signed(certname), 'utf8')).toBe(res.body.certificate);
    expect(await readFile(files.caCertificate, 'utf8')).toBe(res.body.ca_certificate);
    // The only private key kept is the CA's.
    for (const file of [...(await readdir(files.dir)), ...(await readdir(files.signedDir)).map((f) => join('signed', f))]) {
      if (file === 'signed' || file === 'ca_key.pem') continue;
      expect([file, await readFile(join(files.dir, file), 'utf8')]).toEqual([file, expect.not.stringContaining('PRIVATE KEY')]);
    }
    expect(espm.logs.text()).not.toContain('PRIVATE KEY');

    const meta = await api.get(`/v1/certificates/${certname}`);
    expect(meta.status).toBe(200);
    expect(meta.body).toEqual({
      certname,
      fingerprint_sha256: res.body.fingerprint_sha256,
      not_after: res.body.not_after,
      serial: expect.stringMatching(/^[0-9A-F]+$/),
      dns_alt_names: ['www.example.test'],
      extensions,
      created_at: expect.any(String),
    });
  });

  it('409 certificate_exists for a second POST', async () => {
    expect((await api.post('/v1/certificates', { certname: 'a.example.test' })).status).toBe(201);
    const again = await api.post('/v1/certificates', { certname: 'a.example.test' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('certificate_exists');
  });

  it('DELETE revokes (serial recorded in revoked.json) and cleans; POST of the same name then succeeds', async () => {
    const certname = 'd.example.test';
    const issued = (await api.post('/v1/certificates', { certname })).body as { fingerprint_sha256: string };
    const { serial } = (await api.get(`/v1/certificates/${certname}`)).body as { serial: string };
    const del = await api.delete(`/v1/certificates/${certname}`);
    expect(del.status).toBe(204);
    expect((await revokedRecord(stateDir)).filter((r) => r.certname === certname)).toEqual([
      { serial, certname, fingerprint_sha256: issued.fingerprint_sha256, revoked_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) },
    ]);
    expect(await exists(sandboxCaFiles(stateDir).signed(certname))).toBe(false);
    expect((await api.get(`/v1/certificates/${certname}`)).status).toBe(404);
    expect((await api.delete(`/v1/certificates/${certname}`)).status).toBe(404);
    const again = await api.post('/v1/certificates', { certname });
    expect(again.status).toBe(201);
    expect(again.body.fingerprint_sha256).not.toBe(issued.fingerprint_sha256);
    const newSerial = (await api.get(`/v1/certificates/${certname}`)).body.serial as string;
    expect(BigInt(`0x${newSerial}`)).toBeGreaterThan(BigInt(`0x${serial}`));
  });

  it('DELETE of a certificate the sandbox CA issued directly (not through espm) → 404, and it stays; POST → 409', async () => {
    const certname = 'other.example.test';
    const theirs = await ca.issue({ certname, dnsAltNames: [], extensions: [] });
    const fingerprint = certificateInfo(theirs.certificate).fingerprint_sha256;
    const res = await api.delete(`/v1/certificates/${certname}`);
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('certificate_not_found');
    expect(await ca.currentFingerprint(certname)).toBe(fingerprint);
    expect((await ca.revocations()).map((r) => r.certname)).not.toContain(certname);
    const post = await api.post('/v1/certificates', { certname });
    expect(post.status).toBe(409);
    expect(post.body.code).toBe('certificate_exists');
    expect(post.body.detail).toContain(`A Certificate already exists for ${certname}`);
    expect(await ca.currentFingerprint(certname)).toBe(fingerprint);
    expect((await opensslChecks({ certificate: theirs.certificate, private_key: theirs.privateKey, ca_certificate: theirs.caCertificate })).verify).toContain('OK');
  });

  it("never revokes a certificate re-issued under espm's name by someone else: 409, left alone", async () => {
    const certname = 'e.example.test';
    expect((await api.post('/v1/certificates', { certname })).status).toBe(201);
    expect(await ca.revoke(certname)).toBe('revoked');
    const theirs = await ca.issue({ certname, dnsAltNames: [], extensions: [] });
    const res = await api.delete(`/v1/certificates/${certname}`);
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('ownership_uncertain');
    expect(await ca.currentFingerprint(certname)).toBe(certificateInfo(theirs.certificate).fingerprint_sha256);
  });

  it('records every certificate with increasing serials in inventory.txt', async () => {
    const lines = (await readFile(sandboxCaFiles(stateDir).inventory, 'utf8')).trim().split('\n');
    const serials = lines.map((l) => BigInt(l.split(' ')[0]!));
    expect(serials[0]).toBe(2n);
    expect(serials).toEqual([...serials].sort((a, b) => (a < b ? -1 : 1)));
    expect(new Set(serials).size).toBe(serials.length);
    for (const line of lines) expect(line).toMatch(/^0x[0-9A-F]{4,} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dUTC \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dUTC \/CN=[a-z0-9.-]+$/);
  });

  it('spawned no process during the whole story', () => {
    expect(runner.count).toBe(0);
  });
});

describe('the sandbox console (SandboxClassifier)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-sandbox-console-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates its store from the seed on first use only', async () => {
    const sandbox = new SandboxClassifier(dir);
    expect(await exists(join(dir, 'sandbox'))).toBe(false);
    expect(await sandbox.listGroups()).toEqual(SEED_GROUPS);
    expect(await consoleStore(dir)).toEqual(seedStore());
    expect(await sandbox.listClasses()).toEqual(SEED_CLASSES);
    expect(await sandbox.unstorableParameters({ a: 'a,b=c\\d' })).toEqual({});
  });

  it('keeps its state across a restart (a new instance on the same state dir)', async () => {
    const first = new SandboxClassifier(dir, { now: () => Date.UTC(2024, 4, 1, 10, 0, 0) });
    expect(await first.create({ name: 'web01.example.test', groups: ['webservers'], classes: ['ntp'], parameters: { role: 'web' } })).toEqual({});
    await first.delete('db01.example.com', null);
    const second = new SandboxClassifier(dir);
    expect(await second.node('web01.example.test')).toEqual({
      id: 4,
      name: 'web01.example.test',
      groups: ['webservers'],
      classes: ['ntp'],
      parameters: [['role', 'web']],
      created_at: '2024-05-01 10:00:00',
      updated_at: '2024-05-01 10:00:00',
    });
    expect(await second.node('db01.example.com')).toBeUndefined();
    await second.create({ name: 'web02.example.test', groups: [], classes: [], parameters: {} });
    expect((await new SandboxClassifier(dir).node('web02.example.test'))!.id).toBe(5);
  });

  it('node names are unique case-insensitively (trailing spaces ignored); Node already exists!', async () => {
    const sandbox = new SandboxClassifier(dir);
    for (const name of ['master.example.com', 'MASTER.Example.com', 'master.example.com  ']) {
      await expect(sandbox.create({ name, groups: [], classes: [], parameters: {} })).rejects.toEqual(new NodeExistsError('Node already exists!'));
    }
    await expect(sandbox.create({ name: '', groups: [], classes: [], parameters: {} })).rejects.toBeInstanceOf(ClassifierError);
    expect((await consoleStore(dir)).nodes).toHaveLength(3);
  });

  it('stores the console spelling of groups and classes, once, and drops unknown ones (as the console)', async () => {
    const sandbox = new SandboxClassifier(dir);
    await sandbox.create({ name: 'n.example.test', groups: ['Default', 'default', 'nosuch'], classes: ['NTP', 'nosuch'], parameters: {} });
    expect(await sandbox.node('n.example.test')).toMatchObject({ groups: ['default'], classes: ['ntp'] });
  });

  it('delete: absent for unknown names (case-insensitive look-up); setParameters on an unknown node fails', async () => {
    const sandbox = new SandboxClassifier(dir);
    expect(await sandbox.delete('nosuch.example.test', null)).toBe('absent');
    await expect(sandbox.setParameters('nosuch.example.test', { a: 'b' })).rejects.toMatchObject({
      name: 'ClassifierError',
      failure: 'failed',
      output: "Node nosuch.example.test doesn't exist!",
    });
    expect(await sandbox.delete('WEB-LEGACY.example.com', null)).toBe('deleted');
    expect(await sandbox.node('web-legacy.example.com')).toBeUndefined();
  });

  it('setParameters as node:variables: first row updated, duplicates removed, others kept', async () => {
    const sandbox = new SandboxClassifier(dir);
    await sandbox.setParameters('web-legacy.example.com', { motd_message: 'new', extra: 'x,y' });
    expect((await sandbox.node('web-legacy.example.com'))!.parameters).toEqual([
      ['http_port', '8081'],
      ['motd_message', 'new'],
      ['extra', 'x,y'],
    ]);
  });

  it('externalNode: group classes then own, group parameters overridden by own; unknown → no classes; conflicts fail', async () => {
    const sandbox = new SandboxClassifier(dir);
    expect(await sandbox.externalNode('web-legacy.example.com')).toEqual({
      name: 'web-legacy.example.com',
      classes: ['motd', 'apache', 'apache::vhost'],
      parameters: { motd_message: 'legacy web server', http_port: '8081', vhost_docroot: '/srv/www' },
    });
    expect(await sandbox.externalNode('master.example.com')).toEqual({
      name: 'master.example.com',
      classes: ['motd', 'pe_accounts', 'pe_mcollective', 'pe_compliance'],
      parameters: {
        motd_message: 'This node is managed by Puppet Enterprise',
        fact_stomp_server: 'master.example.com',
        fact_stomp_port: '61613',
        stomp_password: 'p1xXBGQuFjGyu',
      },
    });
    expect(await sandbox.externalNode('nosuch.example.test')).toEqual({ classes: [] });
    await sandbox.create({ name: 'both.example.test', groups: ['webservers', 'legacy_web'], classes: [], parameters: {} });
    await expect(sandbox.externalNode('both.example.test')).rejects.toMatchObject({
      output: 'Node "both.example.test" has conflicting parameter(s): http_port',
    });
    // Keys that are special to JavaScript objects are ordinary parameters here.
    await sandbox.setParameters('both.example.test', JSON.parse('{"http_port": "443", "__proto__": "p", "constructor": "c"}') as Record<string, string>);
    const compiled = (await sandbox.externalNode('both.example.test')).parameters!;
    expect(compiled['http_port']).toBe('443');
    expect(Object.getOwnPropertyDescriptor(compiled, '__proto__')?.value).toBe('p');
    expect(Object.getOwnPropertyDescriptor(compiled, 'constructor')?.value).toBe('c');
    expect(Object.getPrototypeOf(compiled)).toBe(Object.prototype);
  });

  it('a store that is not one is a ClassifierError naming the file (never re-seeded over)', async () => {
    const sandbox = new SandboxClassifier(dir);
    await sandbox.listGroups();
    await writeFile(sandbox.path, '{"schema": 2}');
    await expect(sandbox.listGroups()).rejects.toMatchObject({ name: 'ClassifierError', message: expect.stringContaining(sandbox.path) });
    expect(await readFile(sandbox.path, 'utf8')).toBe('{"schema": 2}');
  });
});

describe('the sandbox CA (SandboxCertificateAuthority)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-sandbox-ca-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes its CA on first use: key 0600, self-signed CA certificate, serial file', async () => {
    const ca = new SandboxCertificateAuthority(dir);
    const files = sandboxCaFiles(dir);
    expect(await exists(files.dir)).toBe(false);
    expect(await ca.currentFingerprint('web01.example.test')).toBeUndefined();
    const pem = await ca.caCertificate();
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(pem).not.toContain('\r');
    const { stat } = await import('node:fs/promises');
    expect((await stat(files.caKey)).mode & 0o777).toBe(0o600);
    expect((await stat(files.dir)).mode & 0o777).toBe(0o700);
    expect(await readFile(files.serial, 'utf8')).toBe('0002\n');
    const { execa } = await import('execa');
    const text = (await execa('openssl', ['x509', '-noout', '-text'], { input: pem })).stdout;
    expect(text).toMatch(/CA:TRUE/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Subject: CN ?= ?Puppet CA: espm sandbox/);
  });

  it('keeps its state across a restart: same CA, serials continue, revocations kept', async () => {
    const first = new SandboxCertificateAuthority(dir);
    const a = await first.issue({ certname: 'a.example.test', dnsAltNames: [], extensions: [] });
    const second = new SandboxCertificateAuthority(dir);
    expect(await second.caCertificate()).toBe(a.caCertificate);
    expect(await second.currentFingerprint('a.example.test')).toBe(certificateInfo(a.certificate).fingerprint_sha256);
    const b = await second.issue({ certname: 'b.example.test', dnsAltNames: ['b-alias.example.test'], extensions: [] });
    expect(certificateInfo(a.certificate).serial).toBe('02');
    expect(certificateInfo(b.certificate).serial).toBe('03');
    expect(certificateInfo(b.certificate).dns_alt_names).toEqual(['b.example.test', 'b-alias.example.test']);
    await expect(second.issue({ certname: 'a.example.test', dnsAltNames: [], extensions: [] })).rejects.toEqual(new CertificateExistsError('A Certificate already exists for a.example.test'));
    expect(await second.revoke('a.example.test')).toBe('revoked');
    expect(await second.revoke('a.example.test')).toBe('absent');
    const third = new SandboxCertificateAuthority(dir);
    expect(await third.revocations()).toEqual([
      { serial: '02', certname: 'a.example.test', fingerprint_sha256: certificateInfo(a.certificate).fingerprint_sha256, revoked_at: expect.any(String) },
    ]);
    expect(await third.currentFingerprint('a.example.test')).toBeUndefined();
    const again = await third.issue({ certname: 'a.example.test', dnsAltNames: [], extensions: [] });
    expect(certificateInfo(again.certificate).serial).toBe('04');
    expect(await readFile(sandboxCaFiles(dir).serial, 'utf8')).toBe('0005\n');
  });

  it('concurrent issues from two instances on one directory get distinct serials and one CA', async () => {
    const one = new SandboxCertificateAuthority(dir);
    const two = new SandboxCertificateAuthority(dir);
    const issued = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? one : two).issue({ certname: `burst${i}.example.test`, dnsAltNames: [], extensions: [] })),
    );
    expect(new Set(issued.map((c) => certificateInfo(c.certificate).serial)).size).toBe(6);
    expect(new Set(issued.map((c) => c.caCertificate)).size).toBe(1);
    for (const c of issued.slice(0, 2)) {
      expect((await opensslChecks({ certificate: c.certificate, private_key: c.privateKey, ca_certificate: c.caCertificate })).verify).toContain('OK');
    }
  });

  it('the key size is an option', async () => {
    const ca = new SandboxCertificateAuthority(dir, { keyBits: 3072 });
    const c = await ca.issue({ certname: 'big.example.test', dnsAltNames: [], extensions: [] });
    const checks = await opensslChecks({ certificate: c.certificate, private_key: c.privateKey, ca_certificate: c.caCertificate });
    expect(checks.text).toMatch(/Public-Key: \(3072 bit\)/);
    expect(() => new SandboxCertificateAuthority(dir, { keyBits: 512 })).toThrow(/keyBits/);
  });

  it('refuses names that are not certnames (they would be file names)', async () => {
    const ca = new SandboxCertificateAuthority(dir);
    await expect(ca.issue({ certname: '../escape', dnsAltNames: [], extensions: [] })).rejects.toBeInstanceOf(CaError);
    await expect(ca.revoke('a/b')).rejects.toBeInstanceOf(CaError);
    await expect(ca.currentFingerprint('..')).rejects.toBeInstanceOf(CaError);
  });

  it('serialHex gives minimal positive DER integers', () => {
    expect(serialHex(1n)).toBe('01');
    expect(serialHex(0x7fn)).toBe('7f');
    expect(serialHex(0x80n)).toBe('0080');
    expect(serialHex(0x100n)).toBe('0100');
  });
});

describe('espm on the sandbox backends across a restart', () => {
  it('a node and a certificate created before a restart are still espm\'s after it', async () => {
    const setup = await setUpDir();
    try {
      const runner = new CountingRunner();
      let espm = await startEspm(SANDBOX, { runner, setup });
      let api = apiClient(espm);
      expect((await api.post('/v1/nodes', { name: 'keep.example.test', groups: ['default'], parameters: { role: 'db' } })).status).toBe(201);
      const issued = await api.post('/v1/certificates', { certname: 'keep.example.test' });
      expect(issued.status).toBe(201);
      await espm.stop();

      espm = await startEspm({}, { runner, setup });
      api = apiClient(espm);
      try {
        expect((await api.get('/v1/nodes/keep.example.test')).body).toMatchObject({ groups: ['default'], parameters: { role: 'db' } });
        const meta = await api.get('/v1/certificates/keep.example.test');
        expect(meta.body.fingerprint_sha256).toBe(issued.body.fingerprint_sha256);
        const second = await api.post('/v1/certificates', { certname: 'next.example.test' });
        expect(second.body.ca_certificate).toBe(issued.body.ca_certificate);
        expect((await api.delete('/v1/nodes/keep.example.test')).status).toBe(204);
        expect((await api.delete('/v1/certificates/keep.example.test')).status).toBe(204);
        expect((await revokedRecord(espm.config.state.dir)).map((r) => r.serial)).toEqual([meta.body.serial]);
        expect(await new SandboxClassifier(espm.config.state.dir).node('keep.example.test')).toBeUndefined();
      } finally {
        await espm.stop();
      }
      expect(runner.count).toBe(0);
    } finally {
      await setup.remove();
    }
  });
});

describe('the start-up warning', () => {
  const config = (sections: Record<string, Record<string, string>>) =>
    parseConfig({ server: { cert: '/c.pem', key: '/k.pem', psk: 'x'.repeat(48) }, state: { dir: '/var/espm' }, ...sections }, '/espm.ini');

  it.each([
    [{}, undefined],
    [{ ca: { backend: 'sandbox' } }, ['[ca] backend = sandbox']],
    [{ classifier: { backend: 'sandbox' } }, ['[classifier] backend = sandbox']],
  ])('%j → %j', (sections, backends) => {
    const logs = new LogCapture();
    const logged = warnAboutSandboxes(config(sections), createLogger({ level: 'info', format: 'json', destination: logs }));
    expect(logged).toBe(backends !== undefined);
    expect(logs.records()).toEqual(backends === undefined ? [] : [expect.objectContaining({ level: 40, backends, state: '/var/espm/sandbox' })]);
  });
});
