/**
 * The `enc` classifier (`[classifier] backend = enc`): on open-source Puppet / OpenVox 6–8,
 * espm is puppetserver's exec ENC for the nodes it created (docs/design.md "`enc`").
 *
 * - groups: the top-level keys of `[classifier] groups_file` (src/classifier/enc-groups.ts),
 *   read at {@link EncClassifier.start} and on SIGHUP ({@link EncClassifier.reload}); a broken
 *   file is refused with a clear error and the previous groups are kept;
 * - classes: `GET /puppet/v3/environment_classes?environment=<env>` on the master, through the
 *   one Puppet HTTPS client with the master's identity (espm_setup prints the auth.conf rule);
 * - create / delete: this adapter's console is the classification file
 *   (src/classifier/enc-file.ts) it owns and rewrites atomically — the nodes as created and
 *   each one's rendered ENC answer — read by `espm enc` (src/cli/enc.ts). A create refuses a
 *   name the file holds, and a name the site's previous ENC (`fallback_enc`) classifies (it is
 *   an existing node espm must not take over). The receipt is `{}`.
 *
 * The file holds no secret and is made readable by the group of its directory (puppetserver's
 * user runs `espm enc`). It never decides ownership: the ledger is the node service's.
 *
 * @packageDocumentation
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Mutex } from 'async-mutex';
import writeFileAtomic from 'write-file-atomic';
import { parse as parseYaml } from 'yaml';
import { BackendError, onceUntilFailure, runBackendCommand } from '../backend.js';
import type { ClassifierConfig } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import { PuppetHttpClient } from '../puppet-http/client.js';
import { readTlsIdentity, resolvePuppetIdentity } from '../puppet-http/identity.js';
import { ClassifierError, NodeExistsError, type Classification, type Classifier, type Receipt } from './classifier.js';
import { checkEncFile, ENC_FILE_FORMAT, type EncFile } from './enc-file.js';
import { writeOwnedNames, type OwnedFallback } from './enc-owned.js';
import { GroupsFileError, readGroups, renderAnswer, renderNode, type EncGroups } from './enc-groups.js';

/** The service's name in errors of the `environment_classes` client. */
export const ENVIRONMENT_CLASSES_SERVICE = 'Puppet Server environment_classes';
/** Environment classes are listed from when `[classifier] environment` is unset. */
export const DEFAULT_CLASSES_ENVIRONMENT = 'production';
/** A large control repository lists many classes. */
const CLASSES_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** Mode of the classification file: the owner writes, the directory's group (puppetserver's) reads. */
export const CLASSIFICATION_FILE_MODE = 0o640;

/** The `environment_classes` answer, as far as espm reads it. */
interface EnvironmentClasses {
  files?: { classes?: { name?: unknown }[] }[];
}

/** `[classifier] backend = enc`. */
export class EncClassifier implements Classifier {
  readonly backend = 'enc';
  private groups: EncGroups | undefined;
  /** One writer of the classification file at a time. */
  private readonly lock = new Mutex();
  private readonly client: () => Promise<PuppetHttpClient>;
  private http: PuppetHttpClient | undefined;
  /** `[classifier] fallback_enc` and `timeout` in force: from the config, replaced on SIGHUP. */
  private fallback: OwnedFallback;

  constructor(
    private readonly config: ClassifierConfig<'enc'>,
    private readonly runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.fallback = { argv: [...config.fallbackEnc], timeoutMs: config.timeoutMs };
    this.client = onceUntilFailure(async () => {
      const identity = await resolvePuppetIdentity({
        service: ENVIRONMENT_CLASSES_SERVICE,
        puppet: config.puppet,
        config: config.puppetConf,
        timeoutMs: config.timeoutMs,
        runner,
        hostPortSettings: ['server', 'masterport'],
        overrides: {
          ...(config.apiUrl === undefined ? {} : { url: config.apiUrl }),
          ...(config.apiCert === undefined ? {} : { cert: config.apiCert }),
          ...(config.apiKey === undefined ? {} : { key: config.apiKey }),
          ...(config.apiCa === undefined ? {} : { ca: config.apiCa }),
        },
      });
      const tls = await readTlsIdentity(identity, ENVIRONMENT_CLASSES_SERVICE);
      this.http = new PuppetHttpClient({
        baseUrl: identity.url,
        service: ENVIRONMENT_CLASSES_SERVICE,
        tls,
        timeoutMs: config.timeoutMs,
        maxResponseBytes: CLASSES_MAX_RESPONSE_BYTES,
      });
      return this.http;
    });
  }

  /** Absolute path of the classification file. */
  get path(): string {
    return this.config.classificationFile;
  }

