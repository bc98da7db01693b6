/**
 * Test support: the `enc` classifier's real components — a real puppetserver (Debian packages,
 * test/support/puppetserver.ts) whose `production` environment has the classes the contract
 * suite expects and whose auth.conf lets the master's own certificate read
 * `environment_classes` (the rule espm_setup prints), a groups file, and the site's previous
 * ENC (a shell script classifying {@link LEGACY_NODE}) as `fallback_enc`.
 *
 * @packageDocumentation
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import type { EncFile } from '../../src/classifier/enc-file.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver, type StartPuppetserverOptions } from './puppetserver.js';

/** A node the fallback ENC (the site's previous ENC) classifies; espm did not create it. */
export const LEGACY_NODE = 'legacy.example.test';

/** The component the enc backend's suites need, for `describeWith`. */
export const ENC_COMPONENT = 'puppetserver + puppet (Debian packages puppetserver puppet-agent)';
/** Undefined when a puppetserver can be started here. */
export const ENC_MISSING = puppetserverAvailable().reason;

/** The auth.conf rule espm_setup prints: the master's certificate (certname `localhost` here) may list classes. */
export function environmentClassesRule(certname: string): string {
  return `{ match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }, allow: "${certname}", sort-order: 500, name: "espm environment classes" }`;
}

/** Groups file with the contract suite's groups (a PE 2.5 console's names). */
export const CONTRACT_GROUPS_YAML = `# espm groups (contract suite)
default:
  classes: [ntp]
no mcollective:
  parameters: {mcollective: "off"}
puppet_master:
  classes:
    apache: {}
`;

/** Modules of the contract suite's environment: motd, ntp, apache with apache::vhost. */
export const CONTRACT_MODULES: Record<string, string> = {
  motd: 'class motd(String $message = "hi") { notify { "motd: ${message}": } }\n',
  ntp: 'class ntp { }\n',
  apache: 'class apache { }\nclass apache::vhost { }\n',
};

/** The site's previous ENC: classifies {@link LEGACY_NODE}, `classes: {}` for anyone else; `exit 3` for `broken.example.test`. */
export const FALLBACK_ENC_SCRIPT = `#!/bin/sh
case "$1" in
  ${LEGACY_NODE}) printf -- '---\\nclasses:\\n  ntp: {}\\nparameters:\\n  legacy_source: "old ENC"\\n' ;;
  broken.example.test) echo "old ENC: no such node" >&2; exit 3 ;;
  *) printf -- '---\\nclasses: {}\\n' ;;
esac
`;

/** A temp directory with the groups file, the fallback ENC and where the classification file goes. */
export interface EncFiles {
  dir: string;
  groupsFile: string;
  fallbackEnc: string;
  classificationFile: string;
  remove(): Promise<void>;
}

/** Writes the groups file and the fallback ENC into a fresh temp directory. */
export async function makeEncFiles(groupsYaml = CONTRACT_GROUPS_YAML): Promise<EncFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'espm-enc-'));
  await chmod(dir, 0o755);
  const groupsFile = join(dir, 'groups.yaml');
  const fallbackEnc = join(dir, 'old-enc');
  await writeFile(groupsFile, groupsYaml);
  await writeFile(fallbackEnc, FALLBACK_ENC_SCRIPT, { mode: 0o755 });
  return { dir, groupsFile, fallbackEnc, classificationFile: join(dir, 'enc', 'classification.json'), remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Starts a puppetserver that lets its own certificate read environment_classes. */
export function startEncMaster(options: StartPuppetserverOptions = {}): Promise<RealPuppetserver> {
  return startPuppetserver({ modules: CONTRACT_MODULES, ...options, authRules: [environmentClassesRule('localhost'), ...(options.authRules ?? [])] });
}

/** The `[classifier]` keys pointing espm at this master and these files. */
export function encClassifierKeys(master: RealPuppetserver, files: EncFiles): Record<string, string> {
  return {
    backend: 'enc',
    groups_file: files.groupsFile,
    classification_file: files.classificationFile,
    fallback_enc: files.fallbackEnc,
    environment: 'production',
    puppet: '/usr/bin/puppet',
    config: master.confPath,
  };
}

/** The classification file as espm wrote it, or undefined. */
export async function readEncFile(files: EncFiles): Promise<EncFile | undefined> {
  return readFile(files.classificationFile, 'utf8').then((t) => JSON.parse(t) as EncFile, () => undefined);
}

/** What the fallback ENC says of `name`: a classification, or undefined when it gives none. */
export async function fallbackNode(files: EncFiles, name: string): Promise<{ groups: string[]; classes: string[]; parameters: Record<string, string> } | undefined> {
  const { stdout, exitCode } = await execa(files.fallbackEnc, [name], { reject: false });
  if (exitCode !== 0) return undefined;
  const answer = (parseYaml(stdout) ?? {}) as { classes?: Record<string, unknown>; parameters?: Record<string, string> };
  const classes = Object.keys(answer.classes ?? {});
  if (classes.length === 0 && Object.keys(answer.parameters ?? {}).length === 0) return undefined;
  return { groups: [], classes, parameters: answer.parameters ?? {} };
}

/** Removes a node from the classification file, as an operator editing it by hand would. */
export async function removeFromEncFile(files: EncFiles, name: string): Promise<void> {
  const file = await readEncFile(files);
  if (file === undefined) return;
  delete file.nodes[name];
  await writeFile(files.classificationFile, JSON.stringify(file));
}

/** The node group of the ENC story (demo and e2e): it gives class `webserver` and a top-scope variable. */
export const STORY_ENC_GROUP = 'webservers';

/**
 * The operator's groups file of the ENC story: {@link STORY_ENC_GROUP} gives class `webserver`
 * with an Integer parameter and the top-scope variable `tier`; `databases` gives `dbserver`.
 */
export const STORY_GROUPS_YAML = `# the operator's node groups (e.g. in the control repository)
${STORY_ENC_GROUP}:
  classes:
    webserver: {port: 8080}
  parameters:
    tier: web
databases:
  classes: [dbserver]
`;

/**
 * The `webserver` class of the ENC story's modules: writes `port=<port> tier=<::tier>` to `file`
 * (the agent's proof that the group's class, its parameter and the group's variable arrived).
 *
 * @param file - absolute path the class writes on the agent
 * @returns the manifest text of `webserver/manifests/init.pp`
 */
export function webserverModule(file: string): string {
  return `class webserver(Integer $port) {\n  file { '${file}': content => "port=\${port} tier=\${::tier}\\n" }\n  notify { 'webserver-applied': message => "webserver applied: port \${port}" }\n}\n`;
}
