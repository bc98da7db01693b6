/**
 * Which Puppet this master runs, for the backend defaults `espm_setup` writes.
 *
 * Rules (issue #2, DESIGN.md): `/opt/puppet/bin/rake` present → Puppet Enterprise 2.x/3.x
 * (console rake tasks + `puppet cert`, PE paths); else a `puppetserver` on PATH → Puppet ≥ 6
 * (`puppetserver ca`, with the paths of the package that provides it); else the PE defaults.
 *
 * @packageDocumentation
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { AIO_PATHS, DEBIAN_PATHS, DEFAULTS, PE_PATHS, type IniValues } from '../config.js';

/** How the file system is probed; injectable for tests. */
export interface DetectionProbe {
  /** True when `path` exists and is executable. */
  isExecutable(path: string): boolean;
  /** True when `path` exists. */
  exists(path: string): boolean;
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
  searchPath: process.env['PATH'] ?? '',
};

/** The outcome of {@link detectBackends}. */
export interface BackendDetection {
  /** `pe` (PE 2.x/3.x), `puppetserver` (Puppet ≥ 6), or `none` (nothing found). */
  found: 'pe' | 'puppetserver' | 'none';
  /** One line for the operator, e.g. `Puppet Enterprise console found at /opt/puppet/bin/rake`. */
  summary: string;
  classifier: IniValues['classifier'];
  ca: IniValues['ca'];
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
 */
export function detectBackends(probe: DetectionProbe = systemProbe): BackendDetection {
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
    return {
      found: 'pe',
      summary: `Puppet Enterprise console found (${PE_PATHS.rake}): classifier dashboard-rake, CA puppet-cert`,
      classifier,
      ca: peCa,
    };
  }
  const puppetserver = findOnPath('puppetserver', probe);
  if (puppetserver !== undefined) {
    const aio = puppetserver.startsWith('/opt/puppetlabs/') || probe.exists(AIO_PATHS.puppetConf);
    const paths = aio ? AIO_PATHS : DEBIAN_PATHS;
    return {
      found: 'puppetserver',
      summary:
        `puppetserver found (${puppetserver}): CA puppetserver-ca with ${paths.puppetConf}; ` +
        `no PE console found, classifier left at the PE defaults`,
      classifier,
      ca: {
        ...peCa,
        backend: 'puppetserver-ca',
        puppet: findOnPath('puppet', probe) ?? paths.puppet,
        puppetserver,
        config: paths.puppetConf,
        ssldir: paths.ssldir,
      },
    };
  }
  return {
    found: 'none',
    summary: 'neither a PE console nor puppetserver found: PE 2.x/3.x defaults written, edit them to match this master',
    classifier,
    ca: peCa,
  };
}
