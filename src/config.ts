/**
 * espm.ini → typed, validated {@link Config}.
 *
 * This module is the one place where espm's defaults live: `espm_setup` writes them, the
 * daemon fills them in for keys an operator left out, and `etc/espm.ini.example` documents
 * them. The INI is parsed with `ini` and validated with `zod`; every error names the
 * section and key it is about (`[server] port: …`).
 *
 * @packageDocumentation
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { isIP } from 'node:net';
import ini from 'ini';
import { z } from 'zod';

/**
 * Classifier backends: `dashboard-rake` (the PE 2.x/3.x console's rake tasks); `sandbox` (a
 * seeded PE 2.5 console in pure TypeScript, JSON state in `<state dir>/sandbox/`, for
 * integration testing without a Puppet master — not for production, warned about at start-up).
 */
export const CLASSIFIER_BACKENDS = ['dashboard-rake', 'sandbox'] as const;
/**
 * CA backends: `puppet-cert` (`puppet cert`, Puppet ≤ 5), `puppetserver-ca` (`puppetserver ca`,
 * Puppet ≥ 6), `puppetserver-api` (Puppet Server's CA HTTP API, Puppet ≥ 6: no process per
 * certificate); `sandbox` (a node-forge CA under `<state dir>/sandbox/ca/`, for integration
 * testing without a Puppet master — not for production, warned about at start-up).
 */
export const CA_BACKENDS = ['puppet-cert', 'puppetserver-ca', 'puppetserver-api', 'sandbox'] as const;
/** Log levels accepted by `[log] level` (pino's). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** Log formats accepted by `[log] format`: JSON lines, or text for a person at a terminal. */
export const LOG_FORMATS = ['json', 'text'] as const;

/** A classifier backend name, as written in `[classifier] backend`. */
export type ClassifierBackendName = (typeof CLASSIFIER_BACKENDS)[number];
/** A CA backend name, as written in `[ca] backend`. */
export type CaBackendName = (typeof CA_BACKENDS)[number];

/**
 * Paths of a Puppet Enterprise 2.x/3.x master (the console's rake tasks, `/opt/puppet`).
 * Source: PE 2.x/3.x docs (`console_rake_api`) and `../shared/reference/dashboard-rake.md`.
 */
export const PE_PATHS = {
  rake: '/opt/puppet/bin/rake',
  ruby: '/opt/puppet/bin/ruby',
  rakefile: '/opt/puppet/share/puppet-dashboard/Rakefile',
  consoleDir: '/opt/puppet/share/puppet-dashboard',
  puppet: '/opt/puppet/bin/puppet',
  puppetConf: '/etc/puppetlabs/puppet/puppet.conf',
  ssldir: '/etc/puppetlabs/puppet/ssl',
} as const;

/**
 * Paths of a Puppet ≥ 6 master from Puppet's own (AIO) packages, `/opt/puppetlabs`.
 */
export const AIO_PATHS = {
  puppet: '/opt/puppetlabs/bin/puppet',
  puppetserver: '/opt/puppetlabs/bin/puppetserver',
  puppetConf: '/etc/puppetlabs/puppet/puppet.conf',
  ssldir: '/etc/puppetlabs/puppet/ssl',
} as const;

/**
 * Paths of a Puppet ≥ 6 master from Debian's packages (`/usr/bin/puppetserver`,
 * confdir `/etc/puppet`). Source: `../shared/reference/puppet-ca.md`, Debian bookworm.
 */
export const DEBIAN_PATHS = {
  puppet: '/usr/bin/puppet',
  puppetserver: '/usr/bin/puppetserver',
  puppetConf: '/etc/puppet/puppet.conf',
  ssldir: '/var/lib/puppet/ssl',
} as const;

/** Default location of the config written by `espm_setup` and read by `espm`. */
export const DEFAULT_CONFIG_DIR = '/opt/espm/etc';
/** Default config file path (`<DEFAULT_CONFIG_DIR>/espm.ini`). */
export const DEFAULT_CONFIG_PATH = `${DEFAULT_CONFIG_DIR}/espm.ini`;
/** Name of the config file inside the config directory. */
export const CONFIG_FILE_NAME = 'espm.ini';
/** Names of the TLS certificate and key inside the certificate directory. */
export const TLS_CERT_FILE_NAME = 'espm.crt';
/** Name of the TLS private key file inside the certificate directory. */
export const TLS_KEY_FILE_NAME = 'espm.key';

