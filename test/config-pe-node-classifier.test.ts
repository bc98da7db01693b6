/**
 * `[classifier] backend = pe-node-classifier` (issue #15): its keys, defaults and refusals, each
 * naming `[classifier] key`; its keys are ignored under another backend.
 */
import { ConfigError, parseConfig } from '../src/config.js';

const base = { server: { cert: '/c.pem', key: '/k.pem', psk: 'x'.repeat(48) } };
const parse = (classifier: Record<string, unknown>) => parseConfig({ ...base, classifier }, '/etc/espm.ini');
const URL = 'https://console.example.com:4433/classifier-api';

describe('[classifier] backend = pe-node-classifier', () => {
  it('defaults: environment production, the root group as parent, the master\'s certificate, AIO puppet paths', () => {
    expect(parse({ backend: 'pe-node-classifier', url: URL }).classifier).toMatchObject({
      backend: 'pe-node-classifier',
      url: URL,
      environment: 'production',
      parentGroup: '00000000-0000-4000-8000-000000000000',
      tokenFile: undefined,
      puppet: '/opt/puppetlabs/bin/puppet',
      puppetConfig: '/etc/puppetlabs/puppet/puppet.conf',
      apiCert: undefined,
      timeoutMs: 120_000,
      cacheTtlMs: 60_000,
    });
  });

  it('every key', () => {
    const c = parse({
      backend: 'pe-node-classifier', url: `${URL}/`, environment: 'staging', parent_group: 'A1B2C3D4-0000-4000-8000-000000000001',
      token_file: '/etc/espm/nc.token', timeout: 10, cache_ttl: 0, api_cert: '/a.pem', api_key: '/b.pem', api_ca: '/ca.pem',
      // keys of dashboard-rake are known and ignored
      rake: '/opt/puppet/bin/rake', worker: 'on',
    }).classifier;
    expect(c).toMatchObject({ url: URL, environment: 'staging', parentGroup: 'a1b2c3d4-0000-4000-8000-000000000001', tokenFile: '/etc/espm/nc.token', timeoutMs: 10_000, cacheTtlMs: 0, apiCert: '/a.pem', apiKey: '/b.pem', apiCa: '/ca.pem' });
  });

  it.each([
    [{}, '[classifier] url'],
    [{ url: 'http://console:4433/classifier-api' }, '[classifier] url'],
    [{ url: 'https://user:pw@console:4433/classifier-api' }, '[classifier] url'],
    [{ url: URL, parent_group: 'all nodes' }, '[classifier] parent_group'],
    [{ url: URL, token_file: 'relative/token' }, '[classifier] token_file'],
    [{ url: URL, environment: 'no such env!' }, '[classifier] environment'],
    [{ url: URL, nonsense: 1 }, 'unknown key in [classifier]: nonsense'],
  ])('refuses %j naming %s', (keys, named) => {
    expect(() => parse({ backend: 'pe-node-classifier', ...keys })).toThrow(ConfigError);
    expect(() => parse({ backend: 'pe-node-classifier', ...keys })).toThrow(named);
  });

  it('its keys are ignored under dashboard-rake (known keys of another backend)', () => {
    expect(parse({ backend: 'dashboard-rake', url: 'not a url', parent_group: 'x' }).classifier.backend).toBe('dashboard-rake');
  });
});
