/**
 * The ledger: espm's durable record of every node and certificate it created, and the only
 * basis on which it deletes or revokes anything.
 *
 * `<state_dir>/ledger.json`, rewritten atomically (write-file-atomic: temp file, fsync,
 * rename; then the directory is fsync'd) on every change. Write-ahead: an entry is written
 * `pending` before the console/CA is touched, becomes `present` on success, and is removed
 * when the backend says the name already existed or the create was rolled back. An entry
 * still `pending` when the ledger is opened was interrupted by a crash: its outcome is
 * unknown, so it becomes `uncertain`, and espm never deletes or revokes on it until an
 * operator resolves it (`espm ledger adopt|forget`). Deletes are write-ahead too: an entry is
 * marked `deleting` before the backend is asked to delete or revoke, and removed after.
 *
 * One process per state directory: {@link Ledger.open} takes `<state_dir>/espm.lock`.
 *
 * @packageDocumentation
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import type { Logger } from '../logger.js';
import { StateLock } from './lock.js';

/** What an entry records: a console node or a CA certificate. */
export type EntryKind = 'node' | 'certificate';
/** Kinds, for iteration and CLI validation. */
export const ENTRY_KINDS: readonly EntryKind[] = ['node', 'certificate'];

/**
 * `pending`: a create is under way (write-ahead). `present`: created by espm and there.
 * `uncertain`: a create was interrupted; espm may or may not have created it.
 * `deleting`: espm created it and a delete/revoke is under way or was interrupted (write-ahead):
 * ownership is certain, existence is not, so deleting again is safe.
 */
export type EntryState = 'pending' | 'present' | 'uncertain' | 'deleting';

/** One record of the ledger. */
export interface LedgerEntry {
  kind: EntryKind;
  /** Node name or certname. */
  name: string;
  state: EntryState;
  /** When the entry was first written (ISO-8601). */
  created_at: string;
  /** When it last changed (ISO-8601). */
  updated_at: string;
  /** What was created, as the API answers it (node: groups/classes/parameters; certificate: metadata). */
  details: Record<string, unknown>;
}

/** Name of the ledger file in the state directory. */
export const LEDGER_FILE = 'ledger.json';
/** Version of the ledger file format. */
export const LEDGER_FORMAT = 1;

const entrySchema = z.strictObject({
  kind: z.enum(['node', 'certificate']),
  name: z.string().min(1),
  state: z.enum(['pending', 'present', 'uncertain', 'deleting']),
  created_at: z.string(),
  updated_at: z.string(),
  details: z.record(z.string(), z.unknown()),
});
const fileSchema = z.strictObject({ format: z.literal(LEDGER_FORMAT), entries: z.array(entrySchema) });

/** The ledger file is unreadable or not a ledger: espm refuses to guess what it owns. */
export class LedgerCorruptError extends Error {
  override readonly name = 'LedgerCorruptError';
}

/** A ledger operation that does not fit the entry's state (e.g. begin on an existing name). */
export class LedgerStateError extends Error {
  override readonly name = 'LedgerStateError';
}

/** Options of {@link Ledger.open}. */
export interface LedgerOptions {
  logger?: Logger;
  /** Clock, for timestamps; default `Date.now`. */
  now?: () => number;
}

/** Key of an entry in the in-memory map. */
function keyOf(kind: EntryKind, name: string): string {
  return `${kind}\u0000${name}`;
}

/**
 * The ledger of one state directory, held open (and locked) by one process.
 * Mutations are serialised: each resolves once the new file is durable.
 */
