import { X509Certificate, createPrivateKey } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import forge from 'node-forge';
import { join } from 'node:path';
import ini from 'ini';
import { CA_BACKENDS, DEFAULTS, loadConfig } from '../../src/config.js';
import { renderConfig, type IniValues } from '../../src/setup/ini.js';
import { CONNECTION_DEFAULTS } from '../../src/http/connection-guard.js';
import { generateSelfSignedCertificate, randomSerialHex } from '../../src/setup/certificate.js';
import { detectBackends, rootedProbe, SETUP_CA_BACKENDS, type DetectionProbe } from '../../src/setup/detect.js';
import { generatePsk } from '../../src/setup/psk.js';
import { planSetup, SetupRefusedError, writeSetup, type SetupOptions } from '../../src/setup/setup.js';
import { emptyProbe } from '../support/espm.js';

describe('generatePsk', () => {
  it('is 36 random bytes as 48 URL-safe base64 characters, different every time', () => {
    const psks = Array.from({ length: 50 }, generatePsk);
    for (const psk of psks) {
      expect(psk).toMatch(/^[A-Za-z0-9_-]{48}$/);
      expect(Buffer.from(psk, 'base64url')).toHaveLength(36);
    }
    expect(new Set(psks).size).toBe(50);
  });
});

describe('generateSelfSignedCertificate', () => {
  const tls = generateSelfSignedCertificate({ hostname: 'Puppet.Example.COM', ips: ['192.0.2.10', '2001:db8::1'] });
  const x509 = new X509Certificate(tls.certificate);

  it('is self-signed, CN = lower-cased hostname, SANs for hostname and IPs', () => {
    expect(x509.subject).toBe('CN=puppet.example.com');
    expect(x509.issuer).toBe('CN=puppet.example.com');
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.subjectAltName).toBe('DNS:puppet.example.com, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:1');
    expect(x509.ca).toBe(false);
    expect(x509.checkHost('puppet.example.com')).toBe('puppet.example.com');
    expect(x509.checkIP('192.0.2.10')).toBe('192.0.2.10');
  });

  it('has a 2048-bit RSA key matching the certificate, SHA-256 signature, 10 years', () => {
    const key = createPrivateKey(tls.privateKey);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(x509.checkPrivateKey(key)).toBe(true);
    expect(forge.pki.certificateFromPem(tls.certificate).siginfo.algorithmOid).toBe(forge.pki.oids['sha256WithRSAEncryption']);
    const years = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.99);
    expect(years).toBeLessThan(10.01);
    expect(tls.fingerprintSha256).toBe(x509.fingerprint256);
    expect(tls.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('writes PEM with LF line endings', () => {
    expect(tls.certificate).toMatch(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n$/);
    expect(tls.privateKey).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END RSA PRIVATE KEY-----\n$/);
  });

  it('uses random positive serials', () => {
    const serials = Array.from({ length: 200 }, randomSerialHex);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9a-f]{32}$/);
      expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
      expect(parseInt(s.slice(0, 2), 16)).toBeGreaterThan(0);
    }
    expect(new Set(serials).size).toBe(200);
    expect(x509.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
  });

  it('refuses an IP SAN that is not an IP address', () => {
    expect(() => generateSelfSignedCertificate({ hostname: 'h', ips: ['10.0.0'] })).toThrow('not an IP address: 10.0.0');
  });
});

const probe = (executables: string[], files: string[] = [], searchPath = '/usr/local/bin:/usr/bin'): DetectionProbe => ({
  isExecutable: (p) => executables.includes(p),
  exists: (p) => files.includes(p),
  searchPath,
});
/** A Puppet >= 6 master from Debian's packages. */
const debianProbe = probe(['/usr/bin/puppetserver', '/usr/bin/puppet']);
/** A PE 2.x/3.x master. */
const peProbe = probe(['/opt/puppet/bin/rake']);

/** The `[ca]` keys a config has without the puppetserver-api ones (today's output). */
const CLI_CA_KEYS = ['backend', 'puppet', 'puppetserver', 'config', 'ssldir', 'timeout', 'keep_private_keys'];

