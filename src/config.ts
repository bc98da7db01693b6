/**
 * espm.ini → typed, validated {@link Config}: the public entry of `src/config/`.
 *
 * The INI is parsed with `ini` and validated with one zod schema per section and per backend
 * (`src/config/*.ts`); the `Config` type is derived from that schema. Defaults live in one
 * place, `src/config/defaults.ts` ({@link DEFAULTS}). Every error names the section and key it
 * is about (`[server] port: …`). Source: `docs/design.md` ("Config").
 *
 * @packageDocumentation
 */
import { readFileSync, statSync } from 'node:fs';
import ini from 'ini';
import { z } from 'zod';
import { caSection } from './config/ca.js';
import { classifierSection } from './config/classifier.js';
import { autosignSection, logSection, puppetdbSection, serverSection, stateSection } from './config/sections.js';

export {
  AIO_PATHS,
  CA_BACKENDS,
  CLASSIFIER_BACKENDS,
  CONFIG_FILE_NAME,
  DEBIAN_PATHS,
  ENC_PATHS,
  DEFAULT_CONFIG_DIR,
  DEFAULT_CONFIG_PATH,
  DEFAULTS,
  LOG_FORMATS,
  LOG_LEVELS,
  PE_PATHS,
  TLS_CERT_FILE_NAME,
  TLS_KEY_FILE_NAME,
  type CaBackendName,
  type ClassifierBackendName,
} from './config/defaults.js';

/** The whole of espm.ini: one schema per section (`[server]` required, the rest defaulted). */
const iniSchema = z.strictObject({
  server: serverSection,
  classifier: classifierSection,
  ca: caSection,
  puppetdb: puppetdbSection,
  autosign: autosignSection,
  state: stateSection,
  log: logSection,
});

/** What the schema makes of espm.ini, section by section. */
type Sections = z.output<typeof iniSchema>;

/**
 * The validated, typed configuration of one espm daemon, derived from the schema
 * (`src/config/`). Durations are in ms. `classifier` and `ca` are unions discriminated by
 * `backend`: narrow on it (or use {@link ClassifierConfig} / {@link CaConfig}) to reach a
 * backend's own settings.
 */
export type Config = { readonly path: string } & { readonly [S in keyof Sections]: Readonly<Sections[S]> };

/** `[classifier]` settings of backend `B` (all of `Config['classifier']` when `B` is left out). */
export type ClassifierConfig<B extends Config['classifier']['backend'] = Config['classifier']['backend']> = Extract<
  Config['classifier'],
  { backend: B }
>;

/** `[ca]` settings of backend `B` (all of `Config['ca']` when `B` is left out). */
export type CaConfig<B extends Config['ca']['backend'] = Config['ca']['backend']> = Extract<Config['ca'], { backend: B }>;

/**
 * A configuration error: the file is unreadable, not INI, or a key is missing, unknown or
 * invalid. `message` names the file and the `[section] key` concerned; the CLI exits 2.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

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
 * A backend's own keys are validated only when `[classifier] backend` / `[ca] backend` chooses
 * it; keys of the section's other backends are accepted and ignored; a key no backend knows is
 * an error.
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
  return { path, ...result.data };
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
