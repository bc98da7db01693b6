/**
 * `[ca]`: the keys every backend has, the keys of the backends that drive the master's own
 * Puppet CA, and those of `puppetserver-api`, each block with the typed settings it becomes.
 * Source: `docs/design.md` ("Config", "Backends"), `docs/reference/puppet-ca.md`.
 *
 * Adding a CA backend: its name in `CA_BACKENDS` (`src/config/defaults.ts`), its defaults in
 * `DEFAULTS.ca`, and here one keys object, one settings function and one variant line in
 * {@link caSection}. The `Config` type follows.
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import { backendSection } from './backend-section.js';
import { CA_BACKENDS, DEFAULTS } from './defaults.js';
import { absolutePath, count, flag, optionalAbsolutePath, optionalHttpsOrigin, seconds } from './values.js';

const d = DEFAULTS.ca;

/** Keys of every CA backend. */
const commonKeys = {
  timeout: seconds(1).default(d.timeout),
};

function commonSettings(k: z.output<z.ZodObject<typeof commonKeys>>) {
  return {
    /** Timeout of one CA operation (one command, one HTTP request), ms. */
    timeoutMs: k.timeout * 1000,
  };
}

// --- the master's Puppet: puppet-cert, puppetserver-ca, puppetserver-api

const puppetKeys = {
  puppet: absolutePath.default(d.puppet),
  puppetserver: absolutePath.default(d.puppetserver),
  config: absolutePath.default(d.config),
  ssldir: optionalAbsolutePath('ask puppet'),
  keep_private_keys: flag.default(d.keep_private_keys),
};

function puppetSettings(k: z.output<z.ZodObject<typeof puppetKeys>>) {
  return {
    /** Absolute path of `puppet` (puppet-cert; the others ask it for settings). */
    puppet: k.puppet,
    /** Absolute path of `puppetserver` (puppetserver-ca backend). */
    puppetserver: k.puppetserver,
    /** Absolute path of the master's puppet.conf. */
    config: k.config,
    /** Absolute path of the master's ssldir; undefined = ask puppet. */
    ssldir: k.ssldir,
    /** Keep a node's private key in the master's ssldir after handing it out. */
    keepPrivateKeys: k.keep_private_keys,
  };
}

// --- puppetserver-api: Puppet Server's CA HTTP API

const apiKeys = {
  key_bits: count('bits', 2048, 16384, 'must be at least 2048 bits').default(d.key_bits),
  key_pool: count('keys', 0, 100, 'must be 0 (no pool) or more').default(d.key_pool),
  api_url: optionalHttpsOrigin('ask puppet'),
  api_cert: optionalAbsolutePath('ask puppet'),
  api_key: optionalAbsolutePath('ask puppet'),
  api_ca: optionalAbsolutePath('ask puppet'),
};

function apiSettings(k: z.output<z.ZodObject<typeof apiKeys>>) {
  return {
    /** RSA modulus size of the node keys generated in process, bits (2048–16384). */
    keyBits: k.key_bits,
    /** Node keys kept generated ahead of need, in memory only (0–100; 0 = generate per issue). */
    keyPool: k.key_pool,
    /** The CA server, `https://HOST[:PORT]` (origin); undefined = puppet's `ca_server`/`ca_port`. */
    apiUrl: k.api_url,
    /** Absolute path of the PEM client certificate; undefined = puppet's `hostcert`. */
    apiCert: k.api_cert,
    /** Absolute path of its PEM private key; undefined = puppet's `hostprivkey`. */
    apiKey: k.api_key,
    /** Absolute path of the PEM CA bundle verifying the server; undefined = puppet's `localcacert`. */
    apiCa: k.api_ca,
  };
}

/**
 * Settings at their defaults, carried by the variants of backends that do not read them:
 * today's CA adapters read every key off the whole `Config['ca']`. Remove this carry (and its
 * spreads below) once each adapter takes its `CaConfig<'…'>`.
 */
const CARRIED = {
  ...puppetSettings(z.object(puppetKeys).parse({})),
  ...apiSettings(z.object(apiKeys).parse({})),
};

// --- variants, one per backend

const puppetCert = z
  .strictObject({ backend: z.literal('puppet-cert'), ...commonKeys, ...puppetKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k), ...puppetSettings(k) }));

const puppetserverCa = z
  .strictObject({ backend: z.literal('puppetserver-ca'), ...commonKeys, ...puppetKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k), ...puppetSettings(k) }));

const puppetserverApi = z
  .strictObject({ backend: z.literal('puppetserver-api'), ...commonKeys, ...puppetKeys, ...apiKeys })
  .transform((k) => ({ backend: k.backend, ...commonSettings(k), ...puppetSettings(k), ...apiSettings(k) }));

const sandbox = z
  .strictObject({ backend: z.literal('sandbox'), ...commonKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k) }));

/**
 * The `[ca]` section: `backend` (default {@link DEFAULTS}`.ca.backend`) chooses which keys are
 * validated; the output is a union discriminated by `backend`.
 */
export const caSection = backendSection(CA_BACKENDS, d.backend, {
  'puppet-cert': puppetCert,
  'puppetserver-ca': puppetserverCa,
  'puppetserver-api': puppetserverApi,
  sandbox,
});
