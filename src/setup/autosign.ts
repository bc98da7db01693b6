/**
 * What `espm_setup` adds for token signing on a CA with policy-based autosigning
 * (`[ca] backend = puppetserver-api` or `puppetserver-ca`, Puppet ≥ 6): the `[autosign]` keys (the site's previous policy
 * executable kept as `fallback`), the small policy executable puppet.conf's `[server] autosign`
 * names — Puppet takes that setting as ONE path, no arguments (docs/reference/modern-puppet.md)
 * — in a directory puppetserver's user can reach (root, group puppetserver's, 0750: also the
 * daemon's socket), and the line for puppet.conf.
 *
 * Source of truth: docs/design.md ("The hand-off").
 *
 * @packageDocumentation
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../config/defaults.js';
import { serverSettings } from './puppet-conf.js';

/** Name of the policy executable in the autosign directory. */
export const POLICY_FILE_NAME = 'policy';
/** Name of the daemon's socket in the autosign directory. */
export const SOCKET_FILE_NAME = 'espm.sock';

/** The `[autosign]` keys espm_setup writes. */
export interface AutosignIniValues {
  token_ttl: number;
  fallback: string;
  fallback_timeout: number;
  socket: string;
}

/** What espm_setup writes and prints for token signing. */
export interface AutosignPlan {
  /** The directory (root, group puppetserver's, 0750) holding the policy executable and the socket. */
  directory: string;
  /** The `[autosign]` section. */
  values: AutosignIniValues;
  /** Absolute path and content of the policy executable (mode 0755; no secret). */
  policy: { path: string; content: string };
  /** What the operator adds to puppet.conf (printed after the announcement). */
  instructions: string;
}

/**
 * The site's current `autosign` setting from puppet.conf (`[server]`, then `[master]`, then
 * `[main]`), when it names an executable file: that policy becomes `[autosign] fallback`.
 *
 * @param puppetConf - absolute path of the master's puppet.conf
 * @returns the executable's path, or undefined (no setting, `true`/`false`, an allow-list file, unreadable)
 */
export function previousPolicy(puppetConf: string): string | undefined {
  const value = serverSettings(puppetConf)?.('autosign');
  if (value === undefined || !value.startsWith('/')) return undefined;
  try {
    const info = statSync(value);
    return info.isFile() && (info.mode & 0o111) !== 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The policy executable: a shell script that runs `espm autosign` with the socket (puppetserver
 * appends nothing but the certname; the CSR comes on stdin and is passed on).
 *
 * @param node - absolute path of node
 * @param espmBin - absolute path of bin/espm
 * @param socket - the daemon's socket
 */
export function policyScript(node: string, espmBin: string, socket: string): string {
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    "# espm's policy executable for puppet.conf [server] autosign (written by espm_setup).",
    '# Certname as the argument, CSR on stdin; exit 0 = sign. It asks the espm daemon, which',
    '# signs only CSRs matching a one-time token and hands other certnames to [autosign] fallback.',
    `exec ${quote(node)} ${quote(espmBin)} autosign -s ${quote(socket)} "$1"`,
    '',
  ].join('\n');
}

/**
 * The token-signing part of a setup.
 *
 * @param directory - where the policy executable and the socket go (beside the state directory)
 * @param puppetConf - the master's puppet.conf (its current `autosign` becomes the fallback)
 * @param espmBin - absolute path of bin/espm
 * @param node - absolute path of node (default this one's)
 */
export function autosignPlan(directory: string, puppetConf: string, espmBin: string, node = process.execPath): AutosignPlan {
  const socket = join(directory, SOCKET_FILE_NAME);
  const policyPath = join(directory, POLICY_FILE_NAME);
  const fallback = previousPolicy(puppetConf);
  const instructions = [
    'Token signing ("signing": "token": the node makes its own key; its CSR is signed when it presents',
    "espm's one-time challenge): add to the [server] section of puppet.conf, then reload puppetserver:",
    '',
    `    autosign = ${policyPath}`,
    '',
    fallback === undefined
      ? 'CSRs for certnames espm holds no token for are refused (no previous autosign executable found).'
      : `The previous autosign executable ${fallback} is kept as [autosign] fallback: it still decides every other CSR.`,
    'While the espm daemon is stopped every CSR is refused.',
    '',
  ].join('\n');
  return {
    directory,
    values: { token_ttl: DEFAULTS.autosign.token_ttl, fallback: fallback ?? '', fallback_timeout: DEFAULTS.autosign.fallback_timeout, socket },
    policy: { path: policyPath, content: policyScript(node, espmBin, socket) },
    instructions,
  };
}
