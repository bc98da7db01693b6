/**
 * Per-key mutual exclusion (async-mutex): one operation per node name or certname at a time.
 *
 * @packageDocumentation
 */
import { Mutex } from 'async-mutex';

/** Per-key mutual exclusion: one operation per name at a time. */
export class KeyedMutex {
  private readonly mutexes = new Map<string, { mutex: Mutex; users: number }>();

  /**
   * Runs `task` while holding the lock of `key`.
   *
   * @returns what `task` returns
   */
  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    let slot = this.mutexes.get(key);
    if (slot === undefined) {
      slot = { mutex: new Mutex(), users: 0 };
      this.mutexes.set(key, slot);
    }
    slot.users += 1;
    try {
      return await slot.mutex.runExclusive(task);
    } finally {
      slot.users -= 1;
      if (slot.users === 0) this.mutexes.delete(key);
    }
  }
}
