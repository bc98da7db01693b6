/**
 * `espm enc [-f classification.json | -c espm.ini] CERTNAME`: puppetserver's exec ENC
 * (`node_terminus = exec`, `external_nodes = …/espm enc -f FILE`; Puppet splits the setting on
 * whitespace and appends the certname). docs/design.md "`enc`".
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
import { spawnSync } from 'node:child_process';
import { readFileSync, writeSync } from 'node:fs';
import { checkEncFile, type EncFile } from '../classifier/enc-file.js';

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

/** The parsed command line, or a usage error. */
function parseArgs(args: readonly string[]): { file?: string; ini?: string; certname: string } | string {
  let file: string | undefined;
  let ini: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-f' || arg === '--file' || arg === '-c' || arg === '--config') {
      const value = args[++i];
      if (value === undefined || !value.startsWith('/')) return `${arg} needs an absolute path`;
      if (arg === '-f' || arg === '--file') file = value;
      else ini = value;
    } else if (arg === '-h' || arg === '--help') {
      return 'help';
    } else {
      rest.push(arg);
    }
  }
  if (rest.length !== 1) return `expected exactly one CERTNAME, got ${rest.length}`;
  const certname = rest[0]!;
  if (!isEncCertname(certname)) return `not a certname: ${JSON.stringify(certname.slice(0, 80))}`;
  if (file !== undefined && ini !== undefined) return '-f and -c exclude each other';
  return { certname, ...(file === undefined ? {} : { file }), ...(ini === undefined ? {} : { ini }) };
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
  const parsed = parseArgs(args);
  if (parsed === 'help') {
    write(1, `${USAGE}\nPrints the ENC YAML of a node espm created; any other certname goes to [classifier] fallback_enc.\n`);
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
  const [command, ...fallbackArgs] = file.fallback as [string, ...string[]];
  const result = spawnSync(command, [...fallbackArgs, parsed.certname], { stdio: 'inherit', shell: false });
  if (result.error !== undefined) {
    write(2, `espm enc: cannot run the fallback ENC ${command}: ${result.error.message}\n`);
    return EXIT_FAILED;
  }
  return result.status ?? EXIT_FAILED;
}
