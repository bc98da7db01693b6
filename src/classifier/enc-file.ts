/**
 * The `enc` backend's classification file: what the daemon writes for `espm enc` and the only
 * thing `espm enc` reads (docs/design.md "`enc`"). It holds no secret — no PSK, no key, no
 * ledger — and is readable by the group of its directory (puppetserver's user runs the ENC).
 *
 * The daemon renders each node's ENC answer (YAML made with the `yaml` library, groups merged)
 * ahead of time, so `espm enc` only parses JSON and prints a string: it loads no YAML library,
 * no config schema, no logger. This module imports nothing but types: the ENC entry
 * (src/cli/enc.ts) and the adapter (src/classifier/enc.ts) share it.
 *
 * @packageDocumentation
 */

/** Version of the file's layout; `espm enc` refuses another. */
export const ENC_FILE_FORMAT = 1;

/** One node espm created, as the platform asked for it, and its rendered ENC answer. */
export interface EncFileNode {
  groups: string[];
  classes: string[];
  parameters: Record<string, string>;
  /** The ENC YAML puppetserver gets for this node (groups' classes and parameters merged). */
  yaml: string;
}

/** The whole file. */
export interface EncFile {
  format: typeof ENC_FILE_FORMAT;
  /** When the daemon wrote it, ISO 8601. */
  written_at: string;
  /** The site's previous ENC as an argv (the certname is appended); empty = none. */
  fallback: string[];
  /** How long the fallback may run before it is killed, ms (`[classifier] timeout`). */
  fallback_timeout_ms: number;
  /** The answer for a name espm does not own when there is no fallback (`classes: {}`). */
  unowned: string;
  /** certname → node; only the nodes espm created. */
  nodes: Record<string, EncFileNode>;
}

/**
 * Checks the shape `espm enc` relies on (a file from another version, or edited by hand, is
 * refused rather than half-understood).
 *
 * @param value - the parsed JSON
 * @param path - for messages
 * @returns the file
 * @throws Error naming the path and what is wrong
 */
export function checkEncFile(value: unknown, path: string): EncFile {
  const file = value as Partial<EncFile> | null;
  const bad = (what: string): never => {
    throw new Error(`${path}: not an espm classification file (${what})`);
  };
  if (file === null || typeof file !== 'object' || Array.isArray(file)) return bad('not a JSON object');
  if (file.format !== ENC_FILE_FORMAT) return bad(`format ${String(file.format)}, expected ${ENC_FILE_FORMAT}`);
  if (!Array.isArray(file.fallback) || !file.fallback.every((w) => typeof w === 'string')) return bad('fallback');
  if (file.fallback.length > 0 && !file.fallback[0]!.startsWith('/')) return bad('fallback is not an absolute path');
  if (typeof file.fallback_timeout_ms !== 'number' || !(file.fallback_timeout_ms > 0)) return bad('fallback_timeout_ms');
  if (typeof file.unowned !== 'string') return bad('unowned');
  if (file.nodes === null || typeof file.nodes !== 'object' || Array.isArray(file.nodes)) return bad('nodes');
  return file as EncFile;
}
