/**
 * The ledger: espm's durable record of every node and certificate it created, and the only
 * basis on which it deletes or revokes anything.
 *
 * `<state_dir>/ledger.json` (format 2, see src/ownership/ledger-file.ts), rewritten atomically
 * and durably on every change. Write-ahead: an entry is written `pending` before the backend
 * is touched, becomes `present` with the backend's receipt on success, and is removed when the
 * backend says the name already existed or the create was rolled back. An entry still
 * `pending` when the ledger is opened was interrupted by a crash: its outcome is unknown, so it
 * becomes `uncertain`, and espm never deletes or revokes on it until an operator resolves it
 * (`espm ledger adopt|forget`). Deletes are write-ahead too: an entry is marked `deleting`
 * before the backend is asked to delete or revoke; once the backend object is gone it is
 * removed, or kept as `deleted` while follow-up steps (e.g. a PuppetDB deactivation) are owed.
 *
 * One process per state directory: {@link Ledger.open} takes `<state_dir>/espm.lock`.
 *
 * Source of truth: docs/design.md ("Ownership", "Ledger format 2").
 *
 * @packageDocumentation
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import type {
  EntryKind,
  EntryOf,
  EntryState,
  LedgerEntry,
  PendingStep,
  Receipt,
  RecordOf,
} from './entries.js';
import { ENTRY_STATES } from './entries.js';
import { keepV1Backup, LEDGER_FILE, ledgerText, readLedgerFile, writeDurably } from './ledger-file.js';
import { StateLock } from './lock.js';

export * from './entries.js';
export { LEDGER_FILE, LEDGER_FORMAT, LEDGER_V1_BACKUP, LedgerCorruptError } from './ledger-file.js';

/** A ledger operation that does not fit the entry's state (e.g. begin on an existing name). */
export class LedgerStateError extends Error {
  override readonly name = 'LedgerStateError';
}

/** Options of {@link Ledger.open}. */
export interface LedgerOptions {
  /** Logs the migration of a format-1 file (info) and creates interrupted by a crash (warn). */
  logger?: Logger;
  /** Clock in ms since the epoch, for timestamps; default `Date.now`. */
  now?: () => number;
}

/** What {@link Ledger.commit} may change besides the state. */
export interface CommitUpdate<K extends EntryKind> {
  /** Replaces what the entry records (e.g. the certificate's fingerprint once issued). */
  record?: RecordOf<K>;
  /** The backend's receipt (what the adapter needs to remove exactly what it made). */
  receipt?: Receipt;
}

/** Key of an entry in the in-memory map. */
function keyOf(kind: EntryKind, name: string): string {
  return `${kind}\u0000${name}`;
}

