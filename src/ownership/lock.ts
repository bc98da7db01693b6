/**
 * The lock that keeps two espm processes (daemon or `espm ledger`) from sharing one state
 * directory: `<state_dir>/espm.lock`, created with O_CREAT|O_EXCL and holding the holder's
 * pid. A lock whose pid is no longer running (a crash, SIGKILL) is stale and taken over.
 *
 * @packageDocumentation
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Name of the lock file in the state directory. */
export const LOCK_FILE = 'espm.lock';

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

/** Lock files held by this process (an O_EXCL file alone cannot tell us from a crashed predecessor with our pid). */
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

/** A held state-directory lock. */
export class StateLock {
  private constructor(readonly path: string) {}

  /**
   * Takes the lock of a state directory.
   *
   * @param stateDir - an existing directory
   * @throws {@link StateLockedError} when a live process (or this one) holds it
   */
  static async acquire(stateDir: string): Promise<StateLock> {
    const path = join(stateDir, LOCK_FILE);
    if (heldHere.has(path)) throw new StateLockedError(path, process.pid);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        const handle = await open(path, 'wx', 0o600);
        try {
          await handle.writeFile(`${process.pid}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
        heldHere.add(path);
        return new StateLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isRunning(holder)) {
        throw new StateLockedError(path, holder);
      }
      // Stale: its holder is gone (or was a previous process that had our pid).
      await unlink(path).catch(() => undefined);
    }
    throw new StateLockedError(path, Number.NaN);
  }

  /** Releases the lock (removes the file). Idempotent. */
  async release(): Promise<void> {
    if (!heldHere.delete(this.path)) return;
    await unlink(this.path).catch(() => undefined);
  }
}
