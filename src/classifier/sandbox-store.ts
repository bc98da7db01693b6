/**
 * The sandbox console's store (`<state_dir>/sandbox/console.json`): its format (the console
 * double's, test/fixtures/console/README.md, so the two can be compared and the same tools read
 * both), the PE 2.5 seed, the console's name collation, the file's atomic reads and writes, and
 * what the console's ENC (`external_node`) answers for a node. The adapter is
 * src/classifier/sandbox.ts. Source of truth: docs/reference/dashboard-rake.md.
 *
 * @packageDocumentation
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import { KeyedMutex } from '../keyed-mutex.js';
import type { Logger } from '../logger.js';
import { ClassifierError } from './classifier.js';

/** Directory of the sandbox backends' state inside `[state] dir`. */
export const SANDBOX_DIR = 'sandbox';
/** Name of the sandbox console's store inside {@link SANDBOX_DIR}. */
export const SANDBOX_CONSOLE_FILE = 'console.json';

/** The console's messages the sandbox answers with (puppet-dashboard 2.0 `lib/tasks/node.rake`). */
export const SANDBOX_CONSOLE_MESSAGES = {
  /** `addNode` on an existing name. */
  nodeExists: 'Node already exists!',
  /** A node operation on an unknown name. */
  nodeMissing: (name: string) => `Node ${name} doesn't exist!`,
  /** `addNode` with an empty name. */
  blankName: "There was a problem saving the node: Validation failed: Name can't be blank",
} as const;

/** A `[key, value]` parameter row, in the order the console stores them. */
export type ParameterRow = [key: string, value: string];

/** A class of the store. */
export interface StoredClass {
  /** Record id, unique per kind, never reused (`next_id`). */
  id: number;
  /** The name as the console spells it. */
  name: string;
  /** UTC, `YYYY-MM-DD HH:MM:SS` (Rails' `to_s(:db)`). */
  created_at: string;
  /** Same format as `created_at`. */
  updated_at: string;
}

/** A node group of the store: its classes (by name) and parameters. */
export interface StoredGroup extends StoredClass {
  /** Names of the group's classes. */
  classes: string[];
  /** The group's parameters, `[key, value]` rows. */
  parameters: ParameterRow[];
}

/** A node of the store: its groups and classes (by name) and its own parameters. */
export interface StoredNode extends StoredClass {
  /** Names of the node's groups. */
  groups: string[];
  /** Names of the node's own classes. */
  classes: string[];
  /** The node's own parameters, `[key, value]` rows (duplicate keys possible in the seed). */
  parameters: ParameterRow[];
}

/**
 * The sandbox console's store, `<state_dir>/sandbox/console.json`: the console double's
 * format (test/fixtures/console/README.md), so the two can be compared and the same tools
 * read both.
 */
export interface SandboxStore {
  /** Format version of the store. */
  schema: 1;
  /** Next id per record kind. */
  next_id: { node_class: number; node_group: number; node: number };
  /** Classes, in creation order. */
  node_classes: StoredClass[];
  /** Node groups, in creation order. */
  node_groups: StoredGroup[];
  /** Nodes, in creation order. */
  nodes: StoredNode[];
}

/**
 * What the console's ENC (`external_node`) answers for a node: its groups' classes (in group
 * order) then its own, without duplicates; its groups' parameters overridden by its own (of
 * duplicate rows, the last wins). An unknown node is `{ classes: [] }`.
 */
export interface ExternalNode {
  /** The node's name as stored; absent for an unknown node. */
  name?: string;
  /** Class names, as the ENC lists them. */
  classes: string[];
  /** Top-scope variables; absent for an unknown node. */
  parameters?: Record<string, string>;
}

