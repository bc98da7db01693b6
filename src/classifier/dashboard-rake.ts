/**
 * Classifier adapter for the Puppet Enterprise 2.x/3.x console (puppet-dashboard 1.2.x, 2.0)
 * through its rake tasks.
 *
 * Source of truth for every invocation, message and exit code: puppet-dashboard 1.2.6–1.2.23
 * and 2.0 `lib/tasks/node.rake` and `lib/tasks/classesgroups.rake`, as summarised in
 * `shared/reference/dashboard-rake.md`:
 * - `rake -s -f <Rakefile> RAILS_ENV=<env> <task> key=value …`, each pair its own argv
 *   element; the tasks read `ENV`, so the child's environment carries nothing else
 *   (src/exec rebuilds it from an allow-list);
 * - rake 0.8.7 prints `(in <cwd>)` first unless `-s`: such lines are dropped anyway;
 * - 1.2.x prints every message, errors included, on stdout; 1.2.23/2.0 move them to stderr:
 *   both streams are read;
 * - success and failure are judged by exit status AND the documented message.
 *
 * With `[classifier] worker = on` (the default) every task but `-T` runs in the warm console
 * worker ({@link ConsoleWorkerManager}: the Rails boot is paid once, not per call), which
 * answers byte for byte what a rake process would; otherwise, and whenever no worker is
 * usable, each call runs its own rake process.
 *
 * @packageDocumentation
 */
import type { Config } from '../config.js';
import { onceUntilFailure, runBackendCommand } from '../backend.js';
import type { CommandRunner } from '../exec/command.js';
import { ExecaWorkerSpawner, type WorkerSpawner } from '../exec/worker.js';
import type { Logger } from '../logger.js';
import { ConsoleWorkerManager, type ConsoleWorkerStatus } from './console-worker.js';
import {
  ClassifierError,
  NodeExistsError,
  type ClassifiedNode,
  type Classifier,
  type ClassifierCapabilities,
} from './classifier.js';

/** Lines rake 0.8.7 prints when run without `-s`. */
const RAKE_IN_DIRECTORY_LINE = /^\(in .*\)$/;

/** Messages of the console's tasks (puppet-dashboard 1.2.x/2.0 `lib/tasks/node.rake`). */
export const CONSOLE_MESSAGES = {
  /** `node:add` success. */
  nodeCreated: /^Node successfully created!$/m,
  /** `node:add` on an existing name (any node, owned or not). */
  nodeExists: /^Node already exists!$/m,
  /** `node:del` / `node:*` on a missing node: 1.2.x `Node does not exist!`, 1.2.23+ `Node N doesn't exist!`. */
  nodeMissing: /^Node (?:does not exist!|.*doesn't exist!)$/m,
  /** `node:parameters` (1.2.7+) / `node:variables` (2.0) success. */
  parametersEdited: /^Node (?:parameters|variables) successfully edited for .*!$/m,
} as const;

/** One rake task's answer, with rake's `(in …)` lines removed. */
export interface RakeOutput {
  /** Exit status (a signal as 128 + its number). */
  exitCode: number;
  /** What the task printed on stdout. */
  stdout: string;
  /** What the task printed on stderr. */
  stderr: string;
}

/**
 * Tasks that only read: after a worker died running one, it is safe to run it again as a
 * process. Every other task may have changed the console.
 */
export const READ_ONLY_TASKS: ReadonlySet<string> = new Set([
  '-T',
  'nodegroup:list',
  'nodeclass:list',
  'node:list',
  'node:listgroups',
  'node:listclasses',
]);

/** Collaborators of {@link DashboardRakeClassifier} besides config and command runner. */
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
}

/**
 * Parses `rake -T` output (`rake node:add  # Add a new node`) into task names.
 *
 * @param stdout - rake's stdout
 */
export function parseTaskList(stdout: string): Set<string> {
  const names = new Set<string>();
  for (const line of stdout.split('\n')) {
    const match = /^rake ([\w:]+)(?:\[[^\]]*\])?\s+#/.exec(line);
    if (match?.[1] !== undefined) names.add(match[1]);
  }
  return names;
}

/**
 * Parses a list task's stdout (`nodegroup:list`, `nodeclass:list`): one name per line, no
 * header; drops empty lines and rake's `(in …)` line. Names are kept as printed (group
 * names may hold spaces).
 *
 * @param stdout - the task's stdout
 * @returns the names, sorted by code point (the console sorts by MySQL collation)
 */
