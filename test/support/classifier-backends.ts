/**
 * Test support: every classifier backend, with its real component or double, as one list the
 * Classifier contract suite (test/classifier/contract.test.ts) and the HTTP classification
 * story (test/classifier/classification.test.ts) run over with `describe.each`.
 *
 * A new backend joins by adding ONE entry to {@link CLASSIFIER_BACKENDS}: its name, what it
 * needs (gated with `describeWith`), what values it can store, which fault knobs it has, and
 * `setup()` → a {@link ClassifierRig} (its `[classifier]` keys, a view of the backend's state
 * read behind espm's back, the knobs, `teardown()`).
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Classifier } from '../../src/classifier/classifier.js';
import { createClassifier } from '../../src/classifier/index.js';
import { SandboxClassifier, seedStore, type SandboxStore } from '../../src/classifier/sandbox.js';
import { parseConfig } from '../../src/config.js';
import { ExecaCommandRunner, type CommandRunner } from '../../src/exec/command.js';
import { CONSOLE_RAKEFILE, CONSOLE_VERSIONS, ConsoleDouble, findRake, WORKER_MODES, type WorkerMode } from './console.js';
import { ENC_COMPONENT, ENC_MISSING, encClassifierKeys, fallbackNode, LEGACY_NODE, makeEncFiles, readEncFile, removeFromEncFile, startEncMaster } from './enc-rig.js';
import { ncView, startNodeClassifier } from './node-classifier.js';

/** A node's classification as the backend holds it. */
export interface StoredClassification {
  groups: string[];
  classes: string[];
  /** Parameter name → value (of duplicate rows, the last). */
  parameters: Record<string, string>;
}

/** The backend's state, read behind espm's back (not through the adapter under test). */
export interface ClassifierView {
  /** Every node group's name, in the backend's order. */
  groups(): Promise<string[]>;
  /** Every class's name, in the backend's order. */
  classes(): Promise<string[]>;
  /** A node's classification, or undefined when the backend has no node of that name. */
  node(name: string): Promise<StoredClassification | undefined>;
  /** Deletes a node as an operator would (not through espm). */
  removeBehindEspm(name: string): Promise<void>;
  /**
   * The backend operations run since {@link ClassifierView.clearOperations} (rake: task names,
   * `-T` for a task listing); undefined for a backend with nothing to count (the sandbox).
   */
  operations?(): Promise<string[]>;
  /** Forgets the operations so far. */
  clearOperations?(): Promise<void>;
  /** Rake processes started since the last clear (one entry per process); rake only. */
  processes?(): Promise<string[]>;
}

/** One backend, set up. */
export interface ClassifierRig {
  /** `[classifier]` keys of espm.ini pointing espm at this backend. */
  config: Record<string, string | number>;
  /** The backend's state (`stateDir`: espm's `[state] dir`, where a sandbox keeps its store). */
  view(stateDir: string): ClassifierView;
  /** Fault knobs; each is present when the backend's entry lists it in `knobs`. */
  faults: {
    /** The create's second step fails after the node exists (rake: the parameters task). */
    failSecondStep?(): Promise<void>;
    /** …and rolling the node back fails too (rake: `node:del`). */
    failRollback?(): Promise<void>;
    /** The create takes `seconds` (longer than a 1 s timeout). */
    hangCreate?(seconds: number): Promise<void>;
    /** Back to normal. */
    reset(): Promise<void>;
  };
  /** Removes what `setup()` made. */
  teardown(): Promise<void>;
}

/** One entry of {@link CLASSIFIER_BACKENDS}. */
export interface ClassifierBackend {
  /** Label for `describe.each`, e.g. `dashboard-rake 1.2.10 (worker)`. */
  name: string;
  /** What it needs, for `describeWith`, e.g. `rake (Debian packages ruby rake)`. */
  component: string;
  /** Undefined when the component is here; else what is missing. */
  missing: string | undefined;
  /** Whether espm runs processes for it (the sandbox never does). */
  spawns: boolean;
  /** Which parameter values it can store. */
  stores: { parameters: boolean; commas: boolean; backslashes: boolean };
  /** Words the backend's answers carry: its "node exists" refusal, and the failing second step's fault. */
  words: { exists: string; secondStep: string };
  /** Which fault knobs its rig has (tests are declared from this). */
  knobs: { secondStep: boolean; hang: boolean };
  /** Names of nodes the backend holds that espm did not create. */
  preExisting: readonly string[];
  setup(): Promise<ClassifierRig>;
}

