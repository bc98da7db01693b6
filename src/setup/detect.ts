/**
 * Which Puppet this master runs, for the backend defaults `espm_setup` writes.
 *
 * Rules (issue #2, docs/design.md "Today's Puppet"): `/opt/puppet/bin/rake` present → Puppet
 * Enterprise 2.x/3.x (console rake tasks + `puppet cert`, PE paths); else
 * `/etc/puppetlabs/console-services` or `/opt/puppetlabs/server/apps/console-services` → PE
 * 2016–2025 (`pe-node-classifier` at the console URL of the master's classifier.yaml,
 * `puppetserver-api`, `[puppetdb] url` from puppetdb.conf); else a `puppetserver` on PATH → Puppet ≥ 6
 * (`puppetserver ca`, with the paths of the package that provides it); else the PE defaults.
 * `espm_setup --ca-backend` overrides the CA backend chosen; the paths still come from detection.
 *
 * @packageDocumentation
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { AIO_PATHS, CA_BACKENDS, DEBIAN_PATHS, DEFAULTS, ENC_PATHS, PE_PATHS, type CaBackendName } from '../config.js';
import type { IniValues } from './ini.js';

/** A CA backend `espm_setup --ca-backend` accepts: any of {@link CA_BACKENDS} but `sandbox`. */
export type SetupCaBackendName = Exclude<CaBackendName, 'sandbox'>;

/**
 * The CA backends `espm_setup --ca-backend` offers, in {@link CA_BACKENDS}' order. `sandbox` is
 * left out: `espm_setup` sets up espm on a Puppet master, and a sandbox CA beside the console's
 * classifier is no working set-up for anyone (integrators switch both backends to `sandbox` in
 * espm.ini, as `npm run demo -- --sandbox` does).
 */
export const SETUP_CA_BACKENDS: readonly SetupCaBackendName[] = CA_BACKENDS.filter(
  (name): name is SetupCaBackendName => name !== 'sandbox',
);

/** A PE ≥ 2016 console (console-services) is here when one of these exists. */
export const PE_CONSOLE_SERVICES = ['/etc/puppetlabs/console-services', '/opt/puppetlabs/server/apps/console-services'] as const;

/** How the file system is probed; injectable for tests. */
export interface DetectionProbe {
  /** True when `path` exists and is executable. */
  isExecutable(path: string): boolean;
  /** True when `path` exists. */
  exists(path: string): boolean;
  /** The text of `path`, or undefined when it cannot be read (default: nothing is readable). */
  readText?(path: string): string | undefined;
  /** The PATH to search for `puppetserver`. */
  searchPath: string;
}