/**
 * Every default of espm.ini, by section and key, in the INI's own units (seconds).
 * `undefined` means the key has no default (it must be given, or it is optional).
 */
export const DEFAULTS = {
  server: { host: '0.0.0.0', port: 8443 },
  classifier: {
    backend: 'dashboard-rake' as ClassifierBackendName,
    rake: PE_PATHS.rake,
    rakefile: PE_PATHS.rakefile,
    rails_env: 'production',
    cwd: PE_PATHS.consoleDir,
    /** seconds */
    timeout: 120,
    /** seconds */
    cache_ttl: 60,
    worker: true,
    /** the console's Ruby; when the key is absent, `ruby` beside `rake` (this path on PE) */
    ruby: PE_PATHS.ruby,
    /** tasks one console worker runs before it is replaced */
    worker_max_tasks: 1000,
    /** seconds one console worker lives before it is replaced */
    worker_max_age: 3600,
    /** seconds a worker may sit idle before its database connection is refreshed (before the next task) */
    worker_idle_refresh: 600,
  },
  ca: {
    backend: 'puppet-cert' as CaBackendName,
    puppet: PE_PATHS.puppet,
    puppetserver: AIO_PATHS.puppetserver,
    config: PE_PATHS.puppetConf,
    /** seconds */
    timeout: 60,
    keep_private_keys: false,
    /** bits: RSA key size of node keys made in process (puppetserver-api), as `puppetserver ca generate` */
    key_bits: 4096,
    /** node keys the puppetserver-api backend keeps generated ahead of need (memory only); 0 = none */
    key_pool: 10,
  },
  state: { dir: '/opt/espm/var' },
  log: { level: 'info' as (typeof LOG_LEVELS)[number], format: 'json' as (typeof LOG_FORMATS)[number] },
} as const;

/** Limits of the HTTP layer that are not operator settings. */
export const HTTP_LIMITS = {
  /** Largest accepted JSON body, bytes (64 KiB, DESIGN.md). */
  bodyLimitBytes: 64 * 1024,
  /** Failed authentications per client address per window before 429. */
  authFailuresPerWindow: 10,
  /** Window of the authentication throttle, ms. */
  authFailureWindowMs: 60_000,
  /** How long SIGTERM/SIGINT waits for in-flight requests before closing connections, ms. */
  drainTimeoutMs: 15_000,
  /** Lowest TLS version the server accepts. */
  minTlsVersion: 'TLSv1.2',
} as const;

