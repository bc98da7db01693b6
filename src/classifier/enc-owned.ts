/**
 * The `owned` directory of the `enc` classifier: one empty file per certname espm created,
 * beside the classification file, so that bin/espm-enc (puppetserver's exec ENC front, POSIX
 * sh) decides by one file lookup whether a name is espm's — and runs the site's previous ENC
 * for any other name without starting Node.js. It holds names only: the answers stay in the
 * classification file (src/classifier/enc-file.ts), rendered once, printed by `espm enc`.
 *
 * The set is never edited in place: each write makes a new generation directory
 * (`owned.<random>`), fills it, and swaps the `owned` symlink to it with one rename, so a
 * reader sees the old set or the new one, never half of one. The generation the link pointed
 * to before is kept until the next write (a lookup that resolved the link just before the
 * swap still finds its file); older generations, and with them the files of deleted nodes,
 * are removed. Source: docs/design.md "`enc`"; rename(2) replaces a symlink atomically.
 *
 * Each generation also carries the site's previous ENC for bin/espm-enc, written from
 * `[classifier] fallback_enc` and `[classifier] timeout` (the only source of both; the
 * `external_nodes` line names only the classification file): `.fallback`, the command line as
 * one line of words separated by single spaces (bin/espm-enc splits it on spaces, as Puppet
 * splits its `external_nodes` setting: docs/reference/modern-puppet.md), and `.timeout`, the
 * seconds it may run. A certname never starts with `.`, so neither can be an owned name.
 * Without a fallback there is no `.fallback` file.
 *
 * The directory is readable by the group of the classification file's directory
 * (puppetserver's), like the file; it holds no secret.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isCertname } from '../names.js';

/** Name of the symlink (beside the classification file) bin/espm-enc looks names up in. */
export const OWNED_LINK = 'owned';
/** Mode of a generation directory: the owner writes, the group (puppetserver's) looks up. */
export const OWNED_DIR_MODE = 0o750;
/** File of a generation holding the fallback's command line (one line, words separated by a space). */
export const FALLBACK_FILE = '.fallback';
/** File of a generation holding the fallback's timeout, seconds (one line, e.g. `10` or `0.5`). */
export const TIMEOUT_FILE = '.timeout';

/** The site's previous ENC as bin/espm-enc runs it for a name espm does not own. */
export interface OwnedFallback {
  /** `[classifier] fallback_enc` as an argv (the first word an absolute path; no word holds whitespace); empty = none. */
  argv: readonly string[];
  /** `[classifier] timeout`, ms (written as seconds). */
  timeoutMs: number;
}

/** Files created at once while filling a generation. */
const BATCH = 64;

/**
 * Path of the `owned` symlink for a classification file (bin/espm-enc derives it the same
 * way: `${file%/*}/owned`).
 *
 * @param classificationFile - absolute path of the classification file
 */
export function ownedLinkPath(classificationFile: string): string {
  return join(dirname(classificationFile), OWNED_LINK);
}

/**
 * Replaces the set of owned names as a whole.
 *
 * Names that are not certnames by espm's rule (src/names.ts `isCertname`, e.g. from a
 * hand-edited classification file) get no file: bin/espm-enc never looks them up (it hands
 * them to `espm enc`), and no name can leave the directory.
 *
 * @param classificationFile - absolute path of the classification file (its directory exists)
 * @param names - the certnames espm created
 * @param gid - group of the generation directory (puppetserver's); undefined = left as created
 * @param fallback - the site's previous ENC, written as `.fallback` and `.timeout`; undefined
 *   or an empty argv = none (no `.fallback` file)
 * @throws NodeJS.ErrnoException from the file system (the previous set stays in place)
 * @throws Error when a word of the fallback holds whitespace (it could not be split back)
 */
export async function writeOwnedNames(classificationFile: string, names: Iterable<string>, gid?: number, fallback?: OwnedFallback): Promise<void> {
  if (fallback?.argv.some((word) => word === '' || /\s/.test(word))) throw new Error('a word of the fallback ENC is empty or holds whitespace');
  const dir = dirname(classificationFile);
  const link = ownedLinkPath(classificationFile);
  const generation = `${OWNED_LINK}.${randomBytes(8).toString('hex')}`;
  const target = join(dir, generation);
  const previous = await readlink(link).catch(() => undefined);
  await mkdir(target, { mode: OWNED_DIR_MODE });
  try {
    await chmod(target, OWNED_DIR_MODE);
    if (gid !== undefined) await chown(target, 0, gid);
    const valid = [...names].filter(isCertname);
    for (let i = 0; i < valid.length; i += BATCH) {
      await Promise.all(valid.slice(i, i + BATCH).map((name) => writeFile(join(target, name), '', { mode: 0o640, flag: 'wx' })));
    }
    if (fallback !== undefined && fallback.argv.length > 0) {
      // Written before the rename: a reader sees them with the names of the same generation.
      await writeFile(join(target, TIMEOUT_FILE), `${fallback.timeoutMs / 1000}\n`, { mode: 0o640, flag: 'wx' });
      await writeFile(join(target, FALLBACK_FILE), `${fallback.argv.join(' ')}\n`, { mode: 0o640, flag: 'wx' });
    }
    const temporary = `${target}.link`;
    await symlink(generation, temporary);
    await rename(temporary, link);
  } catch (err) {
    await rm(target, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  // Older generations and leftovers of an interrupted write; rm never follows a symlink.
  for (const entry of await readdir(dir)) {
    if (entry.startsWith(`${OWNED_LINK}.`) && entry !== generation && entry !== previous) await rm(join(dir, entry), { recursive: true, force: true });
  }
}