export function parseNameList(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .filter((line) => line !== '' && !RAKE_IN_DIRECTORY_LINE.test(line))
    .sort();
}

/** The tool's words for an error detail: stdout then stderr, `(in …)` lines dropped, trimmed. */
export function consoleOutput(output: RakeOutput): string {
  return [output.stdout, output.stderr]
    .join('\n')
    .split('\n')
    .filter((line) => !RAKE_IN_DIRECTORY_LINE.test(line))
    .join('\n')
    .trim();
}

/**
 * Encodes parameters for `node:parameters` (1.2.7+: `k1=v1,k2=v2`, split on `,` then the
 * first `=`, no escaping — values with a comma cannot be carried) or `node:variables`
 * (2.0: `,` and `=` in values escaped as `\,` and `\=`; values with a backslash are
 * refused earlier, see {@link DashboardRakeClassifier.capabilities}).
 *
 * @param parameters - key → value, already validated
 * @param escape - true for `node:variables`
 */
export function encodeParameters(parameters: Readonly<Record<string, string>>, escape: boolean): string {
  return Object.entries(parameters)
    .map(([key, value]) => `${key}=${escape ? value.replace(/[,=]/g, (c) => `\\${c}`) : value}`)
    .join(',');
}

/** The dashboard-rake adapter. One instance per daemon: it detects the task set once. */
export class DashboardRakeClassifier implements Classifier {
  readonly backend = 'dashboard-rake';
  private readonly logger: Logger | undefined;
  /** The warm console worker; undefined when `[classifier] worker = off` (or no state dir). */
  private readonly workers: ConsoleWorkerManager | undefined;

  /**
   * @param config - `[classifier]`: rake, rakefile, rails_env, cwd, timeout, worker, ruby, worker_*
   * @param runner - runs rake processes (src/exec)
   * @param options - logger, state directory (for the worker), worker spawner, clock
   */
  constructor(
    private readonly config: Config['classifier'],
    private readonly runner: CommandRunner,
    options: DashboardRakeOptions = {},
  ) {
    this.logger = options.logger;
    if (config.worker && options.stateDir !== undefined) {
      this.workers = new ConsoleWorkerManager({
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
        scriptDir: options.stateDir,
        spawner: options.spawner ?? new ExecaWorkerSpawner(options.logger),
        runProcess: (task, args) => this.rakeProcess(task, args),
        ...(options.logger === undefined ? {} : { logger: options.logger }),
        ...(options.now === undefined ? {} : { now: options.now }),
      });
    }
  }

  /**
   * Starts (and checks) the console worker, when it is on; never throws.
   *
   * @returns `{ worker: <state>, worker_pid?, worker_reason? }` for the start-up log
   */
  async start(): Promise<Record<string, unknown>> {
    if (this.workers === undefined) return { worker: this.config.worker ? 'off (no state directory)' : 'off' };
    const status = await this.workers.warmUp();
    return { worker: status.state, ...(status.pid === undefined ? {} : { worker_pid: status.pid }), ...(status.reason === undefined ? {} : { worker_reason: status.reason }) };
  }

  /** Ends the console worker, if any; later calls run processes. */
  async close(): Promise<void> {
    await this.workers?.close();
  }

  /** The console worker's state (`off` when it is not used). */
  workerStatus(): ConsoleWorkerStatus | { state: 'off' } {
    return this.workers?.status() ?? { state: 'off' };
  }

  /**
   * Runs one rake task: in the console worker when there is one (not `-T`), else as its own
   * process. Both give the same answer.
   *
   * @param task - e.g. `node:add`, or `-T` for the task list
   * @param args - `key=value` arguments, each its own argv element
   * @throws {@link ClassifierError} `timeout`, `unavailable` or `interrupted`
   */
  async rake(task: string, args: Readonly<Record<string, string>> = {}): Promise<RakeOutput> {
    const argv = Object.entries(args).map(([key, value]) => `${key}=${value}`);
    const started = process.hrtime.bigint();
    const result =
      this.workers !== undefined && task !== '-T'
        ? await this.workers.run(task, argv, READ_ONLY_TASKS.has(task))
        : await this.rakeProcess(task, argv);
    const drop = (text: string): string =>
      text
        .split('\n')
        .filter((line) => !RAKE_IN_DIRECTORY_LINE.test(line))
        .join('\n');
    const ms = Number((process.hrtime.bigint() - started) / 1_000_000n);
    this.logger?.debug({ task, exit: result.exitCode, ms }, 'console task finished');
    return { exitCode: result.exitCode, stdout: drop(result.stdout), stderr: drop(result.stderr) };
  }