/** The validated, typed configuration of one espm daemon. Durations are in ms. */
export interface Config {
  /** Absolute path of the INI file this was read from. */
  readonly path: string;
  readonly server: {
    /** Address to listen on (IPv4/IPv6 literal or host name). */
    readonly host: string;
    /** TCP port, 1–65535. */
    readonly port: number;
    /** Absolute path of the PEM certificate served to clients. */
    readonly cert: string;
    /** Absolute path of the PEM private key of `cert`. */
    readonly key: string;
    /** The pre-shared key callers present as `Authorization: Bearer <psk>`. Secret. */
    readonly psk: string;
    /** Client addresses allowed to connect (CIDRs or single addresses); empty = all. */
    readonly allow: readonly string[];
  };
  readonly classifier: {
    readonly backend: ClassifierBackendName;
    /** Absolute path of the console's rake. */
    readonly rake: string;
    /** Absolute path of the console's Rakefile. */
    readonly rakefile: string;
    /** `RAILS_ENV` passed to every task. */
    readonly railsEnv: string;
    /** Working directory of rake (the console's directory). */
    readonly cwd: string;
    /** Timeout of one classifier command, ms. */
    readonly timeoutMs: number;
    /** How long group/class lists are cached, ms (0 = no cache). */
    readonly cacheTtlMs: number;
    /** Whether the warm console worker is used. */
    readonly worker: boolean;
    /** Absolute path of the console's Ruby (runs the worker); default `ruby` beside `rake`. */
    readonly ruby: string;
    /** Tasks one console worker runs before it is replaced (in the background). */
    readonly workerMaxTasks: number;
    /** How long one console worker lives before it is replaced (in the background), ms. */
    readonly workerMaxAgeMs: number;
    /** Idle time after which the worker's database connection is refreshed before a task, ms. */
    readonly workerIdleRefreshMs: number;
  };
  readonly ca: {
    readonly backend: CaBackendName;
    /** Absolute path of `puppet` (puppet-cert backend). */
    readonly puppet: string;
    /** Absolute path of `puppetserver` (puppetserver-ca backend). */
    readonly puppetserver: string;
    /** Absolute path of the master's puppet.conf. */
    readonly config: string;
    /** Absolute path of the master's ssldir; undefined = ask puppet. */
    readonly ssldir: string | undefined;
    /** Timeout of one CA command, ms. */
    readonly timeoutMs: number;
    /** Keep a node's private key in the master's ssldir after handing it out. */
    readonly keepPrivateKeys: boolean;
    /** RSA modulus size of the node keys the puppetserver-api backend generates, bits (2048–16384). */
    readonly keyBits: number;
    /** puppetserver-api: node keys kept generated ahead of need, in memory only (0–100; 0 = generate per issue). */
    readonly keyPool: number;
    /** puppetserver-api: the CA server, `https://HOST[:PORT]`; undefined = puppet's `ca_server`/`ca_port`. */
    readonly apiUrl: string | undefined;
    /** puppetserver-api: absolute path of the PEM client certificate; undefined = puppet's `hostcert`. */
    readonly apiCert: string | undefined;
    /** puppetserver-api: absolute path of its PEM private key; undefined = puppet's `hostprivkey`. */
    readonly apiKey: string | undefined;
    /** puppetserver-api: absolute path of the PEM CA bundle verifying the server; undefined = puppet's `localcacert`. */
    readonly apiCa: string | undefined;
  };
  readonly state: {
    /** Absolute path of the state directory (ledger, lock, sandbox state). */
    readonly dir: string;
  };
  readonly log: {
    readonly level: (typeof LOG_LEVELS)[number];
    readonly format: (typeof LOG_FORMATS)[number];
  };
}

/**
 * A configuration error: the file is unreadable, not INI, or a key is missing, unknown or
 * invalid. `message` names the file and the `[section] key` concerned; the CLI exits 2.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

// ---------------------------------------------------------------------------------------
// schema

const absolutePath = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .refine((p) => isAbsolute(p), 'must be an absolute path');

/** Seconds as written in the INI: a positive integer. */
const seconds = (min: number) =>
  z.coerce.number().int(`must be a whole number of seconds`).min(min, `must be at least ${min} s`);

/** `ini` turns `true`/`false` into booleans; also accept on/off/yes/no/1/0. */
const flag = z.union([
  z.boolean(),
  z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(['true', 'false', 'on', 'off', 'yes', 'no', '1', '0']))
    .transform((v) => ['true', 'on', 'yes', '1'].includes(v)),
]);

