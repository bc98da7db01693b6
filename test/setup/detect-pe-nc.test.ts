/**
 * espm_setup on PE 2016–2025 (issue #15): `/etc/puppetlabs/console-services` or
 * `/opt/puppetlabs/server/apps/console-services` → `pe-node-classifier` (the console URL from
 * the master's classifier.yaml where it can be read) + `puppetserver-api` + `[puppetdb] url`
 * (from puppetdb.conf); the config it writes loads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { consoleUrlFrom, detectBackends, puppetdbUrlFrom, type DetectionProbe } from '../../src/setup/detect.js';
import { planSetup, writeSetup } from '../../src/setup/setup.js';

/** A PE primary: console-services at `marker`, puppetserver on PATH too, these files readable. */
const pe = (marker: string, files: Record<string, string> = {}): DetectionProbe => ({
  isExecutable: (p) => p === '/opt/puppetlabs/bin/puppetserver' || p === '/opt/puppetlabs/bin/puppet',
  exists: (p) => p === marker || p in files,
  readText: (p) => files[p],
  searchPath: '/opt/puppetlabs/bin:/usr/bin',
});

const CLASSIFIER_YAML = '---\n  - server: "pe-primary.example.com"\n    port: 4433\n';
const PUPPETDB_CONF = '[main]\nserver_urls = https://pe-primary.example.com:8081\nsoft_write_failure = false\n';

describe('detectBackends on PE ≥ 2016', () => {
  it.each(['/etc/puppetlabs/console-services', '/opt/puppetlabs/server/apps/console-services'])('%s → pe-node-classifier + puppetserver-api + [puppetdb] url', (marker) => {
    const d = detectBackends(pe(marker, { '/etc/puppetlabs/puppet/classifier.yaml': CLASSIFIER_YAML, '/etc/puppetlabs/puppet/puppetdb.conf': PUPPETDB_CONF }));
    expect(d.found).toBe('pe-nc');
    expect(d.classifier).toEqual({
      backend: 'pe-node-classifier',
      url: 'https://pe-primary.example.com:4433/classifier-api',
      environment: 'production',
      parent_group: '00000000-0000-4000-8000-000000000000',
      token_file: '',
      timeout: 120,
      cache_ttl: 60,
    });
    expect(d.ca).toMatchObject({ backend: 'puppetserver-api', puppet: '/opt/puppetlabs/bin/puppet', config: '/etc/puppetlabs/puppet/puppet.conf' });
    expect(d.puppetdb).toEqual({ url: 'https://pe-primary.example.com:8081', timeout: 30 });
    expect(d.summary).toContain(`Puppet Enterprise ≥ 2016 found (${marker})`);
    expect(d.instructions?.join('\n')).toContain('/etc/puppetlabs/console-services/rbac-certificate-allowlist');
  });

  it('without a readable classifier.yaml: a placeholder URL and the summary says to edit it', () => {
    const d = detectBackends(pe('/etc/puppetlabs/console-services'));
    expect(d.classifier.url).toBe('https://localhost:4433/classifier-api');
    expect(d.puppetdb?.url).toBe('https://localhost:8081');
    expect(d.summary).toContain('edit [classifier] url');
  });

  it('--ca-backend still overrides the CA', () => {
    expect(detectBackends(pe('/etc/puppetlabs/console-services'), 'puppetserver-ca').ca.backend).toBe('puppetserver-ca');
  });

  it('PE 2.x/3.x (rake) still wins over a console-services directory', () => {
    const probe = pe('/etc/puppetlabs/console-services');
    const d = detectBackends({ ...probe, isExecutable: (p) => p === '/opt/puppet/bin/rake' });
    expect(d.found).toBe('pe');
  });

  it('parses classifier.yaml and puppetdb.conf as PE writes them', () => {
    expect(consoleUrlFrom('server: console.example.com\nport: 4433\nprefix: /classifier-api\n')).toBe('https://console.example.com:4433/classifier-api');
    expect(consoleUrlFrom("---\n- server: 'c.example.com'\n  port: 14433\n")).toBe('https://c.example.com:14433/classifier-api');
    expect(consoleUrlFrom('port: 4433\n')).toBeUndefined();
    expect(consoleUrlFrom(undefined)).toBeUndefined();
    expect(puppetdbUrlFrom('server_urls = https://a.example:8081,https://b.example:8081\n')).toBe('https://a.example:8081');
    expect(puppetdbUrlFrom('server_urls = http://a.example:8080\n')).toBeUndefined();
  });

  it('the config espm_setup writes for it loads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-setup-pe-nc-'));
    try {
      const detection = detectBackends(pe('/etc/puppetlabs/console-services', { '/etc/puppetlabs/puppet/classifier.yaml': CLASSIFIER_YAML, '/etc/puppetlabs/puppet/puppetdb.conf': PUPPETDB_CONF }));
      const plan = planSetup({ configDir: dir, certDir: join(dir, 'certs'), stateDir: join(dir, 'var'), host: '0.0.0.0', port: 8443, hostname: 'localhost', ips: [] }, detection);
      await writeSetup(plan);
      const config = loadConfig(plan.configPath);
      expect(config.classifier).toMatchObject({
        backend: 'pe-node-classifier',
        url: 'https://pe-primary.example.com:4433/classifier-api',
        environment: 'production',
        parentGroup: '00000000-0000-4000-8000-000000000000',
        tokenFile: undefined,
      });
      expect(config.ca.backend).toBe('puppetserver-api');
      expect(config.puppetdb.url).toBe('https://pe-primary.example.com:8081');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
