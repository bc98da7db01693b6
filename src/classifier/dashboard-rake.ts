/**
 * Classifier adapter for the Puppet Enterprise 2.x/3.x console (puppet-dashboard 1.2.x, 2.0)
 * through its rake tasks (`[classifier] backend = dashboard-rake`).
 *
 * Source of truth for every invocation, message and exit code: docs/reference/dashboard-rake.md
 * (puppet-dashboard 1.2.6–1.2.23 and 2.0 `lib/tasks/node.rake`, `lib/tasks/classesgroups.rake`):
 * - `rake -s -f <Rakefile> RAILS_ENV=<env> <task> key=value …`, each pair its own argv
 *   element; the tasks read `ENV`, so the child's environment carries nothing else
 *   (src/exec rebuilds it from an allow-list);
 * - rake 0.8.7 prints `(in <cwd>)` first unless `-s`: such lines are dropped anyway;
 * - 1.2.x prints every message, errors included, on stdout; 1.2.23/2.0 move them to stderr:
 *   both streams are read;
 * - success and failure are judged by exit status AND the documented message.
 *
 * A create is one `node:add` carrying groups and classes, then — only when there are
 * parameters — one `node:parameters` (1.2.7+) or `node:variables` (2.0) task; when that second
 * task fails the node is deleted again (`node:del`) before the create fails. The console finds
 * a node by name: the receipt is `{}`.
 *
 * With `[classifier] worker = on` (the default) every task but `-T` runs in the warm console
 * worker ({@link ConsoleWorkerManager}: the Rails boot is paid once, not per call), which
 * answers byte for byte what a rake process would; otherwise, and whenever no worker is
 * usable, each call runs its own rake process.
 *
 * @packageDocumentation
 */
import { Semaphore } from 'async-mutex';
import { BackendError, onceUntilFailure, outcomeUnknown, runBackendCommand } from '../backend.js';
import type { CommandRunner } from '../exec/command.js';
import { ExecaWorkerSpawner, type WorkerSpawner } from '../exec/worker.js';
import type { Logger } from '../logger.js';
import { ConsoleWorkerManager, SELF_CHECK_TASK, type ConsoleTaskRunner, type ConsoleWorkerStatus } from './console-worker-manager.js';
import { ConsoleWorkerPool } from './console-worker-pool.js';
import { ClassifierError, NodeExistsError, type Classification, type Classifier, type Receipt } from './classifier.js';
import {
  CONSOLE_MESSAGES,
  consoleOutput,
  dropInDirectoryLines,
  encodeParameters,
  parameterDialect,
  parseNameList,
  parseTaskList,
  READ_ONLY_TASKS,
  type ParameterDialect,
  type RakeOutput,
} from './dashboard-rake-tasks.js';

/** The `[classifier]` keys this adapter reads (times in ms). */
export interface DashboardRakeSettings {
  /** Absolute path of rake. */
  rake: string;
  /** Absolute path of the console's Rakefile. */
  rakefile: string;
  /** `RAILS_ENV`. */
  railsEnv: string;
  /** The console's directory (cwd of every task). */
  cwd: string;
  /** Deadline of one task, ms. */
  timeoutMs: number;
  /** Whether the warm console worker is used. */
  worker: boolean;
  /** Console tasks run at once: warm workers (worker on), or rake processes (worker off). */
  workers: number;
  /** Absolute path of the console's Ruby (for the worker). */
  ruby: string;
  /** Tasks one worker runs before it is replaced. */
  workerMaxTasks: number;
  /** Age at which a worker is replaced, ms. */
  workerMaxAgeMs: number;
  /** Idle time after which the worker's database connection is refreshed, ms. */
  workerIdleRefreshMs: number;
}

/** Collaborators of {@link DashboardRakeClassifier} besides settings and command runner. */
export interface DashboardRakeOptions {
  /** Task names and outcomes are logged at debug level (never argument values). */
  logger?: Logger;
  /**
   * `[state] dir`: the console worker's Ruby program is written there. Without it the
   * worker is not used (every call runs a process).
   */
  stateDir?: string;
  /** Starts console worker processes (src/exec); default the real one. */
  spawner?: WorkerSpawner;
  /** Clock of the worker manager, ms; default `Date.now`. */
  now?: () => number;
}

/** The task set a console has, from `rake -T`. */
export interface ConsoleTasks {
  /** Every task name listed by `rake -s -f <Rakefile> -T`. */
  names: ReadonlySet<string>;
  /** How this console version takes parameters (the comma rules). */
  parameters: ParameterDialect;
}