/** Sort order of {@link Ledger.list}: kind, then name (code-unit order). */
function byKindThenName(a: LedgerEntry, b: LedgerEntry): number {
  return a.kind.localeCompare(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** A new entry of `kind`, typed as that kind's entry. */
function newEntry<K extends EntryKind>(kind: K, name: string, record: RecordOf<K>, now: string): EntryOf<K> {
  const base = { name, state: 'pending' as const, created_at: now, updated_at: now, receipt: null, pending_steps: [] };
  const entry: LedgerEntry =
    kind === 'node'
      ? { kind: 'node', ...base, node: structuredClone(record as RecordOf<'node'>) }
      : { kind: 'certificate', ...base, certificate: structuredClone(record as RecordOf<'certificate'>) };
  return entry as EntryOf<K>;
}

/**
 * The ledger of one state directory, held open (and locked) by one process.
 * Mutations are serialised: each resolves once the new file is durable; if the file cannot be
 * written, the in-memory change is undone and the write's error thrown.
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
   * Locks the state directory, reads the ledger (an absent file is an empty ledger), migrates
   * a format-1 file (crash-safe: the v1 file is first kept as `ledger.v1.json`), and turns
   * every `pending` entry (a create interrupted by a crash) into `uncertain`.
   *
   * @param stateDir - `[state] dir`; created (0700) when missing
   * @throws `StateLockedError` when another process holds the state directory
   * @throws `LedgerCorruptError` when the file exists but is not a valid ledger, or is of a
   *   format newer than this espm knows
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
    const { entries, v1Text } = await readLedgerFile(this.path);
    const interrupted: string[] = [];
    for (const entry of entries) {
      if (entry.state === 'pending') {
        entry.state = 'uncertain';
        entry.updated_at = this.timestamp();
        interrupted.push(`${entry.kind} ${entry.name}`);
      }
      this.entries.set(keyOf(entry.kind, entry.name), entry);
    }
    if (v1Text !== undefined) {
      const backup = await keepV1Backup(this.stateDir, v1Text);
      await this.persist();
      this.options.logger?.info(
        { ledger: this.path, backup, from_format: 1, entries: entries.length },
        'ledger migrated from format 1 to format 2; the format-1 file is kept as its backup',
      );
    }
    if (interrupted.length > 0) {
      this.options.logger?.warn(
        { entries: interrupted },
        'creates interrupted by a crash: ownership uncertain until resolved with `espm ledger adopt|forget`',
      );
      if (v1Text === undefined) await this.persist();
    }
  }

  private timestamp(): string {
    return new Date((this.options.now ?? Date.now)()).toISOString();
  }

  /** The entry of `kind`/`name`, or undefined. A copy: changing it changes nothing. */
  get<K extends EntryKind>(kind: K, name: string): EntryOf<K> | undefined {
    const entry = this.entries.get(keyOf(kind, name));
    return entry === undefined ? undefined : (structuredClone(entry) as EntryOf<K>);
  }

  /** Every entry, sorted by kind then name (copies). */
  list(): LedgerEntry[] {
    return [...this.entries.values()].sort(byKindThenName).map((e) => structuredClone(e));
  }

  /** Counts of entries per kind and state (every state present, 0 when none). */
  counts(): Record<EntryKind, Record<EntryState, number>> {
    const zero = (): Record<EntryState, number> =>
      Object.fromEntries(ENTRY_STATES.map((s) => [s, 0])) as Record<EntryState, number>;
    const counts: Record<EntryKind, Record<EntryState, number>> = { node: zero(), certificate: zero() };
    for (const entry of this.entries.values()) counts[entry.kind][entry.state] += 1;
    return counts;
  }

  /**
   * Write-ahead: records that espm is about to create `name` (state `pending`, receipt `null`,
   * no pending steps), durably, before the backend is touched.
   *
   * @param record - what the platform asked for (stored as a copy)
   * @throws {@link LedgerStateError} when an entry of that kind and name exists
   */
  async begin<K extends EntryKind>(kind: K, name: string, record: RecordOf<K>): Promise<void> {
    await this.mutate(() => {
      if (this.entries.has(keyOf(kind, name))) {
        throw new LedgerStateError(`the ledger already has ${kind} ${name}`);
      }
      this.entries.set(keyOf(kind, name), newEntry(kind, name, record, this.timestamp()));
    });
  }

  /**
   * Marks an entry `present` (a create succeeded, an operator adopted it, or a delete was
   * refused), optionally replacing its record and setting its receipt.
   *
   * @returns the entry as stored (a copy)
   * @throws {@link LedgerStateError} when there is no such entry, or it is `deleted` (the
   *   backend object is gone)
   */
  async commit<K extends EntryKind>(kind: K, name: string, update: CommitUpdate<K> = {}): Promise<EntryOf<K>> {
    return this.change(kind, name, (entry) => {
      this.refuseDeleted(entry, 'present');
      entry.state = 'present';
      if (update.record !== undefined) {
        if (entry.kind === 'node') entry.node = structuredClone(update.record as RecordOf<'node'>);
        else entry.certificate = structuredClone(update.record as RecordOf<'certificate'>);
      }
      if (update.receipt !== undefined) entry.receipt = structuredClone(update.receipt);
    });
  }

  /**
   * Write-ahead for a delete/revoke: marks an entry `deleting`, durably, before the backend is
   * touched. A crash then leaves an entry that can safely be deleted again.
   *
   * @throws {@link LedgerStateError} when there is no such entry, or it is `deleted`
   */
  async markDeleting<K extends EntryKind>(kind: K, name: string): Promise<EntryOf<K>> {
    return this.change(kind, name, (entry) => {
      this.refuseDeleted(entry, 'deleting');
      entry.state = 'deleting';
    });
  }

  /**
   * Marks an entry `uncertain`: espm cannot tell whether the backend has it (a create that
   * timed out or was interrupted).
   *
   * @throws {@link LedgerStateError} when there is no such entry, or it is `deleted`
   */
  async markUncertain<K extends EntryKind>(kind: K, name: string): Promise<EntryOf<K>> {
    return this.change(kind, name, (entry) => {
      this.refuseDeleted(entry, 'uncertain');
      entry.state = 'uncertain';
    });
  }

  /**
   * Removes an entry (deleted, rolled back, refused as existing, or forgotten by an operator),
   * whatever its state and pending steps.
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
   * The backend object is gone: removes the entry when `owed` is empty, else keeps it as
   * `deleted` with those steps added to its pending steps (oldest first, each once).
   *
   * @param owed - follow-ups still owed for the name (e.g. `puppetdb_deactivation`)
   * @throws {@link LedgerStateError} when there is no such entry
   */
  async finishDeletion(kind: EntryKind, name: string, owed: readonly PendingStep[]): Promise<void> {
    await this.mutate(() => {
      const key = keyOf(kind, name);
      const entry = this.entries.get(key);
      if (entry === undefined) throw new LedgerStateError(`the ledger has no ${kind} ${name}`);
      if (owed.length === 0) {
        this.entries.delete(key);
        return;
      }
      entry.state = 'deleted';
      entry.pending_steps = [...new Set([...entry.pending_steps, ...owed])];
      entry.updated_at = this.timestamp();
    });
  }

  /**
   * A follow-up is done: drops `step` from the entry's pending steps (nothing changes when it
   * was not owed); a `deleted` entry with nothing left owed is removed.
   *
   * @throws {@link LedgerStateError} when there is no such entry
   */
  async completePendingStep(kind: EntryKind, name: string, step: PendingStep): Promise<void> {
    await this.mutate(() => {
      const key = keyOf(kind, name);
      const entry = this.entries.get(key);
      if (entry === undefined) throw new LedgerStateError(`the ledger has no ${kind} ${name}`);
      if (!entry.pending_steps.includes(step)) return false;
      entry.pending_steps = entry.pending_steps.filter((s) => s !== step);
      entry.updated_at = this.timestamp();
      if (entry.state === 'deleted' && entry.pending_steps.length === 0) this.entries.delete(key);
      return true;
    });
  }

  private refuseDeleted(entry: LedgerEntry, to: EntryState): void {
    if (entry.state === 'deleted') {
      throw new LedgerStateError(
        `${entry.kind} ${entry.name} is deleted (only ${entry.pending_steps.join(', ')} owed); it cannot become ${to}`,
      );
    }
  }

  /** Applies `apply` to one existing entry, stamps `updated_at`, persists; returns a copy. */
  private async change<K extends EntryKind>(kind: K, name: string, apply: (entry: LedgerEntry) => void): Promise<EntryOf<K>> {
    let result!: EntryOf<K>;
    await this.mutate(() => {
      const entry = this.entries.get(keyOf(kind, name));
      if (entry === undefined) throw new LedgerStateError(`the ledger has no ${kind} ${name}`);
      apply(entry);
      entry.updated_at = this.timestamp();
      result = structuredClone(entry) as EntryOf<K>;
    });
    return result;
  }

  /**
   * Applies `change` to the in-memory entries and persists, one mutation at a time. `change`
   * returning false means nothing changed (no write). If `change` throws or the file cannot
   * be written, the in-memory entries are restored and the error thrown.
   */
  private mutate(change: () => boolean | void): Promise<void> {
    const run = async (): Promise<void> => {
      const before = new Map([...this.entries].map(([k, v]) => [k, structuredClone(v)]));
      try {
        if (change() === false) return;
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
    await writeDurably(this.path, ledgerText(this.list()));
  }

  /** Waits for pending writes, then releases the state directory's lock. */
  async close(): Promise<void> {
    await this.writes;
    await this.lock.release();
  }
}