/** A probe of the real file system and `process.env.PATH`. */
export const systemProbe: DetectionProbe = {
  isExecutable(path) {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  },
  exists(path) {
    try {
      accessSync(path, constants.F_OK);
      return true;
    } catch {
      return false;
    }
  },
  readText(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  searchPath: process.env['PATH'] ?? '',
};

/**
 * A probe of a file-system tree under `root` (tests: a Debian or AIO package layout made in a
 * temp directory); paths given and returned are those of the master, as if `root` were `/`.
 *
 * @param root - absolute directory standing for `/`
 * @param searchPath - the PATH searched (inside `root`)
 */
export function rootedProbe(root: string, searchPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/puppetlabs/bin'): DetectionProbe {
  return {
    isExecutable: (path) => systemProbe.isExecutable(join(root, path)),
    exists: (path) => systemProbe.exists(join(root, path)),
    searchPath,
  };
}

/** The outcome of {@link detectBackends}. */
export interface BackendDetection {
  /**
   * `pe` (PE 2.x/3.x), `pe-nc` (PE 2016–2025), `open-source` (puppetserver without a PE console:
   * Puppet / OpenVox 6–8), `puppetserver` (Puppet ≥ 6), or `none` (nothing found).
   */
  found: 'pe' | 'pe-nc' | 'open-source' | 'puppetserver' | 'none';
  /**
   * One line for the operator, e.g. `Puppet Enterprise console found (/opt/puppet/bin/rake): …`;
   * says `(chosen with --ca-backend)` when the CA backend was chosen by the operator.
   */
  summary: string;
  /** `[classifier]` keys of espm.ini. */
  classifier: IniValues['classifier'];
  /** `[ca]` keys of espm.ini; the puppetserver-api keys only when that backend is chosen. */
  ca: IniValues['ca'];
  /** `[puppetdb]` keys, when this master has a PuppetDB espm should use (PE ≥ 2016). */
  puppetdb?: IniValues['puppetdb'];
  /** What the operator must do on the master before espm works (espm_setup never edits Puppet's files). */
  instructions?: string[];
}

/** Where PE ≥ 2016 keeps its console services (either marks a PE 2016–2025 primary). */
export const PE_CONSOLE_SERVICES_PATHS = ['/etc/puppetlabs/console-services', '/opt/puppetlabs/server/apps/console-services'] as const;
/** The classifier terminus' settings on a PE primary (`server`, `port`, `prefix` of the NC). */
export const PE_CLASSIFIER_YAML = '/etc/puppetlabs/puppet/classifier.yaml';
/** PuppetDB's URLs as the PE primary's puppet uses them (`server_urls`). */
export const PE_PUPPETDB_CONF = '/etc/puppetlabs/puppet/puppetdb.conf';
/** The console's certificate allow-list on a PE primary. */
export const PE_RBAC_ALLOWLIST = '/etc/puppetlabs/console-services/rbac-certificate-allowlist';

/**
 * The Node Classifier's base URL from the master's classifier.yaml (`server:`, `port:`,
 * optional `prefix:`; the first entry of a list), or undefined when it cannot be read.
 */
export function consoleUrlFrom(classifierYaml: string | undefined): string | undefined {
  if (classifierYaml === undefined) return undefined;
  const value = (key: string): string | undefined => new RegExp(`^[\\s-]*${key}:\\s*["']?([^"'\\s#]+)`, 'm').exec(classifierYaml)?.[1];
  const server = value('server');
  if (server === undefined || !/^[A-Za-z0-9.:[\]-]+$/.test(server)) return undefined;
  const port = value('port') ?? '4433';
  const prefix = value('prefix') ?? '/classifier-api';
  if (!/^\d+$/.test(port) || !/^\/[\w/-]*$/.test(prefix)) return undefined;
  return `https://${server}:${port}${prefix.replace(/\/+$/, '')}`;
}

/** The first of puppetdb.conf's `server_urls`, or undefined. */
export function puppetdbUrlFrom(puppetdbConf: string | undefined): string | undefined {
  const urls = /^\s*server_urls\s*=\s*(.+)$/m.exec(puppetdbConf ?? '')?.[1];
  const first = urls?.split(',')[0]?.trim();
  return first !== undefined && /^https:\/\/[^\s/]+\/?$/.test(first) ? first.replace(/\/$/, '') : undefined;
}

/**
 * The `[ca]` keys for `backend` on top of the detected paths: for `puppetserver-api` also
 * `key_bits` and `key_pool` (defaults) and empty `api_*` (= ask puppet at first use); for the
 * other backends exactly the keys of `base`.
 */
function caValues(base: IniValues['ca'], backend: SetupCaBackendName): IniValues['ca'] {
  if (backend !== 'puppetserver-api') return { ...base, backend };
  return {
    ...base,
    backend,
    key_bits: DEFAULTS.ca.key_bits,
    key_pool: DEFAULTS.ca.key_pool,
    api_url: '',
    api_cert: '',
    api_key: '',
    api_ca: '',
  };
}

/**
 * How the summary names the CA backend: the detected one as is, an operator's choice with
 * `(chosen with --ca-backend)`, and `instead of …` when detection would have chosen another.
 */
function describeCa(backend: SetupCaBackendName, detected: SetupCaBackendName | undefined, chosen: boolean): string {
  if (!chosen) return backend;
  if (detected === undefined || detected === backend) return `${backend} (chosen with --ca-backend)`;
  return `${backend} (chosen with --ca-backend instead of ${detected})`;
}

/**
 * Finds an executable on a PATH string.
 *
 * @returns its absolute path, or undefined
 */
export function findOnPath(name: string, probe: DetectionProbe): string | undefined {
  for (const dir of probe.searchPath.split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (probe.isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Detects the master's Puppet and returns the backend keys of espm.ini for it.
 *
 * @param probe - file system probe (default: the real one)
 * @param caBackend - the operator's `--ca-backend`: overrides the CA backend detection chose
 *   (allowed on any master; the summary says so); undefined = detection's choice
 */
export function detectBackends(
  probe: DetectionProbe = systemProbe,
  caBackend?: SetupCaBackendName,
): BackendDetection {
  const chosen = caBackend !== undefined;
  const classifier: IniValues['classifier'] = {
    backend: DEFAULTS.classifier.backend,
    rake: PE_PATHS.rake,
    rakefile: PE_PATHS.rakefile,
    rails_env: DEFAULTS.classifier.rails_env,
    cwd: PE_PATHS.consoleDir,
    timeout: DEFAULTS.classifier.timeout,
    cache_ttl: DEFAULTS.classifier.cache_ttl,
    worker: DEFAULTS.classifier.worker ? 'on' : 'off',
    ruby: PE_PATHS.ruby,
  };
  const peCa: IniValues['ca'] = {
    backend: 'puppet-cert',
    puppet: PE_PATHS.puppet,
    puppetserver: DEFAULTS.ca.puppetserver,
    config: PE_PATHS.puppetConf,
    ssldir: PE_PATHS.ssldir,
    timeout: DEFAULTS.ca.timeout,
    keep_private_keys: DEFAULTS.ca.keep_private_keys,
  };
  if (probe.isExecutable(PE_PATHS.rake)) {
    const backend = caBackend ?? 'puppet-cert';
    return {
      found: 'pe',
      summary:
        `Puppet Enterprise console found (${PE_PATHS.rake}): classifier dashboard-rake, ` +
        `CA ${describeCa(backend, 'puppet-cert', chosen)}`,
      classifier,
      ca: caValues(peCa, backend),
    };
  }
  const consoleServices = PE_CONSOLE_SERVICES_PATHS.find((path) => probe.exists(path));
  if (consoleServices !== undefined) {
    const backend = caBackend ?? 'puppetserver-api';
    const read = (path: string): string | undefined => probe.readText?.(path);
    const found = consoleUrlFrom(read(PE_CLASSIFIER_YAML));
    const url = found ?? 'https://localhost:4433/classifier-api';
    const puppetdb = puppetdbUrlFrom(read(PE_PUPPETDB_CONF)) ?? url.replace(/:\d+\/.*$/, ':8081');
    return {
      found: 'pe-nc',
      summary:
        `Puppet Enterprise ≥ 2016 found (${consoleServices}): classifier pe-node-classifier at ${url}` +
        `${found === undefined ? ` (not found in ${PE_CLASSIFIER_YAML}: edit [classifier] url)` : ''}, ` +
        `CA ${describeCa(backend, 'puppetserver-api', chosen)}, PuppetDB ${puppetdb}`,
      classifier: {
        backend: 'pe-node-classifier',
        url,
        environment: DEFAULTS.classifier.environment,
        parent_group: DEFAULTS.classifier.parent_group,
        token_file: '',
        timeout: DEFAULTS.classifier.timeout,
        cache_ttl: DEFAULTS.classifier.cache_ttl,
      },
      ca: caValues({ ...peCa, puppet: AIO_PATHS.puppet, puppetserver: AIO_PATHS.puppetserver, config: AIO_PATHS.puppetConf, ssldir: AIO_PATHS.ssldir }, backend),
      puppetdb: { url: puppetdb, timeout: DEFAULTS.puppetdb.timeout },
      instructions: [
        `the Node Classifier must accept this master's certificate: add its certname (puppet config print certname) to ${PE_RBAC_ALLOWLIST} ` +
          '(rbac-certificate-whitelist on older PE) and reload pe-console-services, or set [classifier] token_file to a file holding an RBAC token',
      ],
    };
  }
  const puppetserver = findOnPath('puppetserver', probe);
  if (puppetserver !== undefined && !PE_CONSOLE_SERVICES.some((path) => probe.exists(path))) {
    // Open-source Puppet / OpenVox 6–8: espm is puppetserver's ENC for the nodes it creates.
    const aio = puppetserver.startsWith('/opt/puppetlabs/') || probe.exists(AIO_PATHS.puppetConf);
    const paths = aio ? AIO_PATHS : DEBIAN_PATHS;
    const puppet = findOnPath('puppet', probe) ?? paths.puppet;
    const backend = caBackend ?? 'puppetserver-api';
    return {
      found: 'open-source',
      summary:
        `open-source Puppet / OpenVox master found (${puppetserver}, no PE console): classifier enc ` +
        `(espm enc as puppetserver's ENC for the nodes espm creates), CA ${describeCa(backend, 'puppetserver-api', chosen)} with ${paths.puppetConf}`,
      classifier: {
        ...classifier,
        backend: 'enc',
        groups_file: ENC_PATHS.groupsFile,
        classification_file: ENC_PATHS.classificationFile,
        environment: 'production',
        fallback_enc: '',
        puppet,
        config: paths.puppetConf,
      },
      ca: caValues({ ...peCa, puppet, puppetserver, config: paths.puppetConf, ssldir: paths.ssldir }, backend),
    };
  }
  if (puppetserver !== undefined) {
    const aio = puppetserver.startsWith('/opt/puppetlabs/') || probe.exists(AIO_PATHS.puppetConf);
    const paths = aio ? AIO_PATHS : DEBIAN_PATHS;
    const backend = caBackend ?? 'puppetserver-ca';
    const hint = chosen ? '' : ' (--ca-backend puppetserver-api avoids a process per certificate)';
    return {
      found: 'puppetserver',
      summary:
        `puppetserver found (${puppetserver}): CA ${describeCa(backend, 'puppetserver-ca', chosen)} ` +
        `with ${paths.puppetConf}${hint}; no PE console found, classifier left at the PE defaults`,
      classifier,
      ca: caValues(
        {
          ...peCa,
          puppet: findOnPath('puppet', probe) ?? paths.puppet,
          puppetserver,
          config: paths.puppetConf,
          ssldir: paths.ssldir,
        },
        backend,
      ),
    };
  }
  return {
    found: 'none',
    summary: chosen
      ? `neither a PE console nor puppetserver found: CA ${describeCa(caBackend, undefined, chosen)}, ` +
        'otherwise PE 2.x/3.x defaults written, edit them to match this master'
      : 'neither a PE console nor puppetserver found: PE 2.x/3.x defaults written, edit them to match this master',
    classifier,
    ca: caValues(peCa, caBackend ?? 'puppet-cert'),
  };
}
