import { availableParallelism } from 'node:os';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ini from 'ini';
import { ConfigError, DEFAULTS, loadConfig, parseConfig } from '../src/config.js';
import { renderConfig } from '../src/setup/ini.js';
import { CONNECTION_DEFAULTS, connectionLimits } from '../src/http/connection-guard.js';
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

/** `[puppetdb]` as parsed when the section is absent. */
const PUPPETDB_DEFAULTS = {
  url: undefined,
  timeoutMs: DEFAULTS.puppetdb.timeout * 1000,
  puppet: DEFAULTS.puppetdb.puppet,
  puppetConfig: DEFAULTS.puppetdb.config,
  cert: undefined,
  key: undefined,
  ca: undefined,
  retryIntervalMs: DEFAULTS.puppetdb.retry_interval * 1000,
  retryMaxIntervalMs: DEFAULTS.puppetdb.retry_max_interval * 1000,
};

describe('parseConfig', () => {
  it('fills in every default from DEFAULTS, converting seconds to ms', () => {
    const c = parseConfig(minimal, '/x/espm.ini');
    expect(c.server).toEqual({ ...minimal.server, host: '0.0.0.0', port: 8443, allow: [], ...CONNECTION_DEFAULTS, drainTimeoutMs: 15_000 });
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
      workers: availableParallelism() + 1,
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
    [{ server: { ...minimal.server, release_memory_after: '-1' } }, '[server] release_memory_after'],
    [{ server: { ...minimal.server, max_connections: '100', max_connections_per_address: '50', release_memory_after: '101' } }, '[server] release_memory_after: must be at most max_connections (100), or 0'],
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

describe('parseConfig: keys per backend', () => {
  const parse = (sections: Record<string, Record<string, string>>) => parseConfig({ ...minimal, ...sections }, '/etc/espm/espm.ini');

  it('validates a backend\'s own keys only when that backend is chosen', () => {
    expect(errorOf(() => parse({ classifier: { rakefile: 'Rakefile' } }))).toContain('[classifier] rakefile: must be an absolute path');
    expect(parse({ classifier: { backend: 'sandbox', rakefile: 'Rakefile', worker: 'maybe' } }).classifier.backend).toBe('sandbox');
    expect(errorOf(() => parse({ ca: { backend: 'puppetserver-api', key_bits: '1024' } }))).toContain('[ca] key_bits: must be at least 2048 bits');
    expect(parse({ ca: { backend: 'puppetserver-ca', key_bits: '1024', api_url: 'http://x' } }).ca.backend).toBe('puppetserver-ca');
    expect(errorOf(() => parse({ ca: { backend: 'puppetserver-ca', ssldir: 'ssl' } }))).toContain('[ca] ssldir');
    expect(parse({ ca: { backend: 'sandbox', ssldir: 'ssl', puppet: 'puppet', keep_private_keys: 'maybe' } }).ca.backend).toBe('sandbox');
  });

  it('accepts and ignores the keys of the section\'s other backends; a key no backend knows stays an error', () => {
    const rakeKeys = { rake: '/usr/local/bin/rake', rakefile: '/srv/Rakefile', rails_env: 'staging', cwd: '/srv', worker: 'off', ruby: '/usr/local/bin/ruby' };
    const sandbox = parse({ classifier: { backend: 'sandbox', ...rakeKeys, cache_ttl: '5' } }).classifier;
    expect(sandbox).toMatchObject({ backend: 'sandbox', cacheTtlMs: 5000, rake: DEFAULTS.classifier.rake, worker: DEFAULTS.classifier.worker });
    const ca = parse({ ca: { backend: 'puppet-cert', api_url: 'https://ca.example.com:8140', key_pool: '3' } }).ca;
    expect(ca).toMatchObject({ backend: 'puppet-cert', apiUrl: undefined, keyPool: DEFAULTS.ca.key_pool });
    expect(errorOf(() => parse({ classifier: { backend: 'sandbox', rakefiel: '/x' } }))).toContain('unknown key in [classifier]: rakefiel');
    expect(errorOf(() => parse({ ca: { backend: 'puppetserver-api', api_uri: 'https://x' } }))).toContain('unknown key in [ca]: api_uri');
  });

  it('names the backends a bad backend may be, and nothing else of that section', () => {
    const message = errorOf(() => parse({ classifier: { backend: 'nc', rake: 'rake' }, ca: { backend: 'openssl' } }));
    expect(message).toContain('[classifier] backend: Invalid option: expected one of "dashboard-rake"|"sandbox"');
    expect(message).toContain('[ca] backend: Invalid option: expected one of "puppet-cert"|"puppetserver-ca"|"puppetserver-api"|"sandbox"');
    expect(message).not.toContain('[classifier] rake');
  });

  it('types a section by its backend (narrowing on backend)', () => {
    const { ca } = parse({ ca: { backend: 'puppetserver-api', key_pool: '0' } });
    expect(ca.backend === 'puppetserver-api' ? ca.keyPool : undefined).toBe(0);
  });
});

describe('parseConfig: reserved sections', () => {
  const parse = (sections: Record<string, Record<string, string>>) => parseConfig({ ...minimal, ...sections }, '/etc/espm/espm.ini');

  it('[puppetdb]: url (empty or absent = off), timeout and retry intervals in ms, identity overrides', () => {
    expect(parse({}).puppetdb).toEqual(PUPPETDB_DEFAULTS);
    expect(parse({ puppetdb: { url: '', timeout: '5' } }).puppetdb).toEqual({ ...PUPPETDB_DEFAULTS, timeoutMs: 5000 });
    expect(parse({ puppetdb: { url: 'https://puppetdb.example.com:8081/' } }).puppetdb.url).toBe('https://puppetdb.example.com:8081');
    expect(parse({ puppetdb: { cert: '/x/c.pem', key: '/x/k.pem', ca: '', retry_interval: '2', retry_max_interval: '8' } }).puppetdb).toMatchObject({
      cert: '/x/c.pem',
      key: '/x/k.pem',
      ca: undefined,
      retryIntervalMs: 2000,
      retryMaxIntervalMs: 8000,
    });
  });

  it('[autosign]: token_ttl (default 2 h), fallback (absolute path, optional), fallback_timeout (30 s), socket, in ms', () => {
    expect(parse({}).autosign).toEqual({ tokenTtlMs: 7_200_000, fallback: undefined, fallbackTimeoutMs: 30_000, socket: '/opt/espm/autosign/espm.sock' });
    expect(
      parse({ autosign: { token_ttl: '600', fallback: '/usr/local/bin/autosign-policy', fallback_timeout: '5', socket: '/run/espm/a.sock' } }).autosign,
    ).toEqual({
      tokenTtlMs: 600_000,
      fallback: '/usr/local/bin/autosign-policy',
      fallbackTimeoutMs: 5000,
      socket: '/run/espm/a.sock',
    });
    expect(parse({ autosign: { fallback: '' } }).autosign.fallback).toBeUndefined();
  });

  it.each([
    [{ puppetdb: { url: 'http://puppetdb.example.com:8080' } }, '[puppetdb] url: must be https://HOST'],
    [{ puppetdb: { url: 'https://puppetdb.example.com:8081/pdb' } }, '[puppetdb] url'],
    [{ puppetdb: { timeout: '0' } }, '[puppetdb] timeout: must be at least 1 s'],
    [{ puppetdb: { uri: 'https://x' } }, 'unknown key in [puppetdb]: uri'],
    [{ puppetdb: { cert: 'hostcert.pem' } }, '[puppetdb] cert: must be an absolute path'],
    [{ puppetdb: { retry_interval: '60', retry_max_interval: '30' } }, '[puppetdb] retry_max_interval: must be at least retry_interval (60 s)'],
    [{ autosign: { token_ttl: 'soon' } }, '[autosign] token_ttl'],
    [{ autosign: { token_ttl: '0' } }, '[autosign] token_ttl: must be at least 1 s'],
    [{ autosign: { fallback: 'policy.sh' } }, '[autosign] fallback: must be an absolute path'],
    [{ autosign: { ttl: '1' } }, 'unknown key in [autosign]: ttl'],
  ])('names the key of an invalid value: %j → %s', (sections, expected) => {
    expect(errorOf(() => parse(sections))).toContain(expected);
  });
});

/**
 * espm.ini files as written by espm_setup of the release before issue #13 (a PE 2.x/3.x master;
 * a Debian puppetserver master with its detected puppetserver-ca and with --ca-backend
 * puppetserver-api), and the Config that release made of each (`*.config.json`, undefined as null).
 */
describe('espm.ini of the previous release', () => {
  const fixtures = new URL('./fixtures/config/', import.meta.url);
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-config-fixtures-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const load = async (name: string, edit: (text: string) => string = (t) => t) => {
    const path = join(dir, `${name}.ini`);
    await writeFile(path, edit(await readFile(new URL(`${name}.ini`, fixtures), 'utf8')), { mode: 0o600 });
    return loadConfig(path);
  };

  it.each(['pe-2.x-puppet-cert', 'debian-puppetserver-ca', 'debian-puppetserver-api'])('%s loads with the same Config', async (name) => {
    expect((await readdir(fixtures)).filter((f) => f.endsWith('.ini'))).toHaveLength(3);
    const before = JSON.parse(await readFile(new URL(`${name}.config.json`, fixtures), 'utf8'), (_key, value: unknown) => value ?? undefined);
    const { puppetdb, autosign, ...loaded } = await load(name);
    // [classifier] workers is new (issue #19): its default (the core count + 1) applies.
    const { workers, ...classifier } = loaded.classifier;
    expect(workers).toBe(availableParallelism() + 1);
    const config = { ...loaded, classifier };
    // The [server] connection limits and timeouts are new (issue #18): their defaults apply.
    const server = Object.fromEntries(Object.entries(config.server).filter(([key]) => !(key in CONNECTION_DEFAULTS) && key !== 'drainTimeoutMs'));
    expect({ ...config, server, path: before.path }).toEqual(before);
    expect({ ...connectionLimits(config.server), drainTimeoutMs: config.server.drainTimeoutMs }).toEqual({ ...CONNECTION_DEFAULTS, drainTimeoutMs: 15_000 });
    expect(puppetdb).toEqual(PUPPETDB_DEFAULTS);
    expect(autosign).toEqual({ tokenTtlMs: DEFAULTS.autosign.token_ttl * 1000, fallback: undefined, fallbackTimeoutMs: DEFAULTS.autosign.fallback_timeout * 1000, socket: DEFAULTS.autosign.socket });
  });

  it('still loads with both backends switched to sandbox (the demo\'s edit), the other keys ignored', async () => {
    const c = await load('debian-puppetserver-ca', (text) => text.replace(/^backend = .*$/gm, 'backend = sandbox'));
    expect(c.classifier).toMatchObject({ backend: 'sandbox', timeoutMs: 120_000, cacheTtlMs: 60_000 });
    expect(c.ca).toMatchObject({ backend: 'sandbox', timeoutMs: 60_000 });
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-config-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('round-trips what renderConfig writes (every key of docs/design.md "Config")', async () => {
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