  /**
   * Reads the groups file and (re)writes the classification file (nodes re-rendered with the
   * current groups and fallback).
   *
   * @throws {@link ClassifierError} `failed` naming the groups file's problem (the previous
   *   classification file is left as it was)
   */
  async start(): Promise<Record<string, unknown>> {
    await this.loadGroups();
    const nodes = await this.lock.runExclusive(async () => {
      const file = await this.readFile();
      await this.writeFile(file.nodes);
      return Object.keys(file.nodes).length;
    });
    return {
      console: `enc: groups from ${this.config.groupsFile} (${this.groups!.size}), ENC answers in ${this.path} (${nodes} nodes)`,
    };
  }

  /**
   * SIGHUP: takes `[classifier] fallback_enc` and `timeout` from the reloaded config (the
   * other keys need a restart), re-reads the groups file and rewrites the classification file
   * and the `owned` generation (with its `.fallback` and `.timeout`), so that `espm enc`,
   * bin/espm-enc and the create check all use the new fallback. A broken groups file, or one
   * that drops a group a node of espm's is in, is refused: the previous groups and
   * classification file are kept (the new fallback applies at the next successful write).
   *
   * @param next - the reloaded `[classifier]` section; undefined or another backend = keep the fallback
   * @throws {@link ClassifierError} `failed`
   */
  async reload(next?: ClassifierConfig): Promise<Record<string, unknown>> {
    if (next?.backend === 'enc') this.fallback = { argv: [...next.fallbackEnc], timeoutMs: next.timeoutMs };
    return this.start();
  }

  async listGroups(): Promise<string[]> {
    if (this.groups === undefined) await this.loadGroups();
    return [...this.groups!.keys()].sort();
  }

  async listClasses(): Promise<string[]> {
    const environment = this.config.environment ?? DEFAULT_CLASSES_ENVIRONMENT;
    const client = await this.client().catch((err: unknown) => {
      throw this.wrap(err);
    });
    const answer = await client.request('GET', `/puppet/v3/environment_classes?environment=${encodeURIComponent(environment)}`).catch((err: unknown) => {
      throw this.wrap(err);
    });
    if (answer.status === 403) {
      throw new ClassifierError(
        'failed',
        `${ENVIRONMENT_CLASSES_SERVICE}: 403 forbidden: add the auth.conf rule espm_setup printed (allow espm's certname GET /puppet/v3/environment_classes) and reload puppetserver`,
        answer.body,
      );
    }
    if (answer.status !== 200) {
      throw new ClassifierError('failed', `${ENVIRONMENT_CLASSES_SERVICE}: HTTP ${answer.status} for environment ${environment}`, answer.body);
    }
    let body: EnvironmentClasses;
    try {
      body = JSON.parse(answer.body) as EnvironmentClasses;
    } catch {
      throw new ClassifierError('failed', `${ENVIRONMENT_CLASSES_SERVICE}: the answer is not JSON`, answer.body.slice(0, 2000));
    }
    const names = new Set<string>();
    for (const file of body.files ?? []) for (const c of file.classes ?? []) if (typeof c.name === 'string') names.add(c.name);
    return [...names].sort();
  }

  /** Every validated value can be stored (YAML carries anything). */
  unstorableParameters(): Promise<Record<string, string>> {
    return Promise.resolve({});
  }

  async create(classification: Classification): Promise<Receipt> {
    if (this.groups === undefined) await this.loadGroups();
    const name = classification.name;
    return this.lock.runExclusive(async () => {
      const file = await this.readFile();
      if (Object.hasOwn(file.nodes, name)) throw new NodeExistsError(`Node already exists! (espm's ENC classifies ${name})`);
      await this.refuseFallbackNode(name);
      const nodes = { ...file.nodes, [name]: { groups: [...classification.groups], classes: [...classification.classes], parameters: { ...classification.parameters }, yaml: '' } };
      await this.writeFile(nodes);
      this.logger?.debug({ node: name }, 'enc: node added to the classification file');
      return {};
    });
  }

  /** The file finds the node by name: the receipt (`{}`) is not needed. */
  async delete(name: string, _receipt?: Receipt | null): Promise<'deleted' | 'absent'> {
    return this.lock.runExclusive(async () => {
      const file = await this.readFile();
      if (!Object.hasOwn(file.nodes, name)) return 'absent';
      const nodes = { ...file.nodes };
      delete nodes[name];
      await this.writeFile(nodes, true);
      this.logger?.debug({ node: name }, 'enc: node removed from the classification file');
      return 'deleted';
    });
  }

  async close(): Promise<void> {
    await this.http?.close();
  }