/** The dashboard-rake adapter. One instance per daemon: it detects the task set once. */
export class DashboardRakeClassifier implements Classifier {
  readonly backend = 'dashboard-rake';
  private readonly logger: Logger | undefined;
  /** The warm console workers; undefined when `[classifier] worker = off` (or no state dir). */
  private readonly pool: ConsoleWorkerPool | undefined;
  /** Caps the rake processes running at once at `[classifier] workers`. */
  private readonly processes: Semaphore;
  /** Told of lists learned without being asked (the self-check's `nodegroup:list`). */
  private readonly listListeners: Array<(list: 'groups' | 'classes', names: string[]) => void> = [];
  /** The warm-up under way, if any (a group list asked meanwhile waits for its self-check). */
  private warming: Promise<unknown> | undefined;
  /** The self-check's group list (served only to callers that waited on the warm-up). */
  private learnedGroups: string[] | undefined;

  /**
   * @param config - `[classifier]`: rake, rakefile, railsEnv, cwd, timeoutMs, worker, ruby, worker*
   * @param runner - runs rake processes (src/exec)
   * @param options - logger, state directory (for the worker), worker spawner, clock
   */
  constructor(
    private readonly config: DashboardRakeSettings,
    private readonly runner: CommandRunner,
    options: DashboardRakeOptions = {},
  ) {
    this.logger = options.logger;
    this.processes = new Semaphore(config.workers);
    if (config.worker && options.stateDir !== undefined) {
      const manager = (index: number) =>
        new ConsoleWorkerManager({
          settings: {
            ruby: config.ruby,
            rakefile: config.rakefile,
            railsEnv: config.railsEnv,
            cwd: config.cwd,
            timeoutMs: config.timeoutMs,
            maxTasks: config.workerMaxTasks,
            maxAgeMs: config.workerMaxAgeMs,
            idleRefreshMs: config.workerIdleRefreshMs,
          },
          scriptDir: options.stateDir!,
          spawner: options.spawner ?? new ExecaWorkerSpawner(options.logger),
          runProcess: (task, args) => this.rakeProcess(task, args),
          ...(options.logger === undefined ? {} : { logger: options.logger }),
          ...(options.now === undefined ? {} : { now: options.now }),
          ...(index === 0 ? { onSelfCheck: (task: string, answer: RakeOutput) => this.learned(task, answer) } : { checked: true }),
        });
      this.pool = new ConsoleWorkerPool(Array.from({ length: config.workers }, (_, i) => manager(i)));
    }
  }

  /**
   * Detects the console's task set and starts (and checks) the console worker, when it is on.
   *
   * @returns `{ console: <description>, worker: <state>, worker_pid?, worker_reason? }` for the start-up log
   * @throws {@link ClassifierError} when rake cannot list the console's tasks (the worker's
   *   own failures never throw: calls then run processes)
   */
  async start(): Promise<Record<string, unknown>> {
    const [tasks, worker] = await Promise.all([this.consoleTasks(), this.warmUpWorker()]);
    return { console: tasks.parameters.description, ...worker };
  }

  /**
   * Starts (and checks) the console worker, when it is on, without the console check of
   * {@link DashboardRakeClassifier.start}. Never throws.
   *
   * @returns `{ worker: <state>, worker_pid?, worker_reason? }`
   */
  async warmUpWorker(): Promise<Record<string, unknown>> {
    if (this.pool === undefined) return { worker: this.config.worker ? 'off (no state directory)' : 'off' };
    const firstWarm = this.pool.firstWarmUp();
    this.warming = firstWarm;
    void firstWarm.then(() => {
      if (this.warming === firstWarm) this.warming = undefined;
    });
    const { first, ready } = await this.pool.warmUp();
    return {
      worker: first.state,
      ...(this.config.workers > 1 ? { workers_ready: ready } : {}),
      ...(first.pid === undefined ? {} : { worker_pid: first.pid }),
      ...(first.reason === undefined ? {} : { worker_reason: first.reason }),
    };
  }

  /** Ends the console workers, if any; later calls run processes. */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /** The (first) console worker's state (`off` when it is not used). */
  workerStatus(): ConsoleWorkerStatus | { state: 'off' } {
    return this.pool?.status() ?? { state: 'off' };
  }

  /** Runs tasks back to back in one worker (no other caller's task between them), or as processes. */
  private async inSequence<T>(body: (rake: (task: string, args?: Readonly<Record<string, string>>) => Promise<RakeOutput>) => Promise<T>): Promise<T> {
    if (this.pool === undefined) {
      // As processes: the run holds one process slot throughout, so a launch's parameters task
      // runs right behind its node:add rather than behind every other launch's queued node:add.
      return this.processes.runExclusive(() => body((task, args) => this.rakeVia(undefined, task, args, true)));
    }
    return this.pool.session((run) => body((task, args) => this.rakeVia(run, task, args)));
  }