  /**
   * Runs one rake task as its own process: `rake -s -f <Rakefile> RAILS_ENV=<env> <task> <args…>`.
   * The answer is raw (rake's `(in …)` lines kept).
   *
   * @param task - the task (or `-T`)
   * @param args - `key=value` argv elements
   * @throws {@link ClassifierError} `timeout` or `unavailable`
   */
  async rakeProcess(task: string, args: readonly string[]): Promise<RakeOutput> {
    const argv = ['-s', '-f', this.config.rakefile, `RAILS_ENV=${this.config.railsEnv}`, task, ...args];
    const result = await runBackendCommand(
      this.runner,
      { file: this.config.rake, args: argv, cwd: this.config.cwd, timeoutMs: this.config.timeoutMs, env: { RAILS_ENV: this.config.railsEnv } },
      `the console's rake ${task}`,
      (failure, message, output) => new ClassifierError(failure, message, consoleOutput({ exitCode: -1, stdout: output ?? '', stderr: '' })),
    );
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
    return { names };
  });

  async capabilities(): Promise<ClassifierCapabilities> {
    const { names } = await this.consoleTasks();
    if (names.has('node:variables')) {
      return {
        parameters: true,
        refuseParameterValue: (value) =>
          value.includes('\\') ? 'a backslash cannot be carried by node:variables (it escapes commas)' : undefined,
        description: 'puppet-dashboard 2.0 (node:variables)',
      };
    }
    if (names.has('node:parameters')) {
      return {
        parameters: true,
        refuseParameterValue: (value) =>
          value.includes(',') ? 'this console (node:parameters, 1.2.x) cannot carry a comma in a value' : undefined,
        description: 'puppet-dashboard 1.2.7+ (node:parameters)',
      };
    }
    return {
      parameters: false,
      refuseParameterValue: () => 'this console (puppet-dashboard before 1.2.7) has no task to set node parameters',
      description: 'puppet-dashboard before 1.2.7 (no parameters task)',
    };
  }

  private async list(task: string): Promise<string[]> {
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

  async addNode(node: ClassifiedNode): Promise<void> {
    const args: Record<string, string> = { name: node.name };
    if (node.groups.length > 0) args['groups'] = node.groups.join(',');
    if (node.classes.length > 0) args['classes'] = node.classes.join(',');
    const out = await this.rake('node:add', args);
    const text = consoleOutput(out);
    if (out.exitCode === 0 && CONSOLE_MESSAGES.nodeCreated.test(text)) return;
    if (out.exitCode !== 0 && CONSOLE_MESSAGES.nodeExists.test(text)) throw new NodeExistsError(text);
    throw new ClassifierError('failed', `rake node:add exited ${out.exitCode}`, text);
  }

  async setParameters(name: string, parameters: Readonly<Record<string, string>>): Promise<void> {
    const { names } = await this.consoleTasks();
    const variables = names.has('node:variables');
    if (!variables && !names.has('node:parameters')) {
      throw new ClassifierError('failed', 'this console has no task to set node parameters');
    }
    const task = variables ? 'node:variables' : 'node:parameters';
    const out = await this.rake(task, {
      name,
      [variables ? 'variables' : 'parameters']: encodeParameters(parameters, variables),
    });
    const text = consoleOutput(out);
    if (out.exitCode === 0 && CONSOLE_MESSAGES.parametersEdited.test(text)) return;
    throw new ClassifierError('failed', `rake ${task} exited ${out.exitCode}`, text);
  }

  async deleteNode(name: string): Promise<'deleted' | 'absent'> {
    const out = await this.rake('node:del', { name });
    const text = consoleOutput(out);
    if (out.exitCode === 0) return 'deleted';
    if (CONSOLE_MESSAGES.nodeMissing.test(text)) return 'absent';
    throw new ClassifierError('failed', `rake node:del exited ${out.exitCode}`, text);
  }
}