/** One CIDR or address of `[server] allow`. */
function isAddressOrCidr(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

const allowList = z
  .string()
  .transform((s) =>
    s
      .split(/[\s,]+/)
      .map((e) => e.trim())
      .filter((e) => e.length > 0),
  )
  .refine((entries) => entries.every(isAddressOrCidr), {
    message: 'must be a comma-separated list of IP addresses or CIDRs (e.g. 10.0.0.0/8, 192.0.2.7)',
  });

const serverSection = z.strictObject({
  host: z.string().trim().min(1).default(DEFAULTS.server.host),
  port: z.coerce.number().int().min(1).max(65535, 'must be a port between 1 and 65535').default(DEFAULTS.server.port),
  cert: absolutePath,
  key: absolutePath,
  psk: z
    .string()
    .trim()
    .min(32, 'must be at least 32 characters (espm_setup writes 48)')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
  allow: allowList.default([]),
});

const classifierSection = z.strictObject({
  backend: z.enum(CLASSIFIER_BACKENDS).default(DEFAULTS.classifier.backend),
  rake: absolutePath.default(DEFAULTS.classifier.rake),
  rakefile: absolutePath.default(DEFAULTS.classifier.rakefile),
  rails_env: z.string().trim().regex(/^\w+$/, 'must be a Rails environment name').default(DEFAULTS.classifier.rails_env),
  cwd: absolutePath.default(DEFAULTS.classifier.cwd),
  timeout: seconds(1).default(DEFAULTS.classifier.timeout),
  cache_ttl: seconds(0).default(DEFAULTS.classifier.cache_ttl),
  worker: flag.default(DEFAULTS.classifier.worker),
  ruby: absolutePath.optional(),
  worker_max_tasks: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').default(DEFAULTS.classifier.worker_max_tasks),
  worker_max_age: seconds(1).default(DEFAULTS.classifier.worker_max_age),
  worker_idle_refresh: seconds(1).default(DEFAULTS.classifier.worker_idle_refresh),
});

/** An optional absolute path; empty = unset. */
const optionalAbsolutePath = z
  .string()
  .trim()
  .refine((p) => p === '' || isAbsolute(p), 'must be an absolute path (or empty: ask puppet)')
  .optional();

/** `https://HOST[:PORT]` with nothing else (`[ca] api_url`). */
function isHttpsOrigin(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return url.protocol === 'https:' && url.hostname !== '' && url.username === '' && url.password === '' &&
    (url.pathname === '/' || url.pathname === '') && url.search === '' && url.hash === '';
}

const caSection = z.strictObject({
  backend: z.enum(CA_BACKENDS).default(DEFAULTS.ca.backend),
  puppet: absolutePath.default(DEFAULTS.ca.puppet),
  puppetserver: absolutePath.default(DEFAULTS.ca.puppetserver),
  config: absolutePath.default(DEFAULTS.ca.config),
  ssldir: z
    .string()
    .trim()
    .refine((p) => p === '' || isAbsolute(p), 'must be an absolute path (or empty: ask puppet)')
    .optional(),
  timeout: seconds(1).default(DEFAULTS.ca.timeout),
  keep_private_keys: flag.default(DEFAULTS.ca.keep_private_keys),
  key_bits: z.coerce
    .number()
    .int('must be a whole number of bits')
    .min(2048, 'must be at least 2048 bits')
    .max(16384, 'must be at most 16384 bits')
    .default(DEFAULTS.ca.key_bits),
  key_pool: z.coerce
    .number()
    .int('must be a whole number of keys')
    .min(0, 'must be 0 (no pool) or more')
    .max(100, 'must be at most 100 keys')
    .default(DEFAULTS.ca.key_pool),
  api_url: z
    .string()
    .trim()
    .refine((u) => u === '' || isHttpsOrigin(u), 'must be https://HOST or https://HOST:PORT (no path, query or credentials), or empty: ask puppet')
    .optional(),
  api_cert: optionalAbsolutePath,
  api_key: optionalAbsolutePath,
  api_ca: optionalAbsolutePath,
});

const stateSection = z.strictObject({ dir: absolutePath.default(DEFAULTS.state.dir) });

const logSection = z.strictObject({
  level: z.enum(LOG_LEVELS).default(DEFAULTS.log.level),
  format: z.enum(LOG_FORMATS).default(DEFAULTS.log.format),
});

const iniSchema = z.strictObject({
  server: serverSection,
  classifier: classifierSection.default(classifierSection.parse({})),
  ca: caSection.default(caSection.parse({})),
  state: stateSection.default(stateSection.parse({})),
  log: logSection.default(logSection.parse({})),
});

/** Renders a zod issue path as `[section] key`, or `[section]` / `top level`. */
function describePath(path: readonly PropertyKey[]): string {
  const [section, key] = path.map(String);
  if (section === undefined) return 'top level';
  return key === undefined ? `[${section}]` : `[${section}] ${key}`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    const where = issue.path.length === 0 ? 'unknown section' : `unknown key in ${describePath(issue.path)}`;
    return issue.keys.map((k) => `${where}: ${k}`).join('; ');
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return `${describePath(issue.path)}: missing (required)`;
  }
  return `${describePath(issue.path)}: ${issue.message}`;
}

