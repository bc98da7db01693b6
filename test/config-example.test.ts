import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ini from 'ini';
import { DEFAULTS, loadConfig } from '../src/config.js';

describe('etc/espm.ini.example', () => {
  it('documents every key with its default, and loads', async () => {
    const text = await readFile(new URL('../etc/espm.ini.example', import.meta.url), 'utf8');
    const parsed = ini.parse(text) as Record<string, Record<string, unknown>>;
    for (const [section, keys] of Object.entries(DEFAULTS)) {
      for (const [key, value] of Object.entries(keys)) {
        expect([section, key, parsed[section]?.[key]]).toEqual([section, key, typeof value === 'boolean' ? expect.anything() : String(value)]);
      }
    }
    expect(Object.keys(parsed['server']!)).toEqual([
      'host',
      'port',
      'cert',
      'key',
      'psk',
      'allow',
      'handshake_timeout',
      'first_request_timeout',
      'headers_timeout',
      'request_timeout',
      'keepalive_timeout',
      'drain_timeout',
      'max_connections',
      'max_connections_per_address',
      'release_memory_after',
    ]);
    const dir = await mkdtemp(join(tmpdir(), 'espm-example-'));
    try {
      await writeFile(join(dir, 'espm.ini'), text);
      await chmod(join(dir, 'espm.ini'), 0o600);
      const config = loadConfig(join(dir, 'espm.ini'));
      expect(config.classifier.worker).toBe(DEFAULTS.classifier.worker);
      expect(config.ca.keepPrivateKeys).toBe(DEFAULTS.ca.keep_private_keys);
      expect(config.puppetdb).toMatchObject({
        url: undefined,
        timeoutMs: DEFAULTS.puppetdb.timeout * 1000,
        puppet: DEFAULTS.puppetdb.puppet,
        puppetConfig: DEFAULTS.puppetdb.config,
        retryIntervalMs: DEFAULTS.puppetdb.retry_interval * 1000,
        retryMaxIntervalMs: DEFAULTS.puppetdb.retry_max_interval * 1000,
      });
      expect(config.autosign).toEqual({
        tokenTtlMs: DEFAULTS.autosign.token_ttl * 1000,
        fallback: undefined,
        fallbackTimeoutMs: DEFAULTS.autosign.fallback_timeout * 1000,
        socket: DEFAULTS.autosign.socket,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