/** The seed: a PE 2.5 console, the same data as the console double's `Seed`. */
export const SANDBOX_SEED = {
  /** When the seed's records were created (Rails' `to_s(:db)`, UTC). */
  created: '2012-06-01 09:30:00',
  classes: ['pe_accounts', 'pe_mcollective', 'motd', 'ntp', 'apache', 'apache::vhost', 'pe_compliance'],
  /** name, classes, parameter rows. */
  groups: [
    ['default', ['motd'], [['motd_message', 'This node is managed by Puppet Enterprise']]],
    ['no mcollective', [], []],
    [
      'mcollective',
      ['pe_accounts', 'pe_mcollective'],
      [
        ['fact_stomp_server', 'master.example.com'],
        ['fact_stomp_port', '61613'],
        ['stomp_password', 'p1xXBGQuFjGyu'],
      ],
    ],
    ['puppet_master', ['pe_compliance'], []],
    ['puppet_console', [], []],
    ['webservers', ['apache'], [['http_port', '80']]],
    [
      'legacy_web',
      ['apache', 'apache::vhost'],
      [
        ['http_port', '8080'],
        ['vhost_docroot', '/srv/www'],
      ],
    ],
  ] as ReadonlyArray<readonly [string, readonly string[], readonly ParameterRow[]]>,
  /** Nodes espm did not create: name, groups, classes, parameter rows. */
  nodes: [
    ['master.example.com', ['default', 'mcollective', 'puppet_master', 'puppet_console'], [], []],
    ['db01.example.com', ['default', 'mcollective'], ['ntp'], [['ntp_server', '0.pool.ntp.org']]],
    // Overrides http_port (webservers and legacy_web disagree) and carries a duplicate row
    // left by puppet-dashboard bug #13867 before 1.2.23.
    [
      'web-legacy.example.com',
      ['default', 'webservers', 'legacy_web'],
      ['apache::vhost'],
      [
        ['http_port', '8081'],
        ['motd_message', 'legacy box'],
        ['motd_message', 'legacy web server'],
      ],
    ],
  ] as ReadonlyArray<readonly [string, readonly string[], readonly string[], readonly ParameterRow[]]>,
} as const;

/**
 * A fresh store holding {@link SANDBOX_SEED}.
 *
 * @returns a new object (callers may change it)
 */
export function seedStore(): SandboxStore {
  const at = SANDBOX_SEED.created;
  const row = (r: readonly string[]): ParameterRow => [r[0]!, r[1]!];
  return {
    schema: 1,
    next_id: {
      node_class: SANDBOX_SEED.classes.length + 1,
      node_group: SANDBOX_SEED.groups.length + 1,
      node: SANDBOX_SEED.nodes.length + 1,
    },
    node_classes: SANDBOX_SEED.classes.map((name, i) => ({ id: i + 1, name, created_at: at, updated_at: at })),
    node_groups: SANDBOX_SEED.groups.map(([name, classes, parameters], i) => ({
      id: i + 1,
      name,
      classes: [...classes],
      parameters: parameters.map(row),
      created_at: at,
      updated_at: at,
    })),
    nodes: SANDBOX_SEED.nodes.map(([name, groups, classes, parameters], i) => ({
      id: i + 1,
      name,
      groups: [...groups],
      classes: [...classes],
      parameters: parameters.map(row),
      created_at: at,
      updated_at: at,
    })),
  };
}

const rowSchema = z.tuple([z.string(), z.string()]);
const recordShape = { id: z.number().int(), name: z.string(), created_at: z.string(), updated_at: z.string() };
const storeSchema = z.object({
  schema: z.literal(1),
  next_id: z.object({ node_class: z.number().int(), node_group: z.number().int(), node: z.number().int() }),
  node_classes: z.array(z.object(recordShape)),
  node_groups: z.array(z.object({ ...recordShape, classes: z.array(z.string()), parameters: z.array(rowSchema) })),
  nodes: z.array(z.object({ ...recordShape, groups: z.array(z.string()), classes: z.array(z.string()), parameters: z.array(rowSchema) })),
});

/** The console's look-up key (MySQL's default collation): case-insensitive, trailing spaces ignored. */
export function collationKey(name: string): string {
  return name.replace(/ +$/, '').toLowerCase();
}

/** Rails' `to_s(:db)` form of a time, UTC: `YYYY-MM-DD HH:MM:SS`. */
export function dbTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/** The record of that name under the console's collation ({@link collationKey}), or undefined. */
export function findByName<T extends { name: string }>(records: readonly T[], name: string): T | undefined {
  const key = collationKey(name);
  return records.find((r) => collationKey(r.name) === key);
}

/** Rows → map; a later row with the same key wins (the console's `HasParameters#to_hash`). */
export function rowsToMap(rows: readonly ParameterRow[]): Map<string, string> {
  return new Map(rows);
}

/** One mutex per store file, shared by every instance in this process. */
const storeLocks = new KeyedMutex();