  /**
   * Runs one rake task: in the console worker when there is one (not `-T`), else as its own
   * process. Both give the same answer, with rake's `(in …)` lines removed.
   *
   * @param task - e.g. `node:add`, or `-T` for the task list
   * @param args - `key=value` arguments, each its own argv element
   * @throws {@link ClassifierError} `timeout`, `unavailable` or `interrupted`
   */
  rake(task: string, args: Readonly<Record<string, string>> = {}): Promise<RakeOutput> {
    const pool = this.pool;
    return this.rakeVia(pool === undefined ? undefined : (t, a, r) => pool.run(t, a, r), task, args);
  }

  /** Runs one task through `via` (a worker's runner) or, without one, as a process; logs it. */
  private async rakeVia(via: ConsoleTaskRunner | undefined, task: string, args: Readonly<Record<string, string>> = {}, slotHeld = false): Promise<RakeOutput> {
    const argv = Object.entries(args).map(([key, value]) => `${key}=${value}`);
    const started = process.hrtime.bigint();
    const result = via !== undefined && task !== '-T' ? await via(task, argv, READ_ONLY_TASKS.has(task)) : await this.rakeProcess(task, argv, slotHeld);
    const ms = Number((process.hrtime.bigint() - started) / 1_000_000n);
    this.logger?.debug({ task, exit: result.exitCode, ms }, 'console task finished');
    return { exitCode: result.exitCode, stdout: dropInDirectoryLines(result.stdout), stderr: dropInDirectoryLines(result.stderr) };
  }

  /**
   * Runs one rake task as its own process: `rake -s -f <Rakefile> RAILS_ENV=<env> <task> <args…>`.
   * The answer is raw (rake's `(in …)` lines kept).
   *
   * @param task - the task (or `-T`)
   * @param args - `key=value` argv elements
   * @param slotHeld - the caller holds a process slot already (a run of tasks); default false: wait for one (`[classifier] workers` at once)
   * @throws {@link ClassifierError} `timeout` or `unavailable`
   */
  async rakeProcess(task: string, args: readonly string[], slotHeld = false): Promise<RakeOutput> {
    const argv = ['-s', '-f', this.config.rakefile, `RAILS_ENV=${this.config.railsEnv}`, task, ...args];
    const spawn = () => runBackendCommand(
      this.runner,
      { file: this.config.rake, args: argv, cwd: this.config.cwd, timeoutMs: this.config.timeoutMs, env: { RAILS_ENV: this.config.railsEnv } },
      `the console's rake ${task}`,
      (failure, message, output) => new ClassifierError(failure, message, consoleOutput({ exitCode: -1, stdout: output ?? '', stderr: '' })),
    );
    const result = slotHeld ? await spawn() : await this.processes.runExclusive(spawn);
    return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
  }

  /**
   * The console's task set, detected once with `rake -s -T` (a failed detection is retried
   * on the next call).
   *
   * @throws {@link ClassifierError}
   */
  readonly consoleTasks: () => Promise<ConsoleTasks> = onceUntilFailure(async () => {
    const out = await this.rake('-T');
    if (out.exitCode !== 0) {
      throw new ClassifierError('failed', `rake -T exited ${out.exitCode}`, consoleOutput(out));
    }
    const names = parseTaskList(out.stdout);
    if (!names.has('node:add') || !names.has('nodegroup:list')) {
      throw new ClassifierError(
        'failed',
        `${this.config.rakefile} is not a PE console Rakefile: rake -T lists no node:add/nodegroup:list`,
        consoleOutput(out),
      );
    }
    return { names, parameters: parameterDialect(names) };
  });

  /** @inheritDoc */
  onListLearned(listener: (list: 'groups' | 'classes', names: string[]) => void): void {
    this.listListeners.push(listener);
  }

  /** Keeps and announces the passed self-check's answer (a successful group list). */
  private learned(task: string, answer: RakeOutput): void {
    if (task !== SELF_CHECK_TASK || answer.exitCode !== 0) return;
    const names = parseNameList(dropInDirectoryLines(answer.stdout));
    this.learnedGroups = names;
    for (const listener of this.listListeners) listener('groups', [...names]);
  }

  private async list(task: string): Promise<string[]> {
    if (task === SELF_CHECK_TASK && this.warming !== undefined) {
      // The self-check is running this very task: wait for its answer rather than queue a third run.
      await this.warming;
      const names = this.learnedGroups;
      if (names !== undefined) return [...names];
    }
    const out = await this.rake(task);
    if (out.exitCode !== 0) {
      throw new ClassifierError('failed', `rake ${task} exited ${out.exitCode}`, consoleOutput(out));
    }
    return parseNameList(out.stdout);
  }

