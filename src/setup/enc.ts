/**
 * What `espm_setup` writes and prints for the `enc` classifier on an open-source Puppet /
 * OpenVox master: the `[classifier]` keys (groups file beside espm.ini, classification file
 * beside the state directory; the site's previous ENC, read from puppet.conf, as
 * `fallback_enc`), the sample groups file, and the puppet.conf and auth.conf lines. The
 * `external_nodes` line names only the classification file: the fallback lives in
 * `[classifier] fallback_enc` alone (the daemon hands it to bin/espm-enc, src/classifier/enc-owned.ts).
 *
 * Source of truth: docs/design.md "`enc`"; Puppet's `node_terminus` / `external_nodes`
 * settings (docs/reference/modern-puppet.md).
 *
 * @packageDocumentation
 */
import { basename, dirname, join } from 'node:path';
import type { IniValues } from './ini.js';
import { serverSettings } from './puppet-conf.js';

/** Name of the sample groups file espm_setup writes beside espm.ini for the `enc` classifier. */
export const GROUPS_FILE_NAME = 'groups.yaml';

/** The sample groups file (docs/design.md "`enc`"). */
export const SAMPLE_GROUPS_FILE = `# espm node groups ([classifier] groups_file): each top-level key is a group the platform
# can choose (GET /v1/groups). A group gives its nodes classes (a hash: class → its
# parameters, or a list of class names) and top-scope parameters; the node's own classes and
# parameters are added (the node's parameters win). Classes must exist in the environment.
# espm re-reads this file on SIGHUP; a broken file is refused and the previous groups kept.
#
# webservers:
#   classes:
#     apache: {default_vhost: false}
#     ntp: ~
#   parameters:
#     tier: web
default: {}
`;

/** Name of bin/espm's sh front, the `external_nodes` command (beside bin/espm). */
export const ENC_FRONT_NAME = 'espm-enc';

/**
 * The site's current ENC from puppet.conf: `external_nodes` when `node_terminus` is `exec`
 * (each setting looked up in `[server]`, then `[master]`, then `[main]`, as Puppet does for
 * the server), its words joined by one space (Puppet splits the setting on whitespace). That
 * command becomes `[classifier] fallback_enc`.
 *
 * @param puppetConf - absolute path of the master's puppet.conf
 * @returns the command line, or undefined: no such setting, not `exec`, `none`, not an
 *   absolute path, already espm (`espm-enc`, or `espm enc` of an early version: a second
 *   setup must not make espm its own fallback), or puppet.conf unreadable
 */
export function previousEnc(puppetConf: string): string | undefined {
  const setting = serverSettings(puppetConf);
  const command = setting?.('external_nodes');
  if (setting?.('node_terminus') !== 'exec' || command === undefined) return undefined;
  const words = command.trim().split(/\s+/);
  if (!words[0]!.startsWith('/') || [ENC_FRONT_NAME, 'espm'].includes(basename(words[0]!))) return undefined;
  return words.join(' ');
}

/** What espm_setup writes and prints for the `enc` classifier. */
export interface EncPlan {
  /** The `[classifier]` section (groups_file, classification_file and fallback_enc set). */
  classifier: IniValues['classifier'];
  /** What the operator adds to puppet.conf and auth.conf (printed after the announcement). */
  instructions: string;
}

/**
 * The `enc` classifier's keys for this install (groups file beside espm.ini; classification
 * file in `enc/` beside the state directory, outside both root-only directories; the site's
 * previous ENC from puppet.conf as `fallback_enc`, see {@link previousEnc}) and the lines the
 * operator adds to puppet.conf and auth.conf.
 *
 * @param classifier - the detected `[classifier]` keys (its `config` is the master's puppet.conf)
 * @param configDir - absolute directory of espm.ini
 * @param stateDir - absolute state directory
 * @param espm - absolute path of bin/espm (bin/espm-enc is beside it)
 * @param certname - this master's certname, allowed to list the environment's classes
 */
export function encPlan(classifier: IniValues['classifier'], configDir: string, stateDir: string, espm: string, certname: string): EncPlan {
  const classificationFile = join(dirname(stateDir), 'enc', 'classification.json');
  const puppetConf = classifier.config ?? '/etc/puppet/puppet.conf';
  const authConf = puppetConf.startsWith('/etc/puppetlabs/') ? '/etc/puppetlabs/puppetserver/conf.d/auth.conf' : '/etc/puppet/puppetserver/conf.d/auth.conf';
  const fallback = previousEnc(puppetConf) ?? (classifier.fallback_enc ?? '');
  // bin/espm-enc, beside bin/espm: the not-owned path never starts Node.js (docs/design.md "`enc`").
  const externalNodes = `${join(dirname(espm), ENC_FRONT_NAME)} -f ${classificationFile}`;
  const instructions = [
    '',
    "espm will be puppetserver's ENC for the nodes it creates. Every other node goes to [classifier]",
    fallback === ''
      ? `fallback_enc, empty: no previous ENC in ${puppetConf} (node_terminus = exec), so they get 'classes: {}'.`
      : `fallback_enc = ${fallback} (the previous ENC in ${puppetConf}): its output and exit status, unchanged.`,
    `espm.ini is that command's only place (a SIGHUP to espm applies a change). Start espm (it writes`,
    `${classificationFile}), then set in the [server] section of ${puppetConf}, replacing any external_nodes line:`,
    '',
    '    node_terminus = exec',
    `    external_nodes = ${externalNodes}`,
    '',
    `and add this rule to ${authConf}, before the "puppetlabs deny all" rule, so that espm may`,
    "list the environment's classes (allow: this master's certname, `puppet config print certname --section server`):",
    '',
    '    {',
    '        match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }',
    `        allow: "${certname}"`,
    '        sort-order: 500',
    '        name: "espm environment classes"',
    '    }',
    '',
    `then reload puppetserver (systemctl reload puppetserver). Node groups: ${join(configDir, GROUPS_FILE_NAME)}.`,
    '',
  ].join('\n');
  return { classifier: { ...classifier, groups_file: join(configDir, GROUPS_FILE_NAME), classification_file: classificationFile, fallback_enc: fallback }, instructions };
}