export class Ledger {
  private readonly entries = new Map<string, LedgerEntry>();
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    readonly stateDir: string,
    private readonly lock: StateLock,
    private readonly options: LedgerOptions,
  ) {}

  /** Absolute path of the ledger file. */
  get path(): string {
    return join(this.stateDir, LEDGER_FILE);
  }

  /**
   * Locks the state directory, reads the ledger (an absent file is an empty ledger) and
   * turns every `pending` entry (a create interrupted by a crash) into `uncertain`.
   *
   * @param stateDir - `[state] dir`; created (0700) when missing
   * @throws `StateLockedError` when another process holds the state directory
   * @throws {@link LedgerCorruptError} when the file exists but is not a valid ledger
   */
  static async open(stateDir: string, options: LedgerOptions = {}): Promise<Ledger> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const lock = await StateLock.acquire(stateDir);
    const ledger = new Ledger(stateDir, lock, options);
    try {
      await ledger.load();
    } catch (err) {
      await lock.release();
      throw err;
    }
    return ledger;
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let parsed: z.infer<typeof fileSchema>;
    try {
      parsed = fileSchema.parse(JSON.parse(text));
    } catch (err) {
      throw new LedgerCorruptError(
        `${this.path} is not a valid espm ledger (${(err as Error).message.split('\n')[0]}); ` +
          'espm will not guess what it owns: restore it from a backup or inspect it by hand',
      );
    }
    const interrupted: string[] = [];
    for (const entry of parsed.entries) {
      if (entry.state === 'pending') {
        entry.state = 'uncertain';
        entry.updated_at = this.timestamp();
        interrupted.push(`${entry.kind} ${entry.name}`);
      }
      this.entries.set(keyOf(entry.kind, entry.name), entry);
    }
    if (interrupted.length > 0) {
      this.options.logger?.warn(
        { entries: interrupted },
        'creates interrupted by a crash: ownership uncertain until resolved with `espm ledger adopt|forget`',
      );
      await this.persist();
    }
  }

  private timestamp(): string {
    return new Date((this.options.now ?? Date.now)()).toISOString();
  }

  /** The entry of `kind`/`name`, or undefined. A copy: changing it changes nothing. */
  get(kind: EntryKind, name: string): LedgerEntry | undefined {
    const entry = this.entries.get(keyOf(kind, name));
    return entry === undefined ? undefined : structuredClone(entry);
  }

  /** Every entry, sorted by kind then name (copies). */
  list(): LedgerEntry[] {
    return [...this.entries.values()]
      .sort((a, b) => a.kind.localeCompare(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => structuredClone(e));
  }

  /** Counts of entries per kind and state. */
  counts(): Record<EntryKind, Record<EntryState, number>> {
    const counts = {
      node: { pending: 0, present: 0, uncertain: 0, deleting: 0 },
      certificate: { pending: 0, present: 0, uncertain: 0, deleting: 0 },
    };
    for (const entry of this.entries.values()) counts[entry.kind][entry.state] += 1;
    return counts;
  }

  /**
   * Write-ahead: records that espm is about to create `name` (state `pending`), durably,
   * before the backend is touched.
   *
   * @throws {@link LedgerStateError} when an entry of that kind and name exists
   */
  async begin(kind: EntryKind, name: string, details: Record<string, unknown>): Promise<void> {
    await this.mutate(() => {
      if (this.entries.has(keyOf(kind, name))) {
        throw new LedgerStateError(`the ledger already has ${kind} ${name}`);
      }
      const now = this.timestamp();
      this.entries.set(keyOf(kind, name), { kind, name, state: 'pending', created_at: now, updated_at: now, details });
    });
  }

  /**
   * Marks an entry `present` (a create succeeded, an operator adopted it, or a delete was
   * refused), optionally replacing its details.
   *
   * @returns the entry as stored
   * @throws {@link LedgerStateError} when there is no such entry
   */
  async commit(kind: EntryKind, name: string, details?: Record<string, unknown>): Promise<LedgerEntry> {
    return this.setState(kind, name, 'present', details);
  }

  /**
   * Write-ahead for a delete/revoke: marks a `present` entry `deleting`, durably, before the
   * backend is touched. A crash then leaves an entry that can safely be deleted again.
   *
   * @throws {@link LedgerStateError} when there is no such entry
   */
  async markDeleting(kind: EntryKind, name: string): Promise<LedgerEntry> {
    return this.setState(kind, name, 'deleting');
  }

  /**
   * Marks an entry `uncertain`: espm cannot tell whether the backend has it.
   *
   * @throws {@link LedgerStateError} when there is no such entry
   */
  async markUncertain(kind: EntryKind, name: string): Promise<LedgerEntry> {
    return this.setState(kind, name, 'uncertain');
  }

  private async setState(
    kind: EntryKind,
    name: string,
    state: EntryState,
    details?: Record<string, unknown>,
  ): Promise<LedgerEntry> {
    let result!: LedgerEntry;
    await this.mutate(() => {
      const entry = this.entries.get(keyOf(kind, name));
      if (entry === undefined) throw new LedgerStateError(`the ledger has no ${kind} ${name}`);
      entry.state = state;
      entry.updated_at = this.timestamp();
      if (details !== undefined) entry.details = details;
      result = structuredClone(entry);
    });
    return result;
  }

  /**
   * Removes an entry (deleted, rolled back, refused as existing, or forgotten by an operator).
   *
   * @returns true when there was one
   */
  async remove(kind: EntryKind, name: string): Promise<boolean> {
    let removed = false;
    await this.mutate(() => {
      removed = this.entries.delete(keyOf(kind, name));
      return removed;
    });
    return removed;
  }

  /**
   * Applies `change` to the in-memory entries and persists, one mutation at a time. If the
   * file cannot be written the in-memory change is undone and the error thrown.
   */
  private mutate(change: () => boolean | void): Promise<void> {
    const run = async (): Promise<void> => {
      const before = new Map([...this.entries].map(([k, v]) => [k, structuredClone(v)]));
      if (change() === false) return;
      try {
        await this.persist();
      } catch (err) {
        this.entries.clear();
        for (const [k, v] of before) this.entries.set(k, v);
        throw err;
      }
    };
    const next = this.writes.then(run, run);
    this.writes = next.catch(() => undefined);
    return next;
  }

  private async persist(): Promise<void> {
    const body = { format: LEDGER_FORMAT, entries: this.list() };
    await writeFileAtomic(this.path, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600, fsync: true });
    const dir = await open(this.stateDir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Waits for pending writes, then releases the state directory's lock. */
  async close(): Promise<void> {
    await this.writes;
    await this.lock.release();
  }
}
