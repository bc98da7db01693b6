/**
 * `[classifier]`: the keys every backend has, and one block per backend (its INI keys and the
 * typed settings they become). Source: `docs/design.md` ("Config", "Backends").
 *
 * Adding a classifier backend: its name in `CLASSIFIER_BACKENDS` (`src/config/defaults.ts`),
 * its defaults in `DEFAULTS.classifier`, and here one keys object, one settings function and one
 * variant line in {@link classifierSection}. The `Config` type follows.
 *
 * @packageDocumentation
 */
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { backendSection } from './backend-section.js';
import { CLASSIFIER_BACKENDS, DEFAULTS } from './defaults.js';
import { absolutePath, flag, httpsBaseUrl, optionalAbsolutePath, optionalHttpsOrigin, seconds } from './values.js';

/**
 * Console tasks at once for `[classifier] workers = 0`: the core count (`os.availableParallelism()`)
 * plus one. A console task is mostly CPU-bound Ruby (Rails, ActiveRecord) but also waits on the
 * console's MySQL; one more than the cores keeps every core busy while one task waits (the
 * `make -j N+1` rule), and no more, so tasks do not merely share the cores. Measured with the
 * console double (bench/RESULTS.md, issue #19): bench 3 on 2 cores, 2 at once 1.309× / 1.416× the
 * floor (worker / process), 3 at once 1.051× / 1.025× (goal ≤ 1.15).
 *
 * @returns a whole number ≥ 2
 */
export function consoleConcurrencyForMachine(): number {
  return availableParallelism() + 1;
}

const d = DEFAULTS.classifier;

/** Keys of every classifier backend. */
const commonKeys = {
  timeout: seconds(1).default(d.timeout),
  cache_ttl: seconds(0).default(d.cache_ttl),
};

function commonSettings(k: z.output<z.ZodObject<typeof commonKeys>>) {
  return {
    /** Timeout of one classifier operation (one command, one request), ms. */
    timeoutMs: k.timeout * 1000,
    /** How long group/class lists are cached, ms (0 = no cache). */
    cacheTtlMs: k.cache_ttl * 1000,
  };
}

// --- dashboard-rake: the PE 2.x/3.x console's rake tasks (docs/reference/dashboard-rake.md)

const dashboardRakeKeys = {
  rake: absolutePath.default(d.rake),
  rakefile: absolutePath.default(d.rakefile),
  rails_env: z.string().trim().regex(/^\w+$/, 'must be a Rails environment name').default(d.rails_env),
  cwd: absolutePath.default(d.cwd),
  worker: flag.default(d.worker),
  ruby: absolutePath.optional(),
  workers: z.coerce.number().int('must be a whole number').min(0, 'must be 0 (the core count + 1) or more').max(64, 'must be at most 64').default(d.workers),
  worker_max_tasks: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').default(d.worker_max_tasks),
  worker_max_age: seconds(1).default(d.worker_max_age),
  worker_idle_refresh: seconds(1).default(d.worker_idle_refresh),
};

function dashboardRakeSettings(k: z.output<z.ZodObject<typeof dashboardRakeKeys>>) {
  return {
    /** Absolute path of the console's rake. */
    rake: k.rake,
    /** Absolute path of the console's Rakefile. */
    rakefile: k.rakefile,
    /** `RAILS_ENV` passed to every task. */
    railsEnv: k.rails_env,
    /** Working directory of rake (the console's directory). */
    cwd: k.cwd,
    /** Whether the warm console worker is used. */
    worker: k.worker,
    /** Absolute path of the console's Ruby (runs the worker); default `ruby` beside `rake`. */
    ruby: k.ruby ?? join(dirname(k.rake), 'ruby'),
    /** Console tasks run at once: warm workers (worker on) or rake processes (worker off); `0` in the INI: {@link consoleConcurrencyForMachine}. */
    workers: k.workers === 0 ? consoleConcurrencyForMachine() : k.workers,
    /** Tasks one console worker runs before it is replaced (in the background). */
    workerMaxTasks: k.worker_max_tasks,
    /** How long one console worker lives before it is replaced (in the background), ms. */
    workerMaxAgeMs: k.worker_max_age * 1000,
    /** Idle time after which the worker's database connection is refreshed before a task, ms. */
    workerIdleRefreshMs: k.worker_idle_refresh * 1000,
  };
}

/**
 * dashboard-rake's settings at their defaults, carried by every other backend's variant:
 * today's adapters read them off the whole `Config['classifier']`. Remove this carry (and its
 * spread below) once the dashboard-rake adapter takes `ClassifierConfig<'dashboard-rake'>`.
 */
const CARRIED = dashboardRakeSettings(z.object(dashboardRakeKeys).parse({}));

// --- variants, one per backend

const dashboardRake = z
  .strictObject({ backend: z.literal('dashboard-rake'), ...commonKeys, ...dashboardRakeKeys })
  .transform((k) => ({ backend: k.backend, ...commonSettings(k), ...dashboardRakeSettings(k) }));

const sandbox = z
  .strictObject({ backend: z.literal('sandbox'), ...commonKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k) }));

