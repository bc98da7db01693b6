/**
 * The lock that keeps two espm processes (daemon or `espm ledger`) from sharing one state
 * directory: `<state_dir>/espm.lock`, holding the holder's pid.
 *
 * - **Taking a free lock** is one link(2) of a temp file already holding our pid: the lock file
 *   appears whole or not at all (nobody ever reads an empty lock), and only one link succeeds.
 * - **Taking over a stale lock** (its pid no longer runs: a crash, SIGKILL) is serialised by a
 *   claim: `espm.lock.takeover-<id>.<n>`, created the same exclusive way, where `<id>` names
 *   that one lock file (inode and mtime in ns). Only the claimer removes the stale lock — after
 *   checking it is still the same file with the same dead pid — and links its own; a process
 *   that loses the claim looks again (and finds the winner's live lock). A claimer that died
 *   mid-takeover leaves its claim behind: the next one (`<n>+1`) is claimed the same way.
 *   So of several processes starting against one stale lock, exactly one wins.
 *
 * Source of truth: docs/design.md ("Ownership": one espm per state directory).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { link, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Name of the lock file in the state directory. */
export const LOCK_FILE = 'espm.lock';
/** Prefix of the claim files that serialise the takeover of a stale lock. */
const CLAIM_PREFIX = `${LOCK_FILE}.takeover-`;
/** How long to wait for another process that is taking over a stale lock (ms). */
const TAKEOVER_WAIT_MS = 5000;

/** Another live process holds the state directory. */
export class StateLockedError extends Error {
  override readonly name = 'StateLockedError';
  /**
   * @param path - the lock file
   * @param pid - the holder's pid
   */
  constructor(
    readonly path: string,
    readonly pid: number,
  ) {
    super(
      `state directory is in use by process ${pid} (${path}); only one espm may use a state directory. ` +
        `If no espm runs as pid ${pid}, remove ${path}`,
    );
  }
}

/** Lock files held (or being taken) by this process: a pid alone cannot tell us from a crashed predecessor with our pid. */
const heldHere = new Set<string>();

/** True when a process of that pid exists (EPERM: exists, not ours to signal). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when `pid` is another process that runs (a lock or claim of ours, or of a dead pid, is stale). */
function heldByAnother(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isRunning(pid);
}

/**
 * Creates `path` holding `content`, or finds it exists: the content is written and fsync'd to a
 * temp file first, then link(2)ed into place (atomic, fails with EEXIST).
 *
 * @returns true when this call created it
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** A lock or claim file as read: the pid it holds (NaN when unreadable) and which file it is. */
interface Holder {
  pid: number;
  /** `<inode>-<mtime ns>`: tells this file from a later one at the same path. */
  id: string;
}

/** Reads a lock or claim file through one handle (content and identity of the same file); undefined when absent. */
async function readHolder(path: string): Promise<Holder | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const stats = await handle.stat({ bigint: true });
    const pid = Number.parseInt(await handle.readFile('utf8'), 10);
    return { pid, id: `${stats.ino}-${stats.mtimeNs}` };
  } finally {
    await handle.close();
  }
}

/** What one takeover attempt ended in. */
type Takeover = { outcome: 'taken' } | { outcome: 'look-again' } | { outcome: 'busy'; claimer: number };

/**
 * Takes over the stale lock `stale` at `path` if this process wins its claim.
 * `taken`: our lock is in place. `look-again`: the lock changed meanwhile (another process won,
 * or it was released). `busy`: a live process holds the claim and is taking over now.
 */
async function takeOver(stateDir: string, path: string, stale: Holder): Promise<Takeover> {
  for (let n = 0; ; n += 1) {
    const claim = join(stateDir, `${CLAIM_PREFIX}${stale.id}.${n}`);
    if (await createExclusive(claim, `${process.pid}\n`)) {
      try {
        const now = await readHolder(path);
        if (now === undefined || now.id !== stale.id || now.pid !== stale.pid || heldByAnother(now.pid)) {
          return { outcome: 'look-again' };
        }
        await unlink(path);
        return (await createExclusive(path, `${process.pid}\n`)) ? { outcome: 'taken' } : { outcome: 'look-again' };
      } finally {
        await unlink(claim).catch(() => undefined);
      }
    }
    const claimer = await readHolder(claim);
    if (claimer === undefined) return { outcome: 'look-again' }; // its claimer finished
    if (heldByAnother(claimer.pid)) return { outcome: 'busy', claimer: claimer.pid };
    // Its claimer died mid-takeover: claim the next one.
  }
}

/** Removes claims and temp files left by processes that died while taking the lock (best effort). */
async function sweep(stateDir: string): Promise<void> {
  const names = await readdir(stateDir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(`${LOCK_FILE}.`)) continue;
    const tempOf = /\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name);
    const leftover = tempOf === null ? name.startsWith(CLAIM_PREFIX) : !heldByAnother(Number(tempOf[1]));
    if (leftover) await unlink(join(stateDir, name)).catch(() => undefined);
  }
}

/** A held state-directory lock. */
export class StateLock {
  private constructor(readonly path: string) {}

  /**
   * Takes the lock of a state directory: creates `espm.lock`, or takes it over when its holder
   * no longer runs (atomically: of several processes racing for one stale lock, one wins and
   * the others get {@link StateLockedError} naming it).
   *
   * @param stateDir - an existing directory
   * @throws {@link StateLockedError} when a live process (or this one) holds it, or another
   *   process is still taking it over after 5 s
   */
  static async acquire(stateDir: string): Promise<StateLock> {
    const path = join(stateDir, LOCK_FILE);
    if (heldHere.has(path)) throw new StateLockedError(path, process.pid);
    heldHere.add(path);
    try {
      await StateLock.take(stateDir, path);
    } catch (err) {
      heldHere.delete(path);
      throw err;
    }
    await sweep(stateDir);
    return new StateLock(path);
  }

  private static async take(stateDir: string, path: string): Promise<void> {
    const deadline = Date.now() + TAKEOVER_WAIT_MS;
    let last = Number.NaN;
    while (Date.now() <= deadline) {
      if (await createExclusive(path, `${process.pid}\n`)) return;
      const holder = await readHolder(path);
      if (holder === undefined) continue; // released meanwhile
      if (heldByAnother(holder.pid)) throw new StateLockedError(path, holder.pid);
      // Stale: its holder is gone (or was a previous process that had our pid).
      const attempt = await takeOver(stateDir, path, holder);
      if (attempt.outcome === 'taken') return;
      if (attempt.outcome === 'busy') {
        last = attempt.claimer;
        await sleep(10);
      }
    }
    throw new StateLockedError(path, last);
  }

  /** Releases the lock (removes the file, if it still holds our pid). Idempotent. */
  async release(): Promise<void> {
    if (!heldHere.delete(this.path)) return;
    const holder = await readHolder(this.path).catch(() => undefined);
    if (holder?.pid === process.pid) await unlink(this.path).catch(() => undefined);
  }
}