  listGroups(): Promise<string[]> {
    return this.list('nodegroup:list');
  }

  listClasses(): Promise<string[]> {
    return this.list('nodeclass:list');
  }

  /** Refuses what the console version cannot carry: any parameter before 1.2.7, a comma on 1.2.x, a backslash on 2.0. */
  async unstorableParameters(parameters: Readonly<Record<string, string>>): Promise<Record<string, string>> {
    const entries = Object.entries(parameters);
    if (entries.length === 0) return {};
    const { parameters: dialect } = await this.consoleTasks();
    const refused: Record<string, string> = {};
    for (const [key, value] of entries) {
      const why = dialect.refuse(value);
      if (why !== undefined) Object.defineProperty(refused, key, { value: why, enumerable: true, writable: true, configurable: true });
    }
    return refused;
  }

  /**
   * `node:add` with groups and classes, then the parameters task when there are parameters;
   * a failed parameters task is rolled back with `node:del`.
   */
  async create(classification: Classification): Promise<Receipt> {
    const { name } = classification;
    const args: Record<string, string> = { name };
    if (classification.groups.length > 0) args['groups'] = classification.groups.join(',');
    if (classification.classes.length > 0) args['classes'] = classification.classes.join(',');
    // Known before a process slot or a worker is held (rake -T needs a slot of its own).
    if (Object.keys(classification.parameters).length > 0) await this.consoleTasks();
    // node:add and the parameters task run back to back in one worker; a rollback runs after.
    const failure = await this.inSequence(async (rake) => {
      const out = await rake('node:add', args);
      const text = consoleOutput(out);
      if (out.exitCode !== 0 && CONSOLE_MESSAGES.nodeExists.test(text)) throw new NodeExistsError(text);
      if (out.exitCode !== 0 || !CONSOLE_MESSAGES.nodeCreated.test(text)) {
        throw new ClassifierError('failed', `rake node:add exited ${out.exitCode}`, text);
      }
      if (Object.keys(classification.parameters).length === 0) return undefined;
      return this.setParameters(name, classification.parameters, rake).then(
        () => undefined,
        (err: unknown) => err as Error,
      );
    });
    if (failure !== undefined) throw await this.rollBack(name, failure);
    return {};
  }

  /** Sets a node's parameters with the console's parameters task. */
  private async setParameters(
    name: string,
    parameters: Readonly<Record<string, string>>,
    rake: (task: string, args: Readonly<Record<string, string>>) => Promise<RakeOutput>,
  ): Promise<void> {
    const { parameters: dialect } = await this.consoleTasks();
    if (dialect.task === undefined) throw new ClassifierError('failed', 'this console has no task to set node parameters');
    const variables = dialect.task === 'node:variables';
    const out = await rake(dialect.task, { name, [variables ? 'variables' : 'parameters']: encodeParameters(parameters, variables) });
    const text = consoleOutput(out);
    if (out.exitCode === 0 && CONSOLE_MESSAGES.parametersEdited.test(text)) return;
    throw new ClassifierError('failed', `rake ${dialect.task} exited ${out.exitCode}`, text);
  }

  /**
   * Deletes a node whose parameters could not be set.
   *
   * @returns the error the create fails with: `failed` when the node is gone again, else
   *   `interrupted` (whether the node is left is unknown)
   */
  private async rollBack(name: string, cause: Error): Promise<ClassifierError> {
    const causeOutput = cause instanceof BackendError ? cause.output : '';
    try {
      // A parameters task that timed out or was interrupted may still be running: the node
      // it may have changed is deleted all the same.
      await this.delete(name, {});
      this.logger?.warn({ node: name }, 'node rolled back after its parameters could not be set');
      return new ClassifierError('failed', `${cause.message} (the node was rolled back: nothing was created)`, causeOutput);
    } catch (err) {
      this.logger?.error({ node: name, error: (err as Error).message }, 'rolling back a node whose parameters could not be set failed');
      const uncertain = cause instanceof BackendError && outcomeUnknown(cause.failure) ? ' (the parameters task itself may have run)' : '';
      return new ClassifierError(
        'interrupted',
        `${cause.message}${uncertain}; rolling the node back failed too (${(err as Error).message}): whether the node is left is unknown`,
        causeOutput,
      );
    }
  }

  /** `node:del` by name (the receipt is not needed: the console finds a node by name). */
  async delete(name: string, _receipt: Receipt | null): Promise<'deleted' | 'absent'> {
    const out = await this.rake('node:del', { name });
    const text = consoleOutput(out);
    if (out.exitCode === 0) return 'deleted';
    if (CONSOLE_MESSAGES.nodeMissing.test(text)) return 'absent';
    throw new ClassifierError('failed', `rake node:del exited ${out.exitCode}`, text);
  }
}
