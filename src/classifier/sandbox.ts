/**
 * The sandbox classifier (`[classifier] backend = sandbox`): a console in pure TypeScript for
 * platform engineers who integrate against espm without a Puppet master. Not for production
 * (espm warns at start-up).
 *
 * It behaves like a PE 2.5 console running puppet-dashboard 2.0, seeded with the same data as
 * the console double (test/fixtures/console, {@link SANDBOX_SEED}): node names are unique
 * case-insensitively and ignoring trailing spaces (MySQL collation); a create on an existing
 * name fails with the console's `Node already exists!`; parameters may hold commas (no value
 * is refused); deleting an unknown name is `absent`. Unknown groups or classes given to a
 * create are dropped, as the console does (the node service refuses them before they get
 * here). A create is one atomic store write (node and parameters together: nothing to roll
 * back); the receipt is `{}`. No process is ever spawned.
 *
 * State: `<state_dir>/sandbox/console.json`, see src/classifier/sandbox-store.ts.
 * Source of truth: docs/design.md ("Backends").
 *
 * @packageDocumentation
 */
import type { Logger } from '../logger.js';
import { ClassifierError, NodeExistsError, type Classification, type Classifier, type Receipt } from './classifier.js';
import {
  dbTime,
  externalNodeOf,
  findByName,
  SANDBOX_CONSOLE_MESSAGES,
  SandboxStoreFile,
  type ExternalNode,
  type SandboxStore,
  type StoredNode,
} from './sandbox-store.js';

export {
  collationKey,
  SANDBOX_CONSOLE_FILE,
  SANDBOX_CONSOLE_MESSAGES,
  SANDBOX_DIR,
  SANDBOX_SEED,
  seedStore,
  type ExternalNode,
  type ParameterRow,
  type SandboxStore,
  type StoredClass,
  type StoredGroup,
  type StoredNode,
} from './sandbox-store.js';

/** Options of {@link SandboxClassifier}. */
export interface SandboxClassifierOptions {
  /** Changes are logged at debug level (names only). */
  logger?: Logger;
  /** Clock for the records' timestamps, ms since the epoch; default `Date.now`. */
  now?: () => number;
}

/**
 * Sets a node's parameters as 2.0's `node:variables` does: a key the node has (matched
 * case-insensitively) gets the new value in its first row and loses its duplicate rows; a
 * new key is appended. Other keys are kept.
 */
function setParameterRows(node: StoredNode, parameters: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(parameters)) {
    const first = node.parameters.findIndex(([k]) => k.toLowerCase() === key.toLowerCase());
    if (first === -1) {
      node.parameters.push([key, value]);
      continue;
    }
    node.parameters[first] = [key, value];
    node.parameters = node.parameters.filter(([k], i) => i <= first || k.toLowerCase() !== key.toLowerCase());
  }
}

/** The sandbox classifier: a seeded PE 2.5 console (puppet-dashboard 2.0) in a JSON file. */
export class SandboxClassifier implements Classifier {
  /** `[classifier] backend = sandbox`. */
  readonly backend = 'sandbox';
  private readonly file: SandboxStoreFile;

  /**
   * Nothing is read or written until the first call.
   *
   * @param stateDir - `[state] dir` (absolute); the store is `<stateDir>/sandbox/console.json`
   * @param options - logger, clock
   */
  constructor(
    readonly stateDir: string,
    private readonly options: SandboxClassifierOptions = {},
  ) {
    this.file = new SandboxStoreFile(stateDir, options.logger);
  }

  /** Absolute path of the store file. */
  get path(): string {
    return this.file.path;
  }

  private timestamp(): string {
    return dbTime((this.options.now ?? Date.now)());
  }

  /**
   * Says which console this is; the store is read (and seeded) at the first call, not here.
   *
   * @returns `{ console: <description> }` for the start-up log
   */
  start(): Promise<Record<string, unknown>> {
    return Promise.resolve({ console: `sandbox (puppet-dashboard 2.0 semantics, ${this.path})` });
  }

  /**
   * Names of every node group, sorted by code point.
   * @throws {@link ClassifierError} `failed` when the store is unusable
   */
  listGroups(): Promise<string[]> {
    return this.file.read((store) => store.node_groups.map((g) => g.name).sort());
  }

