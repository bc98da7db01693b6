/**
 * `[ca]` keys of the puppetserver-api backend (issue #8): key_bits, api_url, api_cert,
 * api_key, api_ca — defaults, validation, and the factory.
 */
import { X509Certificate } from 'node:crypto';
import { execa } from 'execa';
import { createCertificateAuthority } from '../../src/ca/index.js';
import { generateNodeRequest, PuppetserverApiAuthority } from '../../src/ca/puppetserver-api.js';
import { resolveExtensions } from '../../src/ca/trusted-extensions.js';
import { CA_BACKENDS, ConfigError, DEFAULTS, parseConfig } from '../../src/config.js';
import { CountingRunner } from '../support/runner.js';

const server = { cert: '/c.pem', key: '/k.pem', psk: 'p'.repeat(40) };
const parse = (ca: Record<string, string>) => parseConfig({ server, ca }, '/etc/espm/espm.ini');
const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('no error');
};

describe('[ca] keys of puppetserver-api', () => {
  it('is a CA backend; key_bits defaults to 4096, api_* to undefined (ask puppet)', () => {
    expect(CA_BACKENDS).toContain('puppetserver-api');
    expect(DEFAULTS.ca.key_bits).toBe(4096);
    const c = parse({ backend: 'puppetserver-api' }).ca;
    expect(DEFAULTS.ca.key_pool).toBe(10);
    expect(c).toMatchObject({ backend: 'puppetserver-api', keyBits: 4096, keyPool: 10, apiUrl: undefined, apiCert: undefined, apiKey: undefined, apiCa: undefined });
    expect(parse({ api_url: '', api_cert: '', api_key: '', api_ca: '' }).ca).toMatchObject({ apiUrl: undefined, apiCert: undefined, apiKey: undefined, apiCa: undefined });
  });

  it('reads them', () => {
    const c = parse({
      backend: 'puppetserver-api',
      key_bits: '3072',
      key_pool: '0',
      api_url: 'https://puppet.example.com:8140/',
      api_cert: '/etc/puppetlabs/puppet/ssl/certs/puppet.example.com.pem',
      api_key: '/etc/puppetlabs/puppet/ssl/private_keys/puppet.example.com.pem',
      api_ca: '/etc/puppetlabs/puppet/ssl/certs/ca.pem',
    }).ca;
    expect(c).toMatchObject({
      keyBits: 3072,
      keyPool: 0,
      apiUrl: 'https://puppet.example.com:8140',
      apiCert: '/etc/puppetlabs/puppet/ssl/certs/puppet.example.com.pem',
      apiKey: '/etc/puppetlabs/puppet/ssl/private_keys/puppet.example.com.pem',
      apiCa: '/etc/puppetlabs/puppet/ssl/certs/ca.pem',
    });
  });

  it.each([
    [{ key_bits: '1024' }, '[ca] key_bits: must be at least 2048 bits'],
    [{ key_bits: '32768' }, '[ca] key_bits: must be at most 16384 bits'],
    [{ key_bits: '2048.5' }, '[ca] key_bits'],
    [{ key_bits: 'big' }, '[ca] key_bits'],
    [{ key_pool: '-1' }, '[ca] key_pool: must be 0 (no pool) or more'],
    [{ key_pool: '101' }, '[ca] key_pool: must be at most 100 keys'],
    [{ key_pool: '2.5' }, '[ca] key_pool: must be a whole number of keys'],
    [{ key_pool: 'many' }, '[ca] key_pool'],
    [{ api_url: 'http://puppet.example.com:8140' }, '[ca] api_url: must be https://HOST'],
    [{ api_url: 'https://puppet.example.com:8140/puppet-ca/v1' }, '[ca] api_url'],
    [{ api_url: 'https://user:pw@puppet.example.com:8140' }, '[ca] api_url'],
    [{ api_url: 'puppet.example.com' }, '[ca] api_url'],
    [{ api_cert: 'ssl/cert.pem' }, '[ca] api_cert: must be an absolute path'],
    [{ api_key: 'key.pem' }, '[ca] api_key: must be an absolute path'],
    [{ api_ca: 'ca.pem' }, '[ca] api_ca: must be an absolute path'],
  ])('names the key of an invalid value: %j → %s', (ca, expected) => {
    // a backend's own keys are validated only when that backend is chosen (issue #13)
    expect(errorOf(() => parse({ backend: 'puppetserver-api', ...ca }))).toContain(expected);
  });

  it('the factory builds the adapter; building it spawns nothing', () => {
    const runner = new CountingRunner();
    const ca = createCertificateAuthority(parse({ backend: 'puppetserver-api' }).ca, runner, '/nonexistent');
    expect(ca).toBeInstanceOf(PuppetserverApiAuthority);
    expect(ca.backend).toBe('puppetserver-api');
    expect(runner.count).toBe(0);
    // Nor does it make keys: the pool fills only once espm listens (start()).
    expect((ca as PuppetserverApiAuthority).keys.generating).toBe(0);
  });
});