/**
 * The store file: every operation reads it afresh (several instances on one state directory,
 * and a person editing the file between calls, agree); operations of one process on one file
 * run one at a time; changes are written atomically (write-file-atomic: temp file, fsync, rename).
 */
export class SandboxStoreFile {
  /**
   * @param stateDir - `[state] dir` (absolute)
   * @param logger - the seeding is logged at info level
   */
  constructor(
    readonly stateDir: string,
    private readonly logger?: Logger,
  ) {}

  /** Absolute path of the store file. */
  get path(): string {
    return join(this.stateDir, SANDBOX_DIR, SANDBOX_CONSOLE_FILE);
  }

  /**
   * Runs `task` on the store with its lock held; saves it afterwards when it says it changed it.
   *
   * @throws {@link ClassifierError} `failed` when the file cannot be read, is not a store, or
   *   cannot be written; whatever `task` throws (nothing is saved then)
   */
  update<T>(task: (store: SandboxStore) => { result: T; changed: boolean }): Promise<T> {
    return storeLocks.run(this.path, async () => {
      const store = await this.load();
      const { result, changed } = task(store);
      if (changed) await this.save(store);
      return result;
    });
  }

  /**
   * Runs `task` on the store with its lock held, saving nothing.
   *
   * @throws as {@link SandboxStoreFile.update}
   */
  read<T>(task: (store: SandboxStore) => T): Promise<T> {
    return this.update((store) => ({ result: task(store), changed: false }));
  }
  /**
   * Reads the store, writing the seed first when the file does not exist yet.
   * Call with the store's lock held.
   *
   * @throws {@link ClassifierError} `failed` when the file cannot be read or is not a store
   */
  private async load(): Promise<SandboxStore> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ClassifierError('failed', `cannot read the sandbox console ${this.path}: ${(err as Error).message}`);
      }
      const seeded = seedStore();
      await this.save(seeded);
      this.logger?.info({ path: this.path }, 'sandbox console created from the PE 2.5 seed');
      return seeded;
    }
    try {
      return storeSchema.parse(JSON.parse(text)) as SandboxStore;
    } catch (err) {
      throw new ClassifierError(
        'failed',
        `${this.path} is not a sandbox console store (${(err as Error).message.split('\n')[0]}); remove it to start again from the seed`,
      );
    }
  }

  /** Writes the store atomically (temp file, fsync, rename), creating the directory (0700). */
  private async save(store: SandboxStore): Promise<void> {
    try {
      await mkdir(join(this.stateDir, SANDBOX_DIR), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, `${JSON.stringify(store, null, 2)}\n`, { mode: 0o600, fsync: true });
    } catch (err) {
      throw new ClassifierError('failed', `cannot write the sandbox console ${this.path}: ${(err as Error).message}`);
    }
  }
}

/**
 * What the console's ENC answers for `name` (see {@link ExternalNode}).
 *
 * @param store - the store
 * @param name - the node (looked up under the console's collation)
 * @throws {@link ClassifierError} `failed` when two of the node's groups set different values
 *   for a key the node does not set itself (the console answers HTTP 500: `Node "N" has
 *   conflicting parameter(s): key`)
 */
export function externalNodeOf(store: SandboxStore, name: string): ExternalNode {
  const node = findByName(store.nodes, name);
  if (node === undefined) return { classes: [] };
  const groups = node.groups.map((g) => findByName(store.node_groups, g)).filter((g): g is StoredGroup => g !== undefined);
  const classes = [...new Set([...groups.flatMap((g) => g.classes), ...node.classes])];
  // Maps, not objects: a parameter may be called `constructor` or `__proto__`.
  const inherited = new Map<string, string>();
  const conflicts: string[] = [];
  for (const group of groups) {
    for (const [key, value] of rowsToMap(group.parameters)) {
      if (inherited.has(key) && inherited.get(key) !== value) {
        if (!conflicts.includes(key)) conflicts.push(key);
      } else {
        inherited.set(key, value);
      }
    }
  }
  const own = rowsToMap(node.parameters);
  const unresolved = conflicts.filter((key) => !own.has(key));
  if (unresolved.length > 0) {
    throw new ClassifierError(
      'failed',
      `sandbox console: cannot compile node ${node.name}`,
      `Node "${node.name}" has conflicting parameter(s): ${unresolved.join(', ')}`,
    );
  }
  return { name: node.name, classes, parameters: Object.fromEntries([...inherited, ...own]) };
}
