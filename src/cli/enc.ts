/**
 * `espm enc [-f classification.json | -c espm.ini] CERTNAME`: puppetserver's exec ENC
 * (`node_terminus = exec`, `external_nodes = …/espm-enc -f FILE`: bin/espm-enc, a POSIX-sh
 * front, execs this for the names espm owns and runs the fallback the daemon wrote from
 * `[classifier] fallback_enc` itself for the others; Puppet splits the setting on whitespace
 * and appends the certname). docs/design.md "`enc`".
 *
 * - a node espm created: its ENC YAML, as the daemon rendered it into the classification file;
 * - any other certname: the site's previous ENC (`[classifier] fallback_enc`) run as an argv
 *   (no shell) with the certname appended, its stdout, stderr and exit status passed through
 *   unchanged — it gets the environment puppetserver gave us, as it did before espm; without
 *   one, `classes: {}`.
 *
 * Run by puppetserver's user for every catalog compile: it reads one file, never writes, never
 * needs the daemon, and loads nothing else — no commander, config schema, logger, express or
 * YAML library (bin/espm dispatches here before importing the daemon; the `ini` package is
 * loaded only for `-c`). Exit status: the fallback's, 0 for an answer of its own, 1 when the
 * classification file cannot be used, 2 for a bad command line.
 *
 * @packageDocumentation
 */
import { readFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkEncFile, type EncFile } from '../classifier/enc-file.js';
import { runPassthrough } from '../exec/passthrough.js';

/** Where the daemon writes the file by default (`[classifier] classification_file`, src/config/defaults.ts ENC_PATHS). */
const DEFAULT_FILE = '/opt/espm/enc/classification.json';

/** Exit status for a bad command line. */
export const EXIT_USAGE = 2;
/** Exit status when the classification file cannot be used (or the fallback cannot run). */
export const EXIT_FAILED = 1;

const USAGE = 'usage: espm enc [-f CLASSIFICATION_FILE | -c ESPM_INI] CERTNAME';

/**
 * Whether `name` can be a Puppet certname: printable ASCII without `/` (Puppet's
 * `\A[ -.0-~]+\Z`), lower case, not an option, at most 255 characters.
 */
export function isEncCertname(name: string): boolean {
  return name.length > 0 && name.length <= 255 && /^[ -.0-~]+$/.test(name) && name === name.toLowerCase() && !name.startsWith('-');
}

/**
 * The parsed command line, or a usage error (`help` for -h). Parsed by Node's own
 * `util.parseArgs` (commander would add ≈ 14 ms to every catalog compile).
 */
function parseCommandLine(args: readonly string[]): { file?: string; ini?: string; certname: string } | string {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { file: { type: 'string', short: 'f' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return (err as Error).message;
  }
  const { values, positionals } = parsed;
  if (values.help === true) return 'help';
  for (const [option, value] of [['-f', values.file], ['-c', values.config]] as const) {
    if (value !== undefined && !value.startsWith('/')) return `${option} needs an absolute path`;
  }
  if (values.file !== undefined && values.config !== undefined) return '-f and -c exclude each other';
  if (positionals.length !== 1) return `expected exactly one CERTNAME, got ${positionals.length}`;
  const certname = positionals[0]!;
  if (!isEncCertname(certname)) return `not a certname: ${JSON.stringify(certname.slice(0, 80))}`;
  return { certname, ...(values.file === undefined ? {} : { file: values.file }), ...(values.config === undefined ? {} : { ini: values.config }) };
}

/** `[classifier] classification_file` of an espm.ini (readable only by root: puppetserver passes `-f`). */
async function fileFromIni(path: string): Promise<string> {
  const { parse } = await import('ini');
  const parsed = parse(readFileSync(path, 'utf8')) as { classifier?: { classification_file?: unknown } };
  const value = parsed.classifier?.classification_file;
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : DEFAULT_FILE;
}

function write(fd: number, text: string): void {
  const buffer = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
}

/**
 * Runs `espm enc`.
 *
 * @param args - the arguments after `enc`
 * @returns the exit status
 */
export async function runEnc(args: readonly string[]): Promise<number> {
  const parsed = parseCommandLine(args);
  if (parsed === 'help') {
    write(1, `${USAGE}\nPrints the ENC YAML of a node espm created; any other certname goes to [classifier] fallback_enc.\npuppetserver runs it through bin/espm-enc (its external_nodes), which runs the fallback itself for a node espm did not create.\n`);
    return 0;
  }
  if (typeof parsed === 'string') {
    write(2, `espm enc: ${parsed}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  let file: EncFile;
  let path = parsed.file ?? DEFAULT_FILE;
  try {
    if (parsed.ini !== undefined) path = await fileFromIni(parsed.ini);
    file = checkEncFile(JSON.parse(readFileSync(path, 'utf8')), path);
  } catch (err) {
    // Never an answer for a file we cannot trust: puppetserver fails the compile and logs this.
    write(2, `espm enc: cannot use the classification file: ${(err as Error).message} (is the espm daemon running with [classifier] backend = enc?)\n`);
    return EXIT_FAILED;
  }
  const node = Object.hasOwn(file.nodes, parsed.certname) ? file.nodes[parsed.certname] : undefined;
  if (node !== undefined) {
    write(1, node.yaml);
    return 0;
  }
  if (file.fallback.length === 0) {
    write(1, file.unowned);
    return 0;
  }
  const outcome = runPassthrough([...file.fallback, parsed.certname], file.fallback_timeout_ms);
  if (!outcome.ran) {
    write(2, `espm enc: the fallback ENC: ${outcome.reason}\n`);
    return EXIT_FAILED;
  }
  return outcome.status;
}