describe('generateNodeRequest', () => {
  it('makes a PKCS#1 key and a SHA-256 CSR with CN (UTF8String) and, with alt names, DNS:certname + the alt names', async () => {
    const request = await generateNodeRequest('web_01.example.test', ['www.example.test', 'web_01.example.test'], 2048);
    expect(request.privateKeyPem).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n/);
    expect(request.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const text = await execa('openssl', ['req', '-verify', '-noout', '-text'], { input: request.csrPem, all: true });
    expect(text.all).toMatch(/verify OK/i);
    expect(text.all).toMatch(/Subject: CN ?= ?web_01\.example\.test/);
    expect(text.all).toMatch(/sha256WithRSAEncryption/);
    expect(text.all).toMatch(/DNS:web_01\.example\.test, DNS:www\.example\.test\s*$/m);
    const der = await execa('openssl', ['req', '-outform', 'DER'], { input: request.csrPem, encoding: 'buffer' });
    const digest = await execa('openssl', ['dgst', '-sha256', '-r'], { input: der.stdout });
    expect(request.csrFingerprint.replace(/:/g, '').toLowerCase()).toBe(digest.stdout.split(' ')[0]);
    const asn1 = await execa('openssl', ['asn1parse'], { input: request.csrPem });
    expect(asn1.stdout).toMatch(/UTF8STRING\s+:web_01\.example\.test/);
  });

  it('without alt names: no extension request', async () => {
    const request = await generateNodeRequest('plain.example.test', [], 2048);
    const text = await execa('openssl', ['req', '-noout', '-text'], { input: request.csrPem });
    expect(text.stdout).not.toMatch(/Subject Alternative Name/);
    expect(() => new X509Certificate(request.csrPem)).toThrow();
  });

  it('with trusted extensions: requested as Puppet requests them (OCTET STRING holding a DER UTF8String), after the alt names', async () => {
    const extensions = resolveExtensions({ pp_role: 'web', '1.3.6.1.4.1.34380.1.2.1': 'site' });
    const request = await generateNodeRequest('ext.example.test', ['www.example.test'], 2048, extensions);
    const text = await execa('openssl', ['req', '-verify', '-noout', '-text'], { input: request.csrPem, all: true });
    expect(text.all).toMatch(/verify OK/i);
    expect(text.all).toMatch(/DNS:ext\.example\.test, DNS:www\.example\.test/);
    // docs/reference/modern-puppet.md: Puppet's own CSR for pp_role: web has `OCTET STRING [HEX DUMP]:0C03776562`.
    const asn1 = await execa('openssl', ['asn1parse'], { input: request.csrPem });
    expect(asn1.stdout).toMatch(/OBJECT\s+:1\.3\.6\.1\.4\.1\.34380\.1\.1\.13\n.*OCTET STRING\s+\[HEX DUMP\]:0C03776562\n/);
    expect(asn1.stdout).toMatch(/OBJECT\s+:1\.3\.6\.1\.4\.1\.34380\.1\.2\.1\n.*OCTET STRING\s+\[HEX DUMP\]:0C0473697465\n/);
    const noAltNames = await generateNodeRequest('ext2.example.test', [], 2048, extensions);
    const plain = await execa('openssl', ['req', '-noout', '-text'], { input: noAltNames.csrPem });
    expect(plain.stdout).not.toMatch(/Subject Alternative Name/);
    expect(plain.stdout).toMatch(/Requested Extensions:\s*\n\s*1\.3\.6\.1\.4\.1\.34380\.1\.1\.13:/);
  });
});
