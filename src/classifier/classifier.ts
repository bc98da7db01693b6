/**
 * The Classifier interface: what espm asks of a console (the ENC), whatever its kind — shaped
 * by the job (create and delete a node's *classification*), not by any one tool's steps.
 *
 * An adapter knows its tool (invocations, messages, exit codes, its own multi-step work and
 * the rollback of it); it never decides ownership — that is the node service's
 * (src/service/nodes.ts). What an adapter needs later to remove exactly what it made is its
 * *receipt*, kept by the ledger (src/ownership/entries.ts). Source of truth: docs/design.md
 * ("Layers", "Ownership", "Backends").
 *
 * @packageDocumentation
 */
import { BackendError } from '../backend.js';
import type { Receipt } from '../ownership/entries.js';
import type { ClassifierConfig } from '../config.js';

export type { Receipt } from '../ownership/entries.js';

/** A node's whole classification, as the platform asked for it (names already validated). */
export interface Classification {
  /** Node name (= certname). */
  name: string;
  /** Node groups, all known to the console. */
  groups: readonly string[];
  /** Classes, all known to the console. */
  classes: readonly string[];
  /** Parameter name → value (top-scope variables); `{}` for none. */
  parameters: Readonly<Record<string, string>>;
}

/**
 * A classifier call failed (see {@link BackendError}): `failed` (the console refused or
 * answered something unexpected; for a create: nothing is left), `timeout` / `interrupted`
 * (the outcome is unknown: something may be left), `unavailable` (the tool or service cannot
 * be reached; nothing happened).
 */
export class ClassifierError extends BackendError {
  override readonly name = 'ClassifierError';
}

/** `create`: the console already has a node of that name (owned or not); nothing was created. */
export class NodeExistsError extends Error {
  override readonly name = 'NodeExistsError';
  /** @param output - the console's message, e.g. `Node already exists!` */
  constructor(readonly output: string) {
    super(output);
  }
}

/**
 * `delete`: what the receipt points at is no longer what espm made (e.g. the Node
 * Classifier's group at the recorded id no longer carries espm's name and rule). The adapter
 * reports the fact and changes nothing; the service decides (ownership uncertain, 409).
 */
export class NotOwnedError extends Error {
  override readonly name = 'NotOwnedError';
  /** @param reason - what was found instead, for the problem detail */
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** The console (ENC) espm classifies nodes in. */
export interface Classifier {
  /** The backend name of `[classifier] backend`. */
  readonly backend: string;
  /**
   * Names of every node group, sorted by code point.
   * @throws {@link ClassifierError}
   */
  listGroups(): Promise<string[]>;
  /**
   * Names of every class, sorted by code point.
   * @throws {@link ClassifierError}
   */
  listClasses(): Promise<string[]>;
  /**
   * The parameters this console cannot store, with why (e.g. a comma in a value on
   * puppet-dashboard 1.2.x). Never writes.
   *
   * @param parameters - name → value, already validated
   * @returns name → why; `{}` when every one can be stored
   * @throws {@link ClassifierError} when the console's abilities cannot be found out
   */
  unstorableParameters(parameters: Readonly<Record<string, string>>): Promise<Record<string, string>>;
  /**
   * Creates the node's whole classification (groups, classes, parameters). The adapter's own
   * multi-step work and its rollback live here: when it fails with `failed`, nothing is left.
   *
   * @returns the receipt the ledger keeps and {@link Classifier.delete} gets back (`{}` when
   *   the console finds the node by name)
   * @throws {@link NodeExistsError} when a node of that name exists (nothing created)
   * @throws {@link ClassifierError} `failed` (nothing left: refused, or rolled back — the
   *   message says so), `timeout` / `interrupted` (something may be left), `unavailable`
   */
  create(classification: Classification): Promise<Receipt>;
  /**
   * Deletes exactly what {@link Classifier.create} made for `name`.
   *
   * @param receipt - what `create` returned, as the ledger kept it; null for an entry adopted
   *   by an operator or migrated without one (the adapter then works from the name)
   * @returns `deleted`, or `absent` when the console has no such node (already gone)
   * @throws {@link NotOwnedError} when what the receipt points at is no longer espm's
   *   (nothing changed)
   * @throws {@link ClassifierError}
   */
  delete(name: string, receipt: Receipt | null): Promise<'deleted' | 'absent'>;
  /**
   * Registers a listener told of a list the adapter learned on its own (the dashboard-rake
   * worker's start-up self-check runs `nodegroup:list`), so the service's list cache can serve
   * it instead of asking again. Optional; called at most once per learned list.
   *
   * @param listener - gets which list (`groups` or `classes`) and its names, sorted
   */
  onListLearned?(listener: (list: 'groups' | 'classes', names: string[]) => void): void;
  /**
   * Checks the console and prepares what the adapter keeps running (the dashboard-rake
   * console worker) at start-up rather than at the first call.
   *
   * @returns fields for the start-up log line (e.g. `{ console: '…', worker: 'ready' }`)
   * @throws {@link ClassifierError} when the console is not usable (logged as a warning; calls
   *   are still tried later)
   */
  start?(): Promise<Record<string, unknown>>;
  /**
   * Re-reads what the adapter takes from files an operator edits (the `enc` groups file) on
   * SIGHUP, and takes the keys of the reloaded `[classifier]` section it can apply without a
   * restart (the `enc` fallback_enc and timeout). A broken file is refused and the previous
   * state kept.
   *
   * @param next - the reloaded `[classifier]` section (undefined: files only)
   * @returns fields for the log line
   * @throws {@link ClassifierError} saying what is wrong (logged; nothing changed)
   */
  reload?(next?: ClassifierConfig): Promise<Record<string, unknown>>;
  /** Ends what the adapter keeps running (the console worker). Called when espm stops. */
  close?(): Promise<void>;
}