// --- pe-node-classifier: PE's Node Classifier API v1 (docs/design.md "pe-node-classifier")

/** A node group id as the Node Classifier writes it (a UUID). */
const groupId = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a node group id (a UUID)');

const nodeClassifierKeys = {
  url: httpsBaseUrl,
  environment: z.string().trim().regex(/^\w+$/, 'must be a Puppet environment name').default(d.environment),
  parent_group: groupId.default(d.parent_group),
  token_file: optionalAbsolutePath('authenticate with the master\'s certificate'),
  puppet: absolutePath.default(d.puppet),
  config: absolutePath.default(d.config),
  api_cert: optionalAbsolutePath('ask puppet'),
  api_key: optionalAbsolutePath('ask puppet'),
  api_ca: optionalAbsolutePath('ask puppet'),
};

function nodeClassifierSettings(k: z.output<z.ZodObject<typeof nodeClassifierKeys>>) {
  return {
    /** Base URL of the Node Classifier, `https://<console>:4433/classifier-api` (no trailing slash). */
    url: k.url,
    /** Environment of espm's per-node groups and of the classes listed. */
    environment: k.environment,
    /** Id of the group espm's per-node groups are made under. */
    parentGroup: k.parent_group,
    /** Absolute path of a file holding an RBAC token (sent as `X-Authentication`); undefined = the master's certificate. */
    tokenFile: k.token_file,
    /** Absolute path of the master's `puppet` (asked for hostcert, hostprivkey, localcacert). */
    puppet: k.puppet,
    /** Absolute path of the master's puppet.conf. */
    puppetConfig: k.config,
    /** Client certificate; undefined = puppet's `hostcert`. */
    apiCert: k.api_cert,
    /** Its key; undefined = puppet's `hostprivkey`. */
    apiKey: k.api_key,
    /** CA bundle verifying the console; undefined = puppet's `localcacert`. */
    apiCa: k.api_ca,
  };
}

const peNodeClassifier = z
  .strictObject({ backend: z.literal('pe-node-classifier'), ...commonKeys, ...nodeClassifierKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k), ...nodeClassifierSettings(k) }));

// --- enc: espm as puppetserver's exec ENC for the nodes it created (docs/design.md "`enc`")

/** A command line as Puppet's `external_nodes` takes it: split on whitespace, the first word an absolute path. */
const commandLine = z
  .string()
  .trim()
  .refine((v) => v === '' || v.startsWith('/'), 'must be empty or a command whose first word is an absolute path');

const encKeys = {
  groups_file: absolutePath.default(d.groups_file),
  classification_file: absolutePath.default(d.classification_file),
  // No default: an enc answer names an environment only when the operator sets one.
  environment: z.string().trim().regex(/^(?:[a-z0-9_]+)?$/, 'must be a Puppet environment name (or empty)').optional(),
  fallback_enc: commandLine.default(d.fallback_enc),
  puppet: absolutePath.default(d.puppet),
  config: absolutePath.default(d.config),
  api_url: optionalHttpsOrigin('ask puppet'),
  api_cert: optionalAbsolutePath('ask puppet'),
  api_key: optionalAbsolutePath('ask puppet'),
  api_ca: optionalAbsolutePath('ask puppet'),
};

function encSettings(k: z.output<z.ZodObject<typeof encKeys>>) {
  return {
    /** Absolute path of the operator's groups YAML (top-level keys = groups). */
    groupsFile: k.groups_file,
    /** Absolute path of the classification file the daemon writes for `espm enc`. */
    classificationFile: k.classification_file,
    /** Environment of espm's nodes; undefined = none in the ENC answer (classes listed from `production`). */
    environment: k.environment === '' || k.environment === undefined ? undefined : k.environment,
    /** The site's previous ENC as an argv (Puppet appends the certname); empty = none. */
    fallbackEnc: k.fallback_enc === '' ? [] : k.fallback_enc.split(/\s+/),
    /** Absolute path of the master's `puppet` (asked for its identity). */
    puppet: k.puppet,
    /** Absolute path of the master's puppet.conf. */
    puppetConf: k.config,
    /** The master, `https://HOST[:PORT]`; undefined = puppet's `server`/`masterport`. */
    apiUrl: k.api_url,
    /** Client certificate; undefined = puppet's `hostcert`. */
    apiCert: k.api_cert,
    /** Its key; undefined = puppet's `hostprivkey`. */
    apiKey: k.api_key,
    /** CA bundle; undefined = puppet's `localcacert`. */
    apiCa: k.api_ca,
  };
}

const enc = z
  .strictObject({ backend: z.literal('enc'), ...commonKeys, ...encKeys })
  .transform((k) => ({ ...CARRIED, backend: k.backend, ...commonSettings(k), ...encSettings(k) }));

/**
 * The ``[classifier]` section: `backend` (default {@link DEFAULTS}`.classifier.backend`) chooses
 * which keys are validated; the output is a union discriminated by `backend`.
 */
export const classifierSection = backendSection(CLASSIFIER_BACKENDS, d.backend, {
  'dashboard-rake': dashboardRake,
  sandbox,
  'pe-node-classifier': peNodeClassifier,
  enc,
});