  /** Loads the groups file; on failure the previous groups stay. */
  private async loadGroups(): Promise<void> {
    try {
      const groups = await readGroups(this.config.groupsFile);
      // Every node espm created must still render: a file dropping one of their groups is refused.
      const file = await this.readFile();
      for (const [name, node] of Object.entries(file.nodes)) renderNode({ name, ...node }, groups, this.config.environment);
      this.groups = groups;
    } catch (err) {
      if (err instanceof GroupsFileError) {
        throw new ClassifierError('failed', `${err.message}${this.groups === undefined ? '' : ' (the previous groups are kept)'}`);
      }
      throw err;
    }
  }

  /**
   * A name the site's previous ENC classifies is an existing node: espm must not take it over.
   * Exit 0 with an empty answer (or `classes: {}`) = not classified there.
   */
  private async refuseFallbackNode(name: string): Promise<void> {
    const [command, ...args] = this.fallback.argv;
    if (command === undefined) return;
    const what = `the fallback ENC ${command}`;
    const result = await runBackendCommand(this.runner, { file: command, args: [...args, name], timeoutMs: this.fallback.timeoutMs }, what, (failure, message, output) => new ClassifierError(failure, message, output));
    if (result.exitCode !== 0) {
      throw new ClassifierError('failed', `${what} exited ${result.exitCode} for ${name}: cannot tell whether it classifies that node`, `${result.stdout}\n${result.stderr}`.trim());
    }
    let answer: unknown;
    try {
      answer = parseYaml(result.stdout);
    } catch (err) {
      throw new ClassifierError('failed', `${what} printed no valid YAML for ${name}: ${(err as Error).message}`, result.stdout);
    }
    const a = (answer ?? {}) as { classes?: unknown; parameters?: unknown; environment?: unknown };
    const nonEmpty = (v: unknown): boolean => (Array.isArray(v) ? v.length > 0 : v !== null && typeof v === 'object' ? Object.keys(v).length > 0 : v !== undefined && v !== null);
    if (nonEmpty(a.classes) || nonEmpty(a.parameters) || nonEmpty(a.environment)) {
      throw new NodeExistsError(`Node already exists! (${what} classifies ${name})`);
    }
  }

  /** The classification file, or an empty one when there is none yet. */
  private async readFile(): Promise<EncFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.emptyFile();
      throw new ClassifierError('unavailable', `cannot read the classification file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      return checkEncFile(JSON.parse(text), this.path);
    } catch (err) {
      throw new ClassifierError('failed', `${(err as Error).message}; move it away to start afresh (espm's ledger still knows its nodes)`);
    }
  }

  private emptyFile(): EncFile {
    return { format: ENC_FILE_FORMAT, written_at: new Date().toISOString(), fallback: [...this.fallback.argv], fallback_timeout_ms: this.fallback.timeoutMs, unowned: renderAnswer({ classes: {} }), nodes: {} };
  }

  /**
   * Renders every node with the current groups and writes the file atomically (fsync, then
   * rename), and the `owned` names bin/espm-enc looks up (src/classifier/enc-owned.ts). A name
   * in `owned` that the file lacks is harmless (`espm enc` then runs the fallback itself), a
   * name the file has but `owned` lacks is not: so the names go first when they grow (create,
   * start-up) and after the file when they shrink (delete).
   */
  private async writeFile(nodes: EncFile['nodes'], shrinking = false): Promise<void> {
    const groups = this.groups!;
    const file = this.emptyFile();
    try {
      for (const [name, node] of Object.entries(nodes)) {
        const { groups: g, classes, parameters } = node;
        file.nodes[name] = { groups: g, classes, parameters, yaml: renderNode({ name, groups: g, classes, parameters }, groups, this.config.environment) };
      }
    } catch (err) {
      throw new ClassifierError('failed', (err as Error).message);
    }
    const dir = dirname(this.path);
    try {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      // The directory's group (puppetserver's, as espm_setup makes it) reads the file.
      const gid = (await stat(dir)).gid;
      const root = process.getuid?.() === 0;
      const owned = () => writeOwnedNames(this.path, Object.keys(file.nodes), root ? gid : undefined, this.fallback);
      if (!shrinking) await owned();
      await writeFileAtomic(this.path, `${JSON.stringify(file, null, 1)}\n`, { mode: CLASSIFICATION_FILE_MODE, fsync: true, ...(root ? { chown: { uid: 0, gid } } : {}) });
      if (shrinking) await owned();
    } catch (err) {
      throw new ClassifierError('unavailable', `cannot write the classification file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  private wrap(err: unknown): Error {
    if (err instanceof ClassifierError) return err;
    if (err instanceof BackendError) return new ClassifierError(err.failure, err.message, err.output);
    return err as Error;
  }
}
