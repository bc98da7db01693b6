/**
 * The master's identity for HTTPS to Puppet services: where the service is and as whom espm
 * connects — client certificate `hostcert`, key `hostprivkey`, trust `localcacert` — as
 * puppet.conf says (one `puppet config print … --section server` through src/exec), each
 * overridable by the backend's own keys (`[ca] api_url`, `api_cert`, `api_key`, `api_ca`).
 * Reused by every client of `PuppetHttpClient` (CA API now; Node Classifier, PuppetDB,
 * `environment_classes` later).
 *
 * Source of truth: docs/design.md ("One Puppet HTTPS client"); the settings are Puppet's
 * (docs/reference/puppet-ca.md).
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import { runBackendCommand } from '../backend.js';
import type { CommandRunner } from '../exec/command.js';
import { PuppetHttpError } from './errors.js';
import type { PuppetTlsIdentity } from './client.js';

/** The puppet settings the identity comes from. */
export const IDENTITY_PUPPET_SETTINGS = ['hostcert', 'hostprivkey', 'localcacert'] as const;

/** Where the service is and the paths of the identity's PEM files. */
export interface PuppetIdentity {
  /** Base URL, `https://HOST:PORT` (HOST is the name the server's certificate is verified for). */
  url: string;
  /** Absolute path of the PEM client certificate (the master's `hostcert`). */
  cert: string;
  /** Absolute path of its PEM private key (`hostprivkey`; secret: read, never logged). */
  key: string;
  /** Absolute path of the PEM CA bundle the server is verified against (`localcacert`). */
  ca: string;
}

/** What {@link resolvePuppetIdentity} needs. */
export interface IdentityLookup {
  /** The service's name, for errors (`Puppet Server CA`). */
  service: string;
  /** Absolute path of `puppet`. */
  puppet: string;
  /** Absolute path of puppet.conf (`--config`). */
  config: string;
  /** Timeout of `puppet config print`, ms. */
  timeoutMs: number;
  /** Runs `puppet config print` (src/exec). */
  runner: CommandRunner;
  /**
   * The puppet settings giving the service's host and port when `overrides.url` is unset,
   * e.g. `['ca_server', 'ca_port']`, `['server', 'masterport']`.
   */
  hostPortSettings: readonly [string, string];
  /** The backend's own keys; a set one is used as is and not asked of puppet. */
  overrides: Partial<PuppetIdentity>;
}

/**
 * Parses `key = value` lines of `puppet config print a b …`.
 *
 * @param stdout - puppet's output
 * @returns setting → value
 */
export function parseSettings(stdout: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const match = /^\s*(\w+) = (.*?)\s*$/.exec(line);
    if (match !== null) settings.set(match[1]!, match[2]!);
  }
  return settings;
}

/**
 * The identity: the overrides, the missing parts asked of puppet with ONE
 * `puppet config print <settings> --section server --config <puppet.conf>` (none when every
 * override is set).
 *
 * @throws {@link PuppetHttpError} `failed` when puppet does not print a needed setting,
 *   `timeout`/`unavailable` when puppet cannot run
 */
export async function resolvePuppetIdentity(lookup: IdentityLookup): Promise<PuppetIdentity> {
  const { url, cert, key, ca } = lookup.overrides;
  if (url !== undefined && cert !== undefined && key !== undefined && ca !== undefined) return { url, cert, key, ca };
  const wanted = [...IDENTITY_PUPPET_SETTINGS, ...lookup.hostPortSettings];
  const what = `puppet config print ${wanted.join(' ')}`;
  const result = await runBackendCommand(
    lookup.runner,
    { file: lookup.puppet, args: ['config', 'print', ...wanted, '--section', 'server', '--config', lookup.config], timeoutMs: lookup.timeoutMs },
    what,
    (failure, message, output) => new PuppetHttpError(failure, lookup.service, 'finding the master\'s identity', message, output ?? ''),
  );
  const settings = result.exitCode === 0 ? parseSettings(result.stdout) : new Map<string, string>();
  const value = (name: string): string => {
    const found = settings.get(name);
    if (found === undefined || found === '') {
      throw new PuppetHttpError(
        'failed',
        lookup.service,
        'finding the master\'s identity',
        `cannot find puppet's ${name} with ${what}; set the backend's api_url, api_cert, api_key and api_ca`,
        `${result.stdout}\n${result.stderr}`.trim(),
      );
    }
    return found;
  };
  const [hostSetting, portSetting] = lookup.hostPortSettings;
  let base = url;
  if (base === undefined) {
    const host = value(hostSetting);
    base = `https://${host.includes(':') ? `[${host}]` : host}:${value(portSetting)}`;
  }
  return { url: base, cert: cert ?? value('hostcert'), key: key ?? value('hostprivkey'), ca: ca ?? value('localcacert') };
}

/**
 * Reads the identity's PEM files.
 *
 * @param identity - the paths
 * @param service - the service's name, for errors
 * @param clientCertificate - false in token mode: only the CA bundle is read
 * @throws {@link PuppetHttpError} `failed` naming the unreadable path (never a file's content)
 */
export async function readTlsIdentity(identity: Omit<PuppetIdentity, 'url'>, service: string, clientCertificate = true): Promise<PuppetTlsIdentity> {
  const read = async (path: string, what: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new PuppetHttpError('failed', service, `reading the ${what}`, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = await read(identity.ca, 'CA certificate');
  if (!clientCertificate) return { ca };
  const [cert, key] = await Promise.all([read(identity.cert, 'client certificate'), read(identity.key, 'client key')]);
  return { ca, cert, key };
}
