import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ini from 'ini';
import { ConfigError, DEFAULTS, loadConfig, parseConfig, renderConfig } from '../src/config.js';
import { detectBackends } from '../src/setup/detect.js';
import { emptyProbe } from './support/espm.js';

const PSK = 'x'.repeat(48);
const minimal = { server: { cert: '/etc/espm/espm.crt', key: '/etc/espm/espm.key', psk: PSK } };

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('fills in every default from DEFAULTS, converting seconds to ms', () => {
    const c = parseConfig(minimal, '/x/espm.ini');
    expect(c.server).toEqual({ ...minimal.server, host: '0.0.0.0', port: 8443, allow: [] });
    expect(c.classifier).toEqual({
      backend: 'dashboard-rake',
      rake: '/opt/puppet/bin/rake',
      rakefile: '/opt/puppet/share/puppet-dashboard/Rakefile',
      railsEnv: 'production',
      cwd: '/opt/puppet/share/puppet-dashboard',
      timeoutMs: 120_000,
      cacheTtlMs: 60_000,
      worker: true,
      ruby: '/opt/puppet/bin/ruby',
      workerMaxTasks: 1000,
      workerMaxAgeMs: 3_600_000,
      workerIdleRefreshMs: 600_000,
    });
    expect(c.ca).toEqual({
      backend: 'puppet-cert',
      puppet: '/opt/puppet/bin/puppet',
      puppetserver: DEFAULTS.ca.puppetserver,
      config: '/etc/puppetlabs/puppet/puppet.conf',
      ssldir: undefined,
      timeoutMs: 60_000,
      keepPrivateKeys: false,
      keyBits: 4096,
      keyPool: 10,
      apiUrl: undefined,
      apiCert: undefined,
      apiKey: undefined,
      apiCa: undefined,
    });
    expect(c.state.dir).toBe('/opt/espm/var');
    expect(c.log).toEqual({ level: 'info', format: 'json' });
  });

  it('reads what the INI says, with ini booleans and on/off flags', () => {
    const text = [
      '[server]',
      'host = 127.0.0.1',
      'port = 9443',
      'cert = /c.pem',
      'key = /k.pem',
      `psk = ${PSK}`,
      'allow = 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32',
      '[classifier]',
      'backend = dashboard-rake',
      'timeout = 5',
      'cache_ttl = 0',
      'worker = off',
      '[ca]',
      'backend = puppetserver-ca',
      'ssldir = /var/lib/puppet/ssl',
      'keep_private_keys = true',
      '[log]',
      'level = debug',
      'format = text',
    ].join('\n');
    const c = parseConfig(ini.parse(text), '/x.ini');
    expect(c.server.port).toBe(9443);
    expect(c.server.allow).toEqual(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32']);
    expect(c.classifier).toMatchObject({ backend: 'dashboard-rake', timeoutMs: 5000, cacheTtlMs: 0, worker: false });
    expect(c.ca).toMatchObject({ backend: 'puppetserver-ca', ssldir: '/var/lib/puppet/ssl', keepPrivateKeys: true });
    expect(c.log).toEqual({ level: 'debug', format: 'text' });
  });

  it.each([
    [{ server: { ...minimal.server, port: '70000' } }, '[server] port'],
    [{ server: { ...minimal.server, port: 'https' } }, '[server] port'],
    [{ server: { cert: '/c', key: '/k' } }, '[server] psk: missing'],
    [{ server: { ...minimal.server, psk: 'short' } }, '[server] psk'],
    [{ server: { ...minimal.server, cert: 'relative/espm.crt' } }, '[server] cert: must be an absolute path'],
    [{ server: { ...minimal.server, allow: '10.0.0.0/33' } }, '[server] allow'],
    [{ server: { ...minimal.server, allow: 'example.com' } }, '[server] allow'],
    [{ server: { ...minimal.server, prot: '1' } }, 'unknown key in [server]: prot'],
    [{ ...minimal, servr: {} }, 'unknown section: servr'],
    [{ ...minimal, classifier: { backend: 'nc' } }, '[classifier] backend'],
    [{ ...minimal, classifier: { rake: 'rake' } }, '[classifier] rake: must be an absolute path'],
    [{ ...minimal, classifier: { timeout: '0' } }, '[classifier] timeout'],
    [{ ...minimal, classifier: { worker: 'maybe' } }, '[classifier] worker'],
    [{ ...minimal, classifier: { ruby: 'ruby' } }, '[classifier] ruby: must be an absolute path'],
    [{ ...minimal, classifier: { worker_max_tasks: '0' } }, '[classifier] worker_max_tasks'],
    [{ ...minimal, classifier: { worker_max_age: '1.5' } }, '[classifier] worker_max_age'],
    [{ ...minimal, classifier: { worker_idle_refresh: 'soon' } }, '[classifier] worker_idle_refresh'],
    [{ ...minimal, ca: { backend: 'openssl' } }, '[ca] backend'],
    [{ ...minimal, ca: { ssldir: 'ssl' } }, '[ca] ssldir'],
    [{ ...minimal, log: { format: 'xml' } }, '[log] format'],
    [{}, '[server]'],
  ])('names the key of an invalid config: %j → %s', (parsed, expected) => {
    const message = errorOf(() => parseConfig(parsed, '/etc/espm/espm.ini'));
    expect(message).toContain('/etc/espm/espm.ini');
    expect(message).toContain(expected);
  });

  it('defaults [classifier] ruby to the ruby beside rake; reads the worker keys in seconds', () => {
    const c = parseConfig({ ...minimal, classifier: { rake: '/usr/local/bin/rake', worker_max_tasks: '5', worker_max_age: '60', worker_idle_refresh: '30' } }, '/x.ini');
    expect(c.classifier).toMatchObject({ ruby: '/usr/local/bin/ruby', workerMaxTasks: 5, workerMaxAgeMs: 60_000, workerIdleRefreshMs: 30_000 });
    expect(parseConfig({ ...minimal, classifier: { rake: '/usr/local/bin/rake', ruby: '/opt/rubies/1.8.7/bin/ruby' } }, '/x.ini').classifier.ruby).toBe('/opt/rubies/1.8.7/bin/ruby');
  });

  it('never puts the PSK into an error message', () => {
    const message = errorOf(() => parseConfig({ server: { ...minimal.server, port: 0 } }, '/x.ini'));
    expect(message).not.toContain(PSK);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-config-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('round-trips what renderConfig writes (every key of DESIGN.md)', async () => {
    const detection = detectBackends(emptyProbe);
    const text = renderConfig({
      server: { host: '0.0.0.0', port: 8443, cert: '/a/espm.crt', key: '/a/espm.key', psk: PSK, allow: '' },
      classifier: detection.classifier,
      ca: detection.ca,
      state: { dir: '/opt/espm/var' },
      log: { level: 'info', format: 'json' },
    });
    const parsed = ini.parse(text) as Record<string, Record<string, unknown>>;
    expect(Object.keys(parsed.server!)).toEqual(['host', 'port', 'cert', 'key', 'psk', 'allow']);
    expect(Object.keys(parsed.classifier!)).toEqual(
      ['backend', 'rake', 'rakefile', 'rails_env', 'cwd', 'timeout', 'cache_ttl', 'worker', 'ruby'],
    );
    expect(Object.keys(parsed.ca!)).toEqual(
      ['backend', 'puppet', 'puppetserver', 'config', 'ssldir', 'timeout', 'keep_private_keys'],
    );
    const path = join(dir, 'espm.ini');
    await writeFile(path, text, { mode: 0o600 });
    const c = loadConfig(path);
    expect(c.path).toBe(path);
    expect(c.server.psk).toBe(PSK);
    expect(c.ca.ssldir).toBe('/etc/puppetlabs/puppet/ssl');
  });

  it('refuses a missing file with a message naming it', () => {
    expect(errorOf(() => loadConfig(join(dir, 'nope.ini')))).toContain(join(dir, 'nope.ini'));
  });

  it('refuses a config that group or others can read (it holds the PSK)', async () => {
    const path = join(dir, 'espm.ini');
    await writeFile(path, ini.stringify(minimal));
    await chmod(path, 0o644);
    expect(errorOf(() => loadConfig(path))).toMatch(/readable or writable by group\/others \(mode 0644\).*chmod 600/);
    await chmod(path, 0o600);
    expect(loadConfig(path).server.psk).toBe(PSK);
  });
});