describe('detectBackends', () => {

  it('PE 2.x/3.x when /opt/puppet/bin/rake is there: dashboard-rake + puppet-cert, PE paths', () => {
    const d = detectBackends(probe(['/opt/puppet/bin/rake', '/usr/bin/puppetserver']));
    expect(d.found).toBe('pe');
    expect(d.classifier).toMatchObject({ backend: 'dashboard-rake', rake: '/opt/puppet/bin/rake', cwd: '/opt/puppet/share/puppet-dashboard' });
    expect(d.ca).toMatchObject({ backend: 'puppet-cert', puppet: '/opt/puppet/bin/puppet', config: '/etc/puppetlabs/puppet/puppet.conf' });
  });

  it('open-source Puppet from Debian (puppetserver in /usr/bin, no PE console): enc + puppetserver-api, Debian paths', () => {
    const d = detectBackends(probe(['/usr/bin/puppetserver', '/usr/bin/puppet']));
    expect(d.found).toBe('open-source');
    expect(d.classifier).toMatchObject({ backend: 'enc', puppet: '/usr/bin/puppet', config: '/etc/puppet/puppet.conf', environment: 'production', fallback_enc: '' });
    expect(d.ca).toMatchObject({
      backend: 'puppetserver-api',
      puppetserver: '/usr/bin/puppetserver',
      puppet: '/usr/bin/puppet',
      config: '/etc/puppet/puppet.conf',
      ssldir: '/var/lib/puppet/ssl',
    });
  });

  it('open-source Puppet / OpenVox from the /opt/puppetlabs packages', () => {
    const d = detectBackends(probe(['/opt/puppetlabs/bin/puppetserver'], [], '/opt/puppetlabs/bin:/usr/bin'));
    expect(d.classifier).toMatchObject({ backend: 'enc', puppet: '/opt/puppetlabs/bin/puppet', config: '/etc/puppetlabs/puppet/puppet.conf' });
    expect(d.ca).toMatchObject({
      backend: 'puppetserver-api',
      puppetserver: '/opt/puppetlabs/bin/puppetserver',
      config: '/etc/puppetlabs/puppet/puppet.conf',
      ssldir: '/etc/puppetlabs/puppet/ssl',
    });
  });

  it('puppetserver beside a PE >= 2016 console is not an open-source master: no enc', () => {
    const d = detectBackends(probe(['/opt/puppetlabs/bin/puppetserver'], ['/etc/puppetlabs/console-services'], '/opt/puppetlabs/bin:/usr/bin'));
    expect(d.found).toBe('pe-nc');
    expect(d.classifier.backend).toBe('pe-node-classifier');
  });

  it('rootedProbe: detection against a package layout under a directory', async () => {
    const root = await mkdtemp(join(tmpdir(), 'espm-root-'));
    try {
      await mkdir(join(root, 'usr', 'bin'), { recursive: true });
      await writeFile(join(root, 'usr', 'bin', 'puppetserver'), '#!/bin/sh\n', { mode: 0o755 });
      await writeFile(join(root, 'usr', 'bin', 'puppet'), '#!/bin/sh\n', { mode: 0o755 });
      const d = detectBackends(rootedProbe(root));
      expect(d.found).toBe('open-source');
      expect(d.ca).toMatchObject({ puppetserver: '/usr/bin/puppetserver', config: '/etc/puppet/puppet.conf' });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('PE defaults when nothing is found; relative PATH entries are ignored', () => {
    const d = detectBackends(probe(['bin/puppetserver'], [], 'bin::'));
    expect(d.found).toBe('none');
    expect(d.ca.backend).toBe('puppet-cert');
    expect(d.classifier.backend).toBe('dashboard-rake');
  });

  it('summaries without --ca-backend: an open-source master gets enc + puppetserver-api', () => {
    expect(detectBackends(debianProbe).summary).toBe(
      'open-source Puppet / OpenVox master found (/usr/bin/puppetserver, no PE console): classifier enc ' +
        "(espm enc as puppetserver's ENC for the nodes espm creates), CA puppetserver-api with /etc/puppet/puppet.conf",
    );
    expect(detectBackends(peProbe).summary).toBe(
      'Puppet Enterprise console found (/opt/puppet/bin/rake): classifier dashboard-rake, CA puppet-cert',
    );
    expect(detectBackends(emptyProbe).summary).toBe(
      'neither a PE console nor puppetserver found: PE 2.x/3.x defaults written, edit them to match this master',
    );
  });
});

describe('detectBackends with --ca-backend', () => {
  const masters = { 'Puppet >= 6': debianProbe, 'PE 2.x/3.x': peProbe, 'no Puppet found': emptyProbe };
  const cases = Object.entries(masters).flatMap(([master, p]) => SETUP_CA_BACKENDS.map((backend) => [master, backend, p] as const));

  it('offers every CA backend but sandbox', () => {
    expect(SETUP_CA_BACKENDS).toEqual(['puppet-cert', 'puppetserver-ca', 'puppetserver-api']);
    expect(CA_BACKENDS).toContain('sandbox');
  });

  it.each(cases)('%s, --ca-backend %s: that backend, the detected paths, the classifier untouched', (_master, backend, p) => {
    const detected = detectBackends(p);
    const chosen = detectBackends(p, backend);
    expect(chosen.found).toBe(detected.found);
    expect(chosen.classifier).toEqual(detected.classifier);
    // The detected paths; the puppetserver-api keys only come with that backend.
    const { key_bits: _bits, key_pool: _pool, api_url: _url, api_cert: _cert, api_key: _key, api_ca: _ca, ...paths } = detected.ca;
    expect(chosen.ca).toMatchObject({ ...paths, backend });
  });

  it.each(Object.entries(masters))('%s, puppetserver-api: also key_bits and key_pool (defaults) and empty api_* (ask puppet)', (_master, p) => {
    const { ca } = detectBackends(p, 'puppetserver-api');
    expect(Object.keys(ca)).toEqual([...CLI_CA_KEYS, 'key_bits', 'key_pool', 'api_url', 'api_cert', 'api_key', 'api_ca']);
    expect(ca).toMatchObject({
      key_bits: DEFAULTS.ca.key_bits,
      key_pool: DEFAULTS.ca.key_pool,
      api_url: '',
      api_cert: '',
      api_key: '',
      api_ca: '',
    });
  });

  it.each(cases.filter(([, backend]) => backend !== 'puppetserver-api'))(
    '%s, --ca-backend %s: exactly the keys written without the option',
    (_master, backend, p) => {
      expect(Object.keys(detectBackends(p, backend).ca)).toEqual(CLI_CA_KEYS);
    },
  );

  it('the summary names the operator\'s choice, and what detection would have chosen when it differs', () => {
    expect(detectBackends(debianProbe, 'puppetserver-api').summary).toBe(
      'open-source Puppet / OpenVox master found (/usr/bin/puppetserver, no PE console): classifier enc ' +
        "(espm enc as puppetserver's ENC for the nodes espm creates), CA puppetserver-api (chosen with --ca-backend) with /etc/puppet/puppet.conf",
    );
    expect(detectBackends(debianProbe, 'puppetserver-ca').summary).toBe(
      'open-source Puppet / OpenVox master found (/usr/bin/puppetserver, no PE console): classifier enc ' +
        "(espm enc as puppetserver's ENC for the nodes espm creates), CA puppetserver-ca (chosen with --ca-backend instead of puppetserver-api) " +
        'with /etc/puppet/puppet.conf',
    );
    expect(detectBackends(peProbe, 'puppetserver-api').summary).toBe(
      'Puppet Enterprise console found (/opt/puppet/bin/rake): classifier dashboard-rake, ' +
        'CA puppetserver-api (chosen with --ca-backend instead of puppet-cert)',
    );
    expect(detectBackends(emptyProbe, 'puppetserver-ca').summary).toBe(
      'neither a PE console nor puppetserver found: CA puppetserver-ca (chosen with --ca-backend), ' +
        'otherwise PE 2.x/3.x defaults written, edit them to match this master',
    );
  });
});

describe('renderConfig', () => {
  const values = (ca: IniValues['ca']): IniValues => ({
    server: { host: '0.0.0.0', port: 8443, cert: '/a/espm.crt', key: '/a/espm.key', psk: generatePsk(), allow: '' },
    classifier: detectBackends(debianProbe).classifier,
    ca,
    state: { dir: '/opt/espm/var' },
    log: { level: 'info', format: 'json' },
  });
  /** The `[ca]` section of an INI text, up to the blank line that ends it. */
  const caSection = (text: string): string => /^\[ca\]\n[^]*?\n\n/m.exec(text)![0];

  it('writes the [ca] section of puppetserver-ca as before (--ca-backend puppetserver-ca on an open-source master)', () => {
    const expected =
      '[ca]\nbackend = puppetserver-ca\npuppet = /usr/bin/puppet\npuppetserver = /usr/bin/puppetserver\n' +
      `config = /etc/puppet/puppet.conf\nssldir = /var/lib/puppet/ssl\ntimeout = ${DEFAULTS.ca.timeout}\nkeep_private_keys = false\n\n`;
    expect(caSection(renderConfig(values(detectBackends(debianProbe, 'puppetserver-ca').ca)))).toBe(expected);
  });

  it('writes puppetserver-api\'s keys in the order of etc/espm.ini.example, api_* empty', async () => {
    const text = caSection(renderConfig(values(detectBackends(debianProbe, 'puppetserver-api').ca)));
    expect(text).toContain(
      `keep_private_keys = false\nkey_bits = ${DEFAULTS.ca.key_bits}\nkey_pool = ${DEFAULTS.ca.key_pool}\n` +
        'api_url = \napi_cert = \napi_key = \napi_ca = \n\n',
    );
    const example = ini.parse(await readFile(new URL('../../etc/espm.ini.example', import.meta.url), 'utf8'));
    expect(Object.keys((ini.parse(text) as { ca: object }).ca)).toEqual(Object.keys((example as { ca: object }).ca));
  });

  it('leaves out an optional key whose value is undefined', () => {
    const text = renderConfig(values({ ...detectBackends(debianProbe).ca, key_bits: undefined }));
    expect(text).not.toContain('key_bits');
    expect(text).not.toContain('undefined');
  });
});

describe('planSetup + writeSetup', () => {
  let root: string;
  let options: SetupOptions;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'espm-setup-'));
    options = {
      configDir: join(root, 'etc'),
      certDir: join(root, 'etc', 'certs'),
      stateDir: join(root, 'var'),
      host: '0.0.0.0',
      port: 8443,
      hostname: 'master.example.com',
      ips: ['192.0.2.1'],
    };
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /** Every path under root with its mode and content, to prove nothing changed. */
  async function snapshot(dir = root): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const st = await lstat(path);
      if (st.isDirectory()) Object.assign(out, { [path]: `dir ${st.mode}` }, await snapshot(path));
      else if (st.isSymbolicLink()) out[path] = `link ${st.mode}`;
      else out[path] = `file ${st.mode} ${st.mtimeMs} ${await readFile(path, 'utf8')}`;
    }
    return out;
  }

  it('writes the key 0600, the certificate 0644, the config 0600, directories 0700; the config loads', async () => {
    const plan = planSetup(options, detectBackends(emptyProbe));
    await writeSetup(plan);
    expect((await stat(join(root, 'etc', 'certs', 'espm.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, 'etc', 'certs', 'espm.crt'))).mode & 0o777).toBe(0o644);
    expect((await stat(join(root, 'etc', 'espm.ini'))).mode & 0o777).toBe(0o600);
    for (const d of ['etc', 'etc/certs', 'var']) expect((await stat(join(root, d))).mode & 0o777).toBe(0o700);
    expect(await readFile(plan.certPath, 'utf8')).toBe(plan.certificate);
    const config = loadConfig(plan.configPath);
    expect(config.server).toEqual({
      host: '0.0.0.0',
      port: 8443,
      cert: plan.certPath,
      key: plan.keyPath,
      psk: plan.psk,
      allow: [],
      // The connection limits and timeouts espm_setup leaves at their defaults (issue #18).
      ...CONNECTION_DEFAULTS,
      drainTimeoutMs: DEFAULTS.server.drain_timeout * 1000,
    });
    expect(config.state.dir).toBe(join(root, 'var'));
    const key = createPrivateKey(await readFile(plan.keyPath, 'utf8'));
    expect(new X509Certificate(plan.certificate).checkPrivateKey(key)).toBe(true);
  });

  it.each(SETUP_CA_BACKENDS)('--ca-backend %s: the written config loads with that backend and the detected paths', async (backend) => {
    const plan = planSetup(options, detectBackends(debianProbe, backend));
    await writeSetup(plan);
    const { ca } = loadConfig(plan.configPath);
    expect(ca).toMatchObject({ backend, puppet: '/usr/bin/puppet', puppetserver: '/usr/bin/puppetserver', config: '/etc/puppet/puppet.conf' });
    expect(ca).toMatchObject({ keyBits: DEFAULTS.ca.key_bits, keyPool: DEFAULTS.ca.key_pool });
    expect([ca.apiUrl, ca.apiCert, ca.apiKey, ca.apiCa]).toEqual([undefined, undefined, undefined, undefined]);
    const written = ini.parse(await readFile(plan.configPath, 'utf8')) as { ca: Record<string, unknown> };
    expect('key_bits' in written.ca).toBe(backend === 'puppetserver-api');
  });

  it('announces exactly: PSK, blank, certificate, fingerprint, instruction, destination', () => {
    const plan = planSetup(options, detectBackends(emptyProbe));
    const lines = plan.announcement.split('\n');
    expect(lines[0]).toBe('Preshared Key:');
    expect(lines[1]).toBe(plan.psk);
    expect(lines[2]).toBe('');
    expect(lines[3]).toBe('Certificate:');
    const pemLines = plan.certificate.trimEnd().split('\n');
    expect(lines.slice(4, 4 + pemLines.length)).toEqual(pemLines);
    const after = lines.slice(4 + pemLines.length);
    expect(after[0]).toBe('SHA-256 Fingerprint:');
    expect(after[1]).toBe(plan.fingerprintSha256);
    expect(after.join('\n')).toMatch(/Paste the preshared key and the certificate above into the platform's Puppet account/);
    expect(after.filter((l) => l !== '').at(-1)).toBe(`Writing config to: ${join(root, 'etc', 'espm.ini')}`);
    expect(plan.announcement).not.toContain('PRIVATE KEY');
  });

  it.each(['espm.ini', 'certs/espm.crt', 'certs/espm.key'])(
    'refuses when %s exists, naming it, and changes nothing',
    async (existing) => {
      await mkdir(join(root, 'etc', 'certs'), { recursive: true });
      await writeFile(join(root, 'etc', existing), 'keep me\n');
      const before = await snapshot();
      const plan = planSetup(options, detectBackends(emptyProbe));
      const error = await writeSetup(plan).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SetupRefusedError);
      expect((error as Error).message).toContain(join(root, 'etc', existing));
      expect(await snapshot()).toEqual(before);
    },
  );

  it('never follows a symlink, even a dangling one, and changes nothing', async () => {
    await mkdir(join(root, 'etc', 'certs'), { recursive: true });
    const target = join(root, 'victim');
    await symlink(target, join(root, 'etc', 'certs', 'espm.key'));
    const before = await snapshot();
    const plan = planSetup(options, detectBackends(emptyProbe));
    await expect(writeSetup(plan)).rejects.toBeInstanceOf(SetupRefusedError);
    expect(await snapshot()).toEqual(before);
    await expect(lstat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('running twice refuses the second time and leaves the first files as they were', async () => {
    await writeSetup(planSetup(options, detectBackends(emptyProbe)));
    const before = await snapshot();
    await expect(writeSetup(planSetup(options, detectBackends(emptyProbe)))).rejects.toThrow(
      /refusing to overwrite existing files: .*espm.key, .*espm.crt, .*espm.ini \(move them away first; nothing was written\)/,
    );
    expect(await snapshot()).toEqual(before);
  });
});
