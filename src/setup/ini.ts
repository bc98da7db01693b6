/**
 * Rendering espm.ini for `espm_setup`: the values it writes ({@link IniValues}, in the INI's
 * own units) and the file's text ({@link renderConfig}). Reading and validating espm.ini is
 * `src/config.ts`'s; its defaults come from `DEFAULTS` there. Source: `docs/design.md` ("Config").
 *
 * @packageDocumentation
 */
import ini from 'ini';
import type { CaBackendName, ClassifierBackendName } from '../config.js';

/**
 * The values `espm_setup` writes into a new espm.ini, in the INI's own units (seconds). Keys
 * are written in the order given; an optional key that is absent is not written at all.
 */
export interface IniValues {
  server: { host: string; port: number; cert: string; key: string; psk: string; allow: string };
  /** dashboard-rake's keys for that backend (and, as always, the default); the Node Classifier's for pe-node-classifier. */
  classifier: {
    backend: ClassifierBackendName;
    rake?: string;
    rakefile?: string;
    rails_env?: string;
    cwd?: string;
    timeout: number;
    cache_ttl: number;
    worker?: 'on' | 'off';
    ruby?: string;
    /** pe-node-classifier: `https://<console>:4433/classifier-api` */
    url?: string;
    /** pe-node-classifier: environment of the per-node groups and the classes listed */
    environment?: string;
    /** pe-node-classifier: id of the per-node groups' parent */
    parent_group?: string;
    /** pe-node-classifier: RBAC token file; empty = the master's certificate */
    token_file?: string;
    /** enc: the operator's groups YAML. */
    groups_file?: string;
    /** enc: the file the daemon writes for `espm enc`. */
    classification_file?: string;
    /** enc: the site's previous ENC command; empty = none. */
    fallback_enc?: string;
    /** enc: the master's puppet and puppet.conf (its identity for environment_classes). */
    puppet?: string;
    config?: string;
  };
  ca: {
    backend: CaBackendName;
    puppet: string;
    puppetserver: string;
    config: string;
    ssldir: string;
    timeout: number;
    keep_private_keys: boolean;
    /** puppetserver-api only: RSA key size of node keys, bits. */
    key_bits?: number;
    /** puppetserver-api only: node keys generated ahead of need. */
    key_pool?: number;
    /** puppetserver-api only: the CA server; empty = puppet's `ca_server`/`ca_port`. */
    api_url?: string;
    /** puppetserver-api only: client certificate; empty = puppet's `hostcert`. */
    api_cert?: string;
    /** puppetserver-api only: its private key; empty = puppet's `hostprivkey`. */
    api_key?: string;
    /** puppetserver-api only: CA bundle verifying the server; empty = puppet's `localcacert`. */
    api_ca?: string;
  };
  /** Written only when detection found PuppetDB (PE ≥ 2016). */
  puppetdb?: { url: string; timeout: number };
  /** Written only for a CA with policy-based autosigning (puppetserver-api, puppetserver-ca): token signing. */
  autosign?: { token_ttl: number; fallback: string; fallback_timeout: number; socket: string };
  state: { dir: string };
  log: { level: string; format: string };
}

/**
 * Renders a complete espm.ini from values.
 *
 * @param values - every key; see {@link IniValues}. A key whose value is `undefined` is left
 *   out (`ini` would write the word `undefined`).
 * @returns the INI text, with a header comment pointing at the documented example
 */
export function renderConfig(values: IniValues): string {
  const header =
    '; espm configuration, written by espm_setup.\n' +
    '; Every key is documented in etc/espm.ini.example. Durations are in seconds.\n' +
    '; This file holds the pre-shared key: keep it mode 0600, owned by root.\n\n';
  const sections = Object.fromEntries(
    Object.entries(values).map(([section, keys]) => [
      section,
      Object.fromEntries(Object.entries(keys as Record<string, unknown>).filter(([, value]) => value !== undefined)),
    ]),
  );
  return header + ini.stringify(sections, { whitespace: true, newline: false });
}
