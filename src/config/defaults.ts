/**
 * The one place espm's configuration defaults live: backend names, the paths of each kind of
 * Puppet master, and {@link DEFAULTS} (every default of espm.ini, by section and key, in the
 * INI's own units). The zod schema (`src/config/*.ts`), `espm_setup`, the benches and
 * `etc/espm.ini.example` all take them from here. Source: `docs/design.md` ("Config").
 *
 * @packageDocumentation
 */

/**
 * Classifier backends: `dashboard-rake` (the PE 2.x/3.x console's rake tasks); `sandbox` (a
 * seeded PE 2.5 console in pure TypeScript, JSON state in `<state dir>/sandbox/`, for
 * integration testing without a Puppet master — not for production, warned about at start-up);
 * `pe-node-classifier` (PE 2016–2025: the Node Classifier service's API v1, one per-node group);
 * `enc` (open-source Puppet / OpenVox 6–8: `espm enc` is puppetserver's exec ENC for the nodes
 * espm created; docs/design.md "`enc`").
 * A new backend adds its name here and its key block in `src/config/classifier.ts`.
 */
export const CLASSIFIER_BACKENDS = ['dashboard-rake', 'sandbox', 'pe-node-classifier', 'enc'] as const;
/**
 * CA backends: `puppet-cert` (`puppet cert`, Puppet ≤ 5), `puppetserver-ca` (`puppetserver ca`,
 * Puppet ≥ 6), `puppetserver-api` (Puppet Server's CA HTTP API, Puppet ≥ 6: no process per
 * certificate); `sandbox` (a node-forge CA under `<state dir>/sandbox/ca/`, for integration
 * testing without a Puppet master — not for production, warned about at start-up).
 * A new backend adds its name here and its key block in `src/config/ca.ts`.
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
 * Source: `docs/reference/dashboard-rake.md` (PE 2.x/3.x `console_rake_api`).
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
 * Source: `docs/reference/puppet-ca.md`.
 */
export const AIO_PATHS = {
  puppet: '/opt/puppetlabs/bin/puppet',
  puppetserver: '/opt/puppetlabs/bin/puppetserver',
  puppetConf: '/etc/puppetlabs/puppet/puppet.conf',
  ssldir: '/etc/puppetlabs/puppet/ssl',
} as const;

/**
 * Paths of a Puppet ≥ 6 master from Debian's packages (`/usr/bin/puppetserver`,
 * confdir `/etc/puppet`). Source: `docs/reference/puppet-ca.md`, Debian bookworm.
 */
export const DEBIAN_PATHS = {
  puppet: '/usr/bin/puppet',
  puppetserver: '/usr/bin/puppetserver',
  puppetConf: '/etc/puppet/puppet.conf',
  ssldir: '/var/lib/puppet/ssl',
} as const;

/**
 * Paths of the `enc` classifier: the classification file the daemon writes for `espm enc`
 * (outside the root-only config and state directories: puppetserver's user reads it) and the
 * operator's groups file. Source: docs/design.md ("`enc`").
 */
export const ENC_PATHS = {
  classificationFile: '/opt/espm/enc/classification.json',
  groupsFile: '/opt/espm/etc/groups.yaml',
} as const;

/** Default location of the config written by `espm_setup` and read by `espm`. */
export const DEFAULT_CONFIG_DIR = '/opt/espm/etc';
/** Default config file path (`<DEFAULT_CONFIG_DIR>/espm.ini`). */
export const DEFAULT_CONFIG_PATH = `${DEFAULT_CONFIG_DIR}/espm.ini`;
/** Name of the config file inside the config directory. */
export const CONFIG_FILE_NAME = 'espm.ini';
/** Name of the TLS certificate file inside the certificate directory. */
export const TLS_CERT_FILE_NAME = 'espm.crt';
/** Name of the TLS private key file inside the certificate directory. */
export const TLS_KEY_FILE_NAME = 'espm.key';

/**
 * Every default of espm.ini, by section and INI key, in the INI's own units (seconds).
 * A key absent here has no default (it must be given, or it is optional); an empty string
 * means "unset" (`[puppetdb] url`: off; `[autosign] fallback`: none). Keys of every backend of
 * a section are listed flat; the schema applies a backend's only when that backend is chosen.
 */