/**
 * Validates an already-parsed INI object (sections → keys → strings/booleans).
 *
 * @param parsed - the output of `ini.parse`
 * @param path - the file it came from, for messages and {@link Config.path}
 * @returns the typed config, durations converted from seconds to ms
 * @throws {@link ConfigError} naming every invalid, missing or unknown `[section] key`
 */
export function parseConfig(parsed: unknown, path: string): Config {
  const result = iniSchema.safeParse(parsed, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map(describeIssue);
    throw new ConfigError(`${path}: ${problems.join('; ')}`);
  }
  const c = result.data;
  return {
    path,
    server: { ...c.server },
    classifier: {
      backend: c.classifier.backend,
      rake: c.classifier.rake,
      rakefile: c.classifier.rakefile,
      railsEnv: c.classifier.rails_env,
      cwd: c.classifier.cwd,
      timeoutMs: c.classifier.timeout * 1000,
      cacheTtlMs: c.classifier.cache_ttl * 1000,
      worker: c.classifier.worker,
      ruby: c.classifier.ruby ?? join(dirname(c.classifier.rake), 'ruby'),
      workerMaxTasks: c.classifier.worker_max_tasks,
      workerMaxAgeMs: c.classifier.worker_max_age * 1000,
      workerIdleRefreshMs: c.classifier.worker_idle_refresh * 1000,
    },
    ca: {
      backend: c.ca.backend,
      puppet: c.ca.puppet,
      puppetserver: c.ca.puppetserver,
      config: c.ca.config,
      ssldir: c.ca.ssldir === '' ? undefined : c.ca.ssldir,
      timeoutMs: c.ca.timeout * 1000,
      keepPrivateKeys: c.ca.keep_private_keys,
      keyBits: c.ca.key_bits,
      keyPool: c.ca.key_pool,
      apiUrl: c.ca.api_url === undefined || c.ca.api_url === '' ? undefined : new URL(c.ca.api_url).origin,
      apiCert: c.ca.api_cert === '' ? undefined : c.ca.api_cert,
      apiKey: c.ca.api_key === '' ? undefined : c.ca.api_key,
      apiCa: c.ca.api_ca === '' ? undefined : c.ca.api_ca,
    },
    state: { dir: c.state.dir },
    log: { ...c.log },
  };
}

/**
 * Refuses a secret file (config, TLS key) that group or others can read or write: it holds
 * the PSK or a private key, and espm runs as root.
 *
 * @param path - absolute path of the file
 * @param what - how the message names it, e.g. `config file` or `[server] key`
 * @throws {@link ConfigError} if the file's mode has any group/other bit set
 */
export function assertPrivateFile(path: string, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      `${what} ${path} is readable or writable by group/others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `it holds a secret: chmod 600 ${path}`,
    );
  }
}

/**
 * Reads, parses and validates espm.ini.
 *
 * @param path - absolute or relative path of the INI file
 * @returns the validated {@link Config}
 * @throws {@link ConfigError} if the file cannot be read, is group/world accessible, or any
 *   key is missing, unknown or invalid (the message names the file and each `[section] key`)
 */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
    assertPrivateFile(path, 'config file');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  return parseConfig(ini.parse(text), path);
}

/**
 * The values `espm_setup` writes into a new espm.ini, in the INI's own units. Keys are written
 * in the order given; an optional key that is absent is not written at all.
 */
export interface IniValues {
  server: { host: string; port: number; cert: string; key: string; psk: string; allow: string };
  classifier: {
    backend: ClassifierBackendName;
    rake: string;
    rakefile: string;
    rails_env: string;
    cwd: string;
    timeout: number;
    cache_ttl: number;
    worker: 'on' | 'off';
    ruby: string;
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
  state: { dir: string };
  log: { level: string; format: string };
}

/**
 * Renders a complete espm.ini (every key of DESIGN.md's config) from values.
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
