/**
 * The `enc` backend's node groups and the ENC answers made from them (docs/design.md "`enc`").
 *
 * The groups file is the operator's YAML (e.g. kept in the control repository); its top-level
 * keys are the groups:
 * ```yaml
 * webservers:
 *   classes:            # a hash (class → its parameters, or null) or a list of class names
 *     apache: {port: 8080}
 *     motd: ~
 *   parameters:         # top-scope variables
 *     tier: web
 * ```
 * A broken file is refused as a whole, naming the file, the group and what is wrong.
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import { parseDocument, stringify } from 'yaml';
import { CLASS_PATTERN, PARAMETER_KEY_PATTERN } from '../names.js';
import type { Classification } from './classifier.js';

/** One group: its classes with their parameters (null = none), and its top-scope parameters. */
export interface EncGroup {
  classes: Record<string, Record<string, unknown> | null>;
  parameters: Record<string, unknown>;
}

/** Node groups by name, in the file's order. */
export type EncGroups = ReadonlyMap<string, EncGroup>;

/** A groups file that cannot be used. */
export class GroupsFileError extends Error {
  override readonly name = 'GroupsFileError';
}

const GROUP_NAME = /^[^\s,\p{Cc}](?:[^,\p{Cc}]*[^\s,\p{Cc}])?$/u;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Parses and checks a groups file's text.
 *
 * @param text - the YAML
 * @param path - for messages
 * @throws {@link GroupsFileError} naming the file, the group and the problem
 */
export function parseGroups(text: string, path: string): EncGroups {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) throw new GroupsFileError(`${path}: not valid YAML: ${document.errors[0]!.message}`);
  const root: unknown = document.toJS({ maxAliasCount: 100 });
  if (root === null || root === undefined) return new Map();
  if (!isPlainObject(root)) throw new GroupsFileError(`${path}: the top level must be a mapping of group names`);
  const groups = new Map<string, EncGroup>();
  for (const [name, body] of Object.entries(root)) {
    const bad = (what: string): never => {
      throw new GroupsFileError(`${path}: group ${JSON.stringify(name)}: ${what}`);
    };
    if (!GROUP_NAME.test(name) || name.length > 255) bad('not a valid group name (printable, no comma, no leading or trailing space)');
    if (body !== null && !isPlainObject(body)) bad('must be a mapping with `classes` and/or `parameters`');
    const { classes = {}, parameters = {}, ...rest } = (body ?? {}) as Record<string, unknown>;
    if (Object.keys(rest).length > 0) bad(`unknown key ${Object.keys(rest).map((k) => `\`${k}\``).join(', ')} (only \`classes\` and \`parameters\`)`);
    const classMap: Record<string, Record<string, unknown> | null> = {};
    if (Array.isArray(classes)) {
      for (const c of classes) {
        if (typeof c !== 'string') bad('`classes` as a list holds class names only');
        classMap[c as string] = null;
      }
    } else if (isPlainObject(classes)) {
      for (const [c, params] of Object.entries(classes)) {
        if (params !== null && !isPlainObject(params)) bad(`class ${c}: its value must be a mapping of parameters (or empty)`);
        classMap[c] = params as Record<string, unknown> | null;
      }
    } else if (classes !== null) {
      bad('`classes` must be a mapping (class → parameters) or a list of class names');
    }
    for (const c of Object.keys(classMap)) if (!CLASS_PATTERN.test(c)) bad(`${JSON.stringify(c)} is not a Puppet class name`);
    if (parameters !== null && !isPlainObject(parameters)) bad('`parameters` must be a mapping');
    for (const key of Object.keys(parameters ?? {})) if (!PARAMETER_KEY_PATTERN.test(key)) bad(`${JSON.stringify(key)} is not a parameter name`);
    groups.set(name, { classes: classMap, parameters: (parameters ?? {}) as Record<string, unknown> });
  }
  return groups;
}

/**
 * Reads and checks the groups file.
 *
 * @throws {@link GroupsFileError}
 */
export async function readGroups(path: string): Promise<EncGroups> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new GroupsFileError(`cannot read the groups file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseGroups(text, path);
}

/**
 * A node's ENC answer: `classes` = its groups' classes (in the node's group order; a later
 * group's parameters for the same class are merged over an earlier one's) and then its own
 * classes (without parameters; a class a group already gives keeps that group's parameters);
 * `parameters` = its groups' then its own (the node wins); `environment` when set.
 *
 * @param node - the classification espm created
 * @param groups - the groups file's groups
 * @param environment - `[classifier] environment`, or undefined for none
 * @returns the YAML puppetserver gets
 * @throws {@link GroupsFileError} when a group of the node is no longer in the groups file
 */
export function renderNode(node: Classification, groups: EncGroups, environment: string | undefined): string {
  const classes: Record<string, Record<string, unknown>> = {};
  const parameters: Record<string, unknown> = {};
  for (const name of node.groups) {
    const group = groups.get(name);
    if (group === undefined) throw new GroupsFileError(`node ${node.name}: its group ${JSON.stringify(name)} is not in the groups file`);
    for (const [c, params] of Object.entries(group.classes)) classes[c] = { ...classes[c], ...params };
    Object.assign(parameters, group.parameters);
  }
  for (const c of node.classes) classes[c] ??= {};
  Object.assign(parameters, node.parameters);
  return renderAnswer({ classes, parameters, ...(environment === undefined ? {} : { environment }) });
}

/** An ENC answer as YAML (the `yaml` library; a document start line, as Puppet's own ENC examples). */
export function renderAnswer(answer: { classes: Record<string, unknown>; parameters?: Record<string, unknown>; environment?: string }): string {
  return `---\n${stringify(answer, { aliasDuplicateObjects: false, lineWidth: 0 })}`;
}