export const DEFAULTS = {
  server: {
    host: '0.0.0.0',
    port: 8443,
    // Connections before authentication (src/http/connection-guard.ts); seconds, counts.
    /** seconds: a TLS handshake must complete within this */
    handshake_timeout: 10,
    /** seconds: after the handshake, the first byte of a request must arrive within this */
    first_request_timeout: 5,
    /** seconds: a request's complete headers within this of its start */
    headers_timeout: 10,
    /** seconds: a whole request, headers and body, within this of its start (≥ headers_timeout) */
    request_timeout: 30,
    /** seconds: an idle keep-alive connection is closed after this */
    keepalive_timeout: 5,
    /** seconds: SIGTERM/SIGINT waits this long for in-flight requests */
    drain_timeout: 15,
    /** concurrent connections, all client addresses together */
    max_connections: 1024,
    /** concurrent connections of one client address (IPv6: per /56) */
    max_connections_per_address: 256,
    /** connections: once this many were open at once, freed memory is given back to the kernel after they close (0 = never) */
    release_memory_after: 128,
  },
  classifier: {
    backend: 'dashboard-rake' as ClassifierBackendName,
    /** seconds */
    timeout: 120,
    /** seconds */
    cache_ttl: 60,
    // dashboard-rake
    rake: PE_PATHS.rake,
    rakefile: PE_PATHS.rakefile,
    rails_env: 'production',
    cwd: PE_PATHS.consoleDir,
    worker: true,
    /** the console's Ruby; when the key is absent, `ruby` beside `rake` (this path on PE) */
    ruby: PE_PATHS.ruby,
    /** console tasks run at once: warm workers (worker on) or rake processes (worker off); 0: the machine's core count + 1 */
    workers: 0,
    /** tasks one console worker runs before it is replaced */
    worker_max_tasks: 1000,
    /** seconds one console worker lives before it is replaced */
    worker_max_age: 3600,
    /** seconds a worker may sit idle before its database connection is refreshed (before the next task) */
    worker_idle_refresh: 600,
    // pe-node-classifier (url has no default: espm_setup writes the console's)
    /** the environment whose classes are listed and of espm's per-node groups */
    environment: 'production',
    /** id of the group espm's per-node groups are made under (PE's "All Nodes" root group) */
    parent_group: '00000000-0000-4000-8000-000000000000',
    // enc (docs/design.md "`enc`")
    /** the operator's YAML: top-level keys are the node groups */
    groups_file: ENC_PATHS.groupsFile,
    /** written by the daemon for `espm enc` (no secret; readable by its directory's group) */
    classification_file: ENC_PATHS.classificationFile,
    /** the site's previous ENC command (Puppet splits it on whitespace); empty = `classes: {}` for other nodes */
    fallback_enc: '',
    /** the master's puppet (asked once for hostcert, hostprivkey, localcacert, server, masterport) */
    puppet: AIO_PATHS.puppet,
    /** the master's puppet.conf */
    config: AIO_PATHS.puppetConf,
  },
  ca: {
    backend: 'puppet-cert' as CaBackendName,
    /** seconds */
    timeout: 60,
    // puppet-cert, puppetserver-ca, puppetserver-api (the master's Puppet)
    puppet: PE_PATHS.puppet,
    puppetserver: AIO_PATHS.puppetserver,
    config: PE_PATHS.puppetConf,
    keep_private_keys: false,
    // puppetserver-api
    /** bits: RSA key size of node keys made in process, as `puppetserver ca generate` */
    key_bits: 4096,
    /** node keys kept generated ahead of need (memory only); 0 = none */
    key_pool: 10,
  },
  puppetdb: {
    /** `https://HOST:PORT` of PuppetDB; empty = off */
    url: '',
    /** seconds */
    timeout: 30,
    /** the master's puppet (asked once for hostcert, hostprivkey, localcacert: espm talks to PuppetDB as the master) */
    puppet: AIO_PATHS.puppet,
    /** the master's puppet.conf */
    config: AIO_PATHS.puppetConf,
    /** seconds before the first background retry of a pending deactivation (doubled per failure) */
    retry_interval: 30,
    /** seconds: the retry interval doubles up to this */
    retry_max_interval: 900,
  },
  autosign: {
    /** seconds a signing token stays valid (2 h) */
    token_ttl: 7200,
    /** the site's previous policy executable (absolute path); empty = none */
    fallback: '',
    /** seconds the fallback policy executable may run before it is killed (its CSR is then refused) */
    fallback_timeout: 30,
    /** the daemon's Unix socket `espm autosign` asks (its directory: root, group puppetserver's, 0750, made by espm_setup) */
    socket: '/opt/espm/autosign/espm.sock',
  },
  state: { dir: '/opt/espm/var' },
  log: { level: 'info' as (typeof LOG_LEVELS)[number], format: 'json' as (typeof LOG_FORMATS)[number] },
} as const;