/** Nodes of the console double's and the sandbox's seed (a PE 2.5 console). */
export const SEED_NODES = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'] as const;

const rake = await findRake();
const RAKE_COMPONENT = 'rake (Debian packages ruby rake)';
const RAKE_MISSING = rake === undefined ? 'no rake on PATH' : undefined;

/** The console double, one version, the console worker on or off. */
function dashboardRake(version: (typeof CONSOLE_VERSIONS)[number], mode: WorkerMode): ClassifierBackend {
  const parameters = version !== '1.2.6';
  return {
    name: `dashboard-rake ${version} (${mode})`,
    component: RAKE_COMPONENT,
    missing: RAKE_MISSING,
    spawns: true,
    stores: { parameters, commas: version === '2.0', backslashes: parameters && version !== '2.0' },
    words: { exists: 'Node already exists!', secondStep: 'Mysql::Error: Deadlock' },
    knobs: { secondStep: parameters, hang: true },
    preExisting: SEED_NODES,
    async setup() {
      const console = await ConsoleDouble.create({ version });
      const task = version === '2.0' ? 'node:variables' : 'node:parameters';
      let faults: Record<string, { exit?: number; stdout?: string; sleep?: number }> = {};
      const fault = async (add: typeof faults): Promise<void> => {
        faults = { ...faults, ...add };
        await console.setKnobs({ version, faults });
      };
      return {
        config: console.classifierConfig(rake!, mode),
        view: () => ({
          groups: async () => (await console.store()).node_groups.map((g) => g.name),
          classes: async () => (await console.store()).node_classes.map((c) => c.name),
          node: async (name) => {
            const node = await console.node(name);
            return node === undefined ? undefined : { groups: node.groups, classes: node.classes, parameters: Object.fromEntries(node.parameters) };
          },
          removeBehindEspm: async (name) => {
            await execa(rake!, ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', 'node:del', `name=${name}`], { cwd: console.dir });
          },
          operations: () => console.tasksRun(),
          clearOperations: () => console.clearInvocations(),
          processes: () => console.processesRun(),
        }),
        faults: {
          failSecondStep: () => fault({ [task]: { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock' } }),
          failRollback: () => fault({ 'node:del': { exit: 1, stdout: 'Mysql::Error: Lost connection to MySQL server during query' } }),
          hangCreate: (seconds) => fault({ 'node:add': { sleep: seconds } }),
          reset: async () => {
            faults = {};
            await console.setKnobs({ version });
          },
        },
        teardown: () => console.remove(),
      };
    },
  };
}

/** The sandbox console: a JSON store in espm's state directory; no component needed. */
const sandbox: ClassifierBackend = {
  name: 'sandbox',
  component: 'nothing',
  missing: undefined,
  spawns: false,
  stores: { parameters: true, commas: true, backslashes: true },
  words: { exists: 'Node already exists!', secondStep: '' },
  knobs: { secondStep: false, hang: false },
  preExisting: SEED_NODES,
  setup() {
    return Promise.resolve({
      config: { backend: 'sandbox' },
      view: (stateDir: string) => {
        const store = new SandboxClassifier(stateDir);
        const file = async (): Promise<SandboxStore> =>
          readFile(store.path, 'utf8').then((text) => JSON.parse(text) as SandboxStore, () => seedStore());
        return {
          groups: async () => (await file()).node_groups.map((g) => g.name),
          classes: async () => (await file()).node_classes.map((c) => c.name),
          node: async (name: string) => {
            const node = await store.node(name);
            return node === undefined ? undefined : { groups: node.groups, classes: node.classes, parameters: Object.fromEntries(node.parameters) };
          },
          removeBehindEspm: async (name: string) => {
            await store.delete(name, null);
          },
        };
      },
      faults: { reset: () => Promise.resolve() },
      teardown: () => Promise.resolve(),
    });
  },
};

/**
 * PE's Node Classifier (API v1): the double of test/fixtures/node-classifier/ over mutual TLS;
 * the "second step" is a pin, the rollback's failing step the per-node group's DELETE.
 */
const peNodeClassifier: ClassifierBackend = {
  name: 'pe-node-classifier',
  component: 'nothing (the Node Classifier double runs in-process)',
  missing: undefined,
  spawns: false,
  stores: { parameters: true, commas: true, backslashes: true },
  words: { exists: 'already exists in the Node Classifier', secondStep: 'application-error: the database connection was lost (test fault)' },
  knobs: { secondStep: true, hang: true },
  preExisting: SEED_NODES,
  async setup() {
    const { nc, config, teardown } = await startNodeClassifier();
    return {
      config,
      view: () => ncView(nc),
      faults: {
        failSecondStep: () => {
          nc.faults.push({ method: 'POST', path: /^\/v1\/groups\/[^/]+\/pin$/, action: 'error', status: 500, kind: 'application-error', msg: 'the database connection was lost (test fault)' });
          return Promise.resolve();
        },
        failRollback: () => {
          nc.faults.push({ method: 'DELETE', path: /^\/v1\/groups\/[^/]+$/, action: 'error', status: 500, kind: 'application-error', msg: 'the database connection was lost again (test fault)' });
          return Promise.resolve();
        },
        hangCreate: (seconds) => {
          nc.faults.push({ method: 'POST', path: /^\/v1\/groups$/, action: 'delay', ms: seconds * 1000 });
          return Promise.resolve();
        },
        reset: () => {
          nc.faults = [];
          return Promise.resolve();
        },
      },
      teardown,
    };
  },
};

/**
 * enc: a real puppetserver (classes from environment_classes), a groups file, the site's
 * previous ENC as fallback (test/support/enc-rig.ts); the state is the classification file.
 */
const enc: ClassifierBackend = {
  name: 'enc (real puppetserver)',
  component: ENC_COMPONENT,
  missing: ENC_MISSING,
  spawns: true,
  stores: { parameters: true, commas: true, backslashes: true },
  words: { exists: 'Node already exists!', secondStep: '' },
  knobs: { secondStep: false, hang: false },
  preExisting: [LEGACY_NODE],
  async setup() {
    const [files, master] = await Promise.all([makeEncFiles(), startEncMaster()]);
    const classesOf = async (): Promise<string[]> => {
      const { stdout } = await execa('curl', ['-sf', '--cacert', join(master.ssldir, 'certs', 'ca.pem'), '--cert', join(master.ssldir, 'certs', 'localhost.pem'), '--key', join(master.ssldir, 'private_keys', 'localhost.pem'), `https://localhost:${master.port}/puppet/v3/environment_classes?environment=production`]);
      return (JSON.parse(stdout) as { files: { classes: { name: string }[] }[] }).files.flatMap((f) => f.classes.map((c) => c.name));
    };
    return {
      config: encClassifierKeys(master, files),
      view: () => ({
        groups: async () => Object.keys((await import('yaml')).parse(await readFile(files.groupsFile, 'utf8')) as object),
        classes: classesOf,
        node: async (name) => {
          const node = (await readEncFile(files))?.nodes[name];
          return node === undefined ? fallbackNode(files, name) : { groups: node.groups, classes: node.classes, parameters: node.parameters };
        },
        removeBehindEspm: (name) => removeFromEncFile(files, name),
      }),
      faults: { reset: () => Promise.resolve() },
      teardown: async () => {
        await master.stop();
        await files.remove();
      },
    };
  },
};

/** Every classifier backend espm has, with its double or real component. */
export const CLASSIFIER_BACKENDS: readonly ClassifierBackend[] = [
  ...WORKER_MODES.flatMap((mode) => CONSOLE_VERSIONS.map((version) => dashboardRake(version, mode))),
  sandbox,
  peNodeClassifier,
  enc,
];

/**
 * The adapter espm would build for a rig: its `[classifier]` keys through the real config
 * parser and factory (src/classifier/index.ts).
 *
 * @param rig - the backend, set up
 * @param stateDir - `[state] dir`
 * @param changes - extra `[classifier]` keys (e.g. `{ timeout: 1 }`)
 * @param runner - runs its commands; default the real runner
 */
export function adapterFor(rig: ClassifierRig, stateDir: string, changes: Record<string, string | number> = {}, runner: CommandRunner = new ExecaCommandRunner()): Classifier {
  const config = parseConfig(
    { server: { cert: '/c.pem', key: '/k.pem', psk: 'x'.repeat(48) }, state: { dir: stateDir }, classifier: { ...rig.config, ...changes } },
    join(stateDir, 'espm.ini'),
  );
  return createClassifier(config.classifier, runner, config.state.dir);
}
