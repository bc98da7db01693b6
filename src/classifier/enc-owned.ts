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
 * @throws NodeJS.ErrnoException from the file system (the previous set stays in place)
 */
export async function writeOwnedNames(classificationFile: string, names: Iterable<string>, gid?: number): Promise<void> {
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
