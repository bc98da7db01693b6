/**
 * The Classifier interface: what espm asks of a console (the ENC), whatever its kind.
 * Adapters know their tool (invocation, messages, exit codes); they never decide ownership.
 *
 * @packageDocumentation
 */
import { BackendError } from '../backend.js';

/** A node as espm asks the console to create it. */
export interface ClassifiedNode {
  /** Node name (= certname). */
  name: string;
  /** Node groups, all known to the console. */
  groups: readonly string[];
  /** Classes, all known to the console. */
  classes: readonly string[];
}

/** What this console can store, detected once from the tool. */
export interface ClassifierCapabilities {
  /** Node parameters can be set at all. */
  parameters: boolean;
  /**
   * Why a parameter value cannot be stored, or undefined when it can
   * (e.g. 1.2.x cannot carry a comma).
   */
  refuseParameterValue(value: string): string | undefined;
  /** Human description, e.g. `puppet-dashboard 1.2.x (node:parameters)`. */
  description: string;
}

/** A classifier call failed (see {@link BackendError}: `failed`, `timeout`, `unavailable`). */
export class ClassifierError extends BackendError {
  override readonly name = 'ClassifierError';
}

/** `addNode`: the console already has a node of that name (owned or not). */
export class NodeExistsError extends Error {
  override readonly name = 'NodeExistsError';
  /** @param output - the console's message, e.g. `Node already exists!` */
  constructor(readonly output: string) {
    super(output);
  }
}

/** The console (ENC) espm classifies nodes in. */
export interface Classifier {
  /** The backend name of `[classifier] backend`. */
  readonly backend: string;
  /**
   * Names of every node group, sorted.
   * @throws {@link ClassifierError}
   */
  listGroups(): Promise<string[]>;
  /**
   * Names of every class, sorted.
   * @throws {@link ClassifierError}
   */
  listClasses(): Promise<string[]>;
  /**
   * What the console can store.
   * @throws {@link ClassifierError} when it cannot be found out
   */
  capabilities(): Promise<ClassifierCapabilities>;
  /**
   * Creates a node with its groups and classes in one call.
   * @throws {@link NodeExistsError} when a node of that name exists
   * @throws {@link ClassifierError}
   */
  addNode(node: ClassifiedNode): Promise<void>;
  /**
   * Sets a node's parameters (top-scope variables).
   * @throws {@link ClassifierError}
   */
  setParameters(name: string, parameters: Readonly<Record<string, string>>): Promise<void>;
  /**
   * Deletes a node.
   * @returns `deleted`, or `absent` when the console has no node of that name
   * @throws {@link ClassifierError}
   */
  deleteNode(name: string): Promise<'deleted' | 'absent'>;
  /**
   * Prepares what the adapter keeps running (the dashboard-rake console worker) at
   * start-up, rather than at the first call. Never throws.
   *
   * @returns fields for the start-up log line (e.g. `{ worker: 'ready' }`)
   */
  start?(): Promise<Record<string, unknown>>;
  /** Ends what the adapter keeps running (the console worker). Called when espm stops. */
  close?(): Promise<void>;
}