  /**
   * Names of every class, sorted by code point.
   * @throws {@link ClassifierError} `failed` when the store is unusable
   */
  listClasses(): Promise<string[]> {
    return this.file.read((store) => store.node_classes.map((c) => c.name).sort());
  }

  /** Any value can be stored (commas included): always `{}`. Never throws. */
  unstorableParameters(_parameters: Readonly<Record<string, string>>): Promise<Record<string, string>> {
    return Promise.resolve({});
  }

  /**
   * Creates a node with its groups and classes (stored under the console's own spelling, in
   * the order given, duplicates once; unknown names dropped as the console does) and its
   * parameters, in one store write.
   *
   * @throws {@link NodeExistsError} `Node already exists!` when a node of that name exists
   *   (compared case-insensitively, trailing spaces ignored)
   * @throws {@link ClassifierError} `failed` for an empty name or an unusable store
   */
  async create(classification: Classification): Promise<Receipt> {
    const { name } = classification;
    if (name.trim() === '') throw new ClassifierError('failed', 'sandbox console refused the node', SANDBOX_CONSOLE_MESSAGES.blankName);
    await this.file.update((store: SandboxStore) => {
      if (findByName(store.nodes, name) !== undefined) throw new NodeExistsError(SANDBOX_CONSOLE_MESSAGES.nodeExists);
      const known = (records: ReadonlyArray<{ name: string }>, names: readonly string[]): string[] => [
        ...new Set(names.map((n) => findByName(records, n)?.name).filter((n): n is string => n !== undefined)),
      ];
      const now = this.timestamp();
      const node: StoredNode = {
        id: store.next_id.node++,
        name,
        groups: known(store.node_groups, classification.groups),
        classes: known(store.node_classes, classification.classes),
        parameters: [],
        created_at: now,
        updated_at: now,
      };
      setParameterRows(node, classification.parameters);
      store.nodes.push(node);
      return { result: undefined, changed: true };
    });
    this.options.logger?.debug({ node: name, keys: Object.keys(classification.parameters) }, 'sandbox console: node created');
    return {};
  }

  /**
   * Deletes a node (looked up case-insensitively; the receipt is not needed).
   *
   * @returns `deleted`, or `absent` when there is no node of that name
   * @throws {@link ClassifierError} `failed` when the store is unusable
   */
  async delete(name: string, _receipt: Receipt | null): Promise<'deleted' | 'absent'> {
    const outcome = await this.file.update((store) => {
      const node = findByName(store.nodes, name);
      if (node === undefined) return { result: 'absent' as const, changed: false };
      store.nodes = store.nodes.filter((n) => n !== node);
      return { result: 'deleted' as const, changed: true };
    });
    this.options.logger?.debug({ node: name, outcome }, 'sandbox console: node deleted');
    return outcome;
  }

  /**
   * Sets an existing node's parameters as 2.0's `node:variables` does (first row of a key
   * updated, its duplicates removed, new keys appended, other keys kept) — what an operator
   * does in the console; espm itself sets parameters only in {@link SandboxClassifier.create}.
   *
   * @throws {@link ClassifierError} `failed` when the node does not exist (`Node N doesn't
   *   exist!`) or the store is unusable
   */
  async setParameters(name: string, parameters: Readonly<Record<string, string>>): Promise<void> {
    await this.file.update((store) => {
      const node = findByName(store.nodes, name);
      if (node === undefined) {
        throw new ClassifierError('failed', `sandbox console: no node ${name}`, SANDBOX_CONSOLE_MESSAGES.nodeMissing(name));
      }
      setParameterRows(node, parameters);
      node.updated_at = this.timestamp();
      return { result: undefined, changed: true };
    });
    this.options.logger?.debug({ node: name, keys: Object.keys(parameters) }, 'sandbox console: parameters set');
  }

  /**
   * A node as stored (looked up case-insensitively), or undefined.
   *
   * @throws {@link ClassifierError} `failed` when the store is unusable
   */
  node(name: string): Promise<StoredNode | undefined> {
    return this.file.read((store) => structuredClone(findByName(store.nodes, name)));
  }

  /**
   * What the console's ENC answers for `name` (see {@link ExternalNode}).
   *
   * @throws {@link ClassifierError} `failed` for conflicting group parameters (see
   *   `externalNodeOf` in src/classifier/sandbox-store.ts) or an unusable store
   */
  externalNode(name: string): Promise<ExternalNode> {
    return this.file.read((store) => externalNodeOf(store, name));
  }
}
