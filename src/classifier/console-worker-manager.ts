/**
 * The console worker manager: runs the console's rake tasks in one warm
 * {@link ConsoleWorker} at a time — replacement, fall-backs to rake processes, and the
 * start-up self-check (issue #9). Source of truth: docs/design.md ("Backends").
 *
 * @packageDocumentation
 */
import { Mutex } from 'async-mutex';
import { ClassifierError } from './classifier.js';
import { ConsoleWorker, WorkerTaskError, writeWorkerProgram, type ConsoleWorkerOptions, type WorkerStartError } from './console-worker.js';
import { describeDifference, type RakeOutput } from './dashboard-rake-tasks.js';
import type { ConsoleTaskRunner, ConsoleWorkerManagerOptions, ConsoleWorkerSettings, ConsoleWorkerStatus } from './console-worker-settings.js';

export type { ConsoleTaskRunner, ConsoleWorkerManagerOptions, ConsoleWorkerSettings, ConsoleWorkerStatus } from './console-worker-settings.js';

/** The list task run both ways by the start-up self-check. */
export const SELF_CHECK_TASK = 'nodegroup:list';
/** How long after a failed start the next start is tried, ms (calls run processes meanwhile). */
export const WORKER_RETRY_MS = 60_000;
/** The least time a worker gets to load and boot, ms, however short the task timeout. */
export const WORKER_MIN_START_MS = 30_000;

/**
 * Runs console tasks in one warm worker at a time (issue #9):
 * - tasks are queued and run one at a time (never two in one worker, never pipelined);
 * - the first worker is checked at start-up: {@link SELF_CHECK_TASK} run as a process and in
 *   the worker must give byte-identical answers, else the worker is disabled (logged);
 * - a worker that cannot start → that call, and calls for {@link WORKER_RETRY_MS}, run as
 *   processes; a worker that dies or breaks the protocol before acknowledging a task → the
 *   task runs as a process; after acknowledging it → read-only tasks run as a process,
 *   others fail `interrupted` (their outcome is unknown); a task past its deadline → the
 *   worker is killed and the call fails `timeout`. The next call gets a fresh worker;
 * - after `maxTasks` tasks or `maxAgeMs` a replacement boots in the background and takes over
 *   when ready; before a task after `idleRefreshMs` idle, ActiveRecord is reconnected (or, if
 *   the console has no ActiveRecord, a fresh worker is started).
 */
export class ConsoleWorkerManager {
  private readonly mutex = new Mutex();
  private readonly live = new Set<ConsoleWorker>();
  private readonly settings: ConsoleWorkerSettings;
  private readonly now: () => number;
  private worker: ConsoleWorker | undefined;
  private verified = false;
  private disabledReason: string | undefined;
  private unavailableReason: string | undefined;
  private retryAt = 0;
  private recycleRetryAt = 0;
  private recycling: Promise<void> | undefined;
  private warm: Promise<ConsoleWorkerStatus> | undefined;
  private scriptPath: Promise<string> | undefined;
  private closed = false;

  /** @param options - settings, script directory, spawner, process fall-back, logger, clock */
  constructor(private readonly options: ConsoleWorkerManagerOptions) {
    this.settings = options.settings;
    this.now = options.now ?? Date.now;
    this.verified = options.checked === true;
  }

  /** The current state. */
  status(): ConsoleWorkerStatus {
    if (this.closed) return { state: 'closed' };
    if (this.disabledReason !== undefined) return { state: 'disabled', reason: this.disabledReason };
    const worker = this.worker;
    if (worker !== undefined && worker.alive) return { state: 'ready', ...(worker.pid === undefined ? {} : { pid: worker.pid }) };
    if (this.unavailableReason !== undefined) return { state: 'unavailable', reason: this.unavailableReason };
    return { state: 'idle' };
  }

  /**
   * Starts (and checks) the first worker now rather than at the first call. Calls made
   * meanwhile wait for it. Never throws; the same promise on every call.
   */
  warmUp(): Promise<ConsoleWorkerStatus> {
    this.warm ??= this.mutex
      .runExclusive(() => this.usableWorker())
      .then(
        () => this.status(),
        (err: unknown) => {
          this.options.logger?.error({ error: (err as Error).message }, 'console worker warm-up failed');
          return this.status();
        },
      );
    return this.warm;
  }

  /**
   * Runs one task in the worker, or as a process when there is no usable worker (see the
   * class comment for exactly when).
   *
   * @param task - the task name (never `-T`: the task list is a process's job)
   * @param args - `key=value` argv elements
   * @param readOnly - the task changes nothing (a list): safe to re-run as a process after
   *   the worker died running it
   * @returns the task's exit status, stdout and stderr, as a rake process gives them
   * @throws {@link ClassifierError} `timeout`, `interrupted`, or what the process fall-back throws
   */
  async run(task: string, args: readonly string[], readOnly: boolean): Promise<RakeOutput> {
    // The worker parses key=value as rake 0.8.7 does (no newline in a value): anything else
    // is left to rake itself.
    if (this.processOnly(args)) return this.options.runProcess(task, args);
    const outcome = await this.mutex.runExclusive(() => this.attempt(task, args, readOnly));
    return this.settle(task, args, outcome);
  }

  /**
   * Runs several tasks back to back in this manager's worker: no other caller's task runs in
   * it between them (a launch's `node:add` and its parameters task). Each task is run as
   * {@link ConsoleWorkerManager.run} runs it (a fall-back to a process included).
   *
   * @param body - gets the runner for its tasks; its result is returned
   * @throws whatever `body` throws
   */
  async session<T>(body: (run: ConsoleTaskRunner) => Promise<T>): Promise<T> {
    const unlocked: ConsoleTaskRunner = (task, args, readOnly) =>
      this.processOnly(args) ? this.options.runProcess(task, args) : this.attempt(task, args, readOnly).then((o) => this.settle(task, args, o));
    if (this.closed || this.disabledReason !== undefined) return body((task, args) => this.options.runProcess(task, args));
    return this.mutex.runExclusive(() => body(unlocked));
  }

  /** Whether a task must run as a process whatever the worker's state. */
  private processOnly(args: readonly string[]): boolean {
    return this.closed || this.disabledReason !== undefined || args.some((a) => a.includes('\n'));
  }

  /** The answer of an attempt, or the task run as a process when the attempt fell back. */
  private settle(task: string, args: readonly string[], outcome: { output: RakeOutput } | { fallback: string }): Promise<RakeOutput> | RakeOutput {
    if (!('fallback' in outcome)) return outcome.output;
    this.options.logger?.debug({ task, reason: outcome.fallback }, 'console task runs as its own process');
    return this.options.runProcess(task, args);
  }

  /** One task in the worker (under the mutex): its answer, or why it falls back to a process. */
  private async attempt(task: string, args: readonly string[], readOnly: boolean): Promise<{ output: RakeOutput } | { fallback: string }> {
    const worker = await this.usableWorker();
    if (worker === undefined) return { fallback: this.status().reason ?? 'no console worker' };
    try {
      const output = await worker.run(task, args, this.settings.timeoutMs);
      this.afterTask(worker);
      return { output };
    } catch (err) {
      if (!(err instanceof WorkerTaskError)) throw err;
      this.discard(worker, `rake ${task}: ${err.message}`, err.detail);
      if (err.kind === 'timeout') {
        throw new ClassifierError(
          'timeout',
          `the console's rake ${task} did not finish within ${this.settings.timeoutMs / 1000} s; the console worker running it was killed`,
        );
      }
      if (!err.started || readOnly) return { fallback: err.message };
      throw new ClassifierError(
        'interrupted',
        `the console worker died while running rake ${task} (${err.message}): whether it took effect is unknown`,
        err.detail,
      );
    }
  }

  /**
   * Ends every worker (running, starting, or being replaced) and waits for them; nothing is
   * written or started afterwards. Later calls run processes.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.worker = undefined;
    await Promise.all([...this.live].map((w) => w.close()));
    await this.scriptPath?.catch(() => undefined);
    await this.recycling;
    await Promise.all([...this.live].map((w) => w.close()));
  }

  // -------------------------------------------------------------------------------------
  // under the mutex

  /** The worker to run the next task in, started (and checked) if need be; undefined: none. */
  private async usableWorker(): Promise<ConsoleWorker | undefined> {
    if (this.closed || this.disabledReason !== undefined) return undefined;
    if (this.worker !== undefined && !this.worker.alive) {
      this.options.logger?.warn({ pid: this.worker.pid }, 'console worker died while idle; starting a new one');
      this.worker = undefined;
    }
    if (this.worker === undefined) {
      this.worker = await this.startCurrent();
      if (this.worker === undefined) return undefined;
    }
    let worker = this.worker;
    if (this.now() - worker.lastUsedAt >= this.settings.idleRefreshMs) {
      const outcome = await worker.refresh(this.settings.timeoutMs).catch((err: unknown) => `failed: ${(err as Error).message}`);
      if (outcome !== 'refreshed') {
        const idleS = Math.round((this.now() - worker.lastUsedAt) / 1000);
        this.options.logger?.info(
          { pid: worker.pid, idle_s: idleS, refresh: outcome },
          'console worker idle long enough to have lost its database connection and it cannot reconnect: starting a fresh one',
        );
        this.retire(worker);
        this.worker = await this.startCurrent();
        if (this.worker === undefined) return undefined;
        worker = this.worker;
      } else {
        this.options.logger?.debug({ pid: worker.pid }, 'console worker database connection refreshed');
      }
    }
    this.afterTask(worker);
    return worker;
  }

  /** Starts the worker to use now; undefined (logged, retried later) when it cannot start. */
  private async startCurrent(): Promise<ConsoleWorker | undefined> {
    if (this.now() < this.retryAt) return undefined;
    try {
      const worker = await this.startWorker();
      this.unavailableReason = undefined;
      return worker;
    } catch (err) {
      if (this.disabledReason !== undefined || this.closed) return undefined;
      this.retryAt = this.now() + WORKER_RETRY_MS;
      this.unavailableReason = (err as Error).message;
      this.options.logger?.warn(
        { error: this.unavailableReason, output: (err as WorkerStartError).output || undefined, retry_in_s: WORKER_RETRY_MS / 1000 },
        'console worker could not start: console tasks run as their own processes until it can',
      );
      return undefined;
    }
  }

  /** Kills a worker that failed, and forgets it if it is the current one. */
  private discard(worker: ConsoleWorker, reason: string, detail: string): void {
    worker.kill();
    if (this.worker === worker) this.worker = undefined;
    this.options.logger?.warn({ pid: worker.pid, reason, worker_stderr: detail || undefined }, 'console worker killed; the next task gets a fresh one');
  }

  /** Replaces the worker in the background when it has reached its task count or age. */
  private afterTask(worker: ConsoleWorker): void {
    if (worker !== this.worker) return;
    const reason =
      worker.tasks >= this.settings.maxTasks ? `ran ${worker.tasks} tasks` : this.now() - worker.startedAt >= this.settings.maxAgeMs ? 'reached its maximum age' : undefined;
    if (reason !== undefined) this.recycle(worker, reason);
  }

  // -------------------------------------------------------------------------------------
  // starting and replacing

  /** Starts a worker; the first one is checked against a process ({@link SELF_CHECK_TASK}). */
  private async startWorker(): Promise<ConsoleWorker> {
    const script = await this.script();
    if (this.closed) throw new Error('the console worker manager is closed');
    const options: ConsoleWorkerOptions = {
      ruby: this.settings.ruby,
      script,
      rakefile: this.settings.rakefile,
      railsEnv: this.settings.railsEnv,
      cwd: this.settings.cwd,
      startTimeoutMs: Math.max(this.settings.timeoutMs, WORKER_MIN_START_MS),
      spawner: this.options.spawner,
      now: this.now,
    };
    const started = this.now();
    const register = (worker: ConsoleWorker): void => {
      this.live.add(worker);
      void worker.exited.then(() => this.live.delete(worker));
      if (this.closed) worker.kill();
    };
    if (this.verified) return this.ready(await ConsoleWorker.start(options, register), started);

    // Start-up self-check: the same list task as a process and in the worker, concurrently
    // with the worker's boot.
    const [processRun, workerStart] = await Promise.allSettled([this.options.runProcess(SELF_CHECK_TASK, []), ConsoleWorker.start(options, register)]);
    if (workerStart.status === 'rejected') throw workerStart.reason;
    const worker = this.ready(workerStart.value, started);
    if (processRun.status === 'rejected') {
      await worker.close();
      throw new Error(`self-check: rake ${SELF_CHECK_TASK} as a process failed (${(processRun.reason as Error).message}), so the worker could not be checked`);
    }
    let answer: RakeOutput;
    try {
      answer = await worker.run(SELF_CHECK_TASK, [], this.settings.timeoutMs);
    } catch (err) {
      worker.kill();
      throw new Error(`self-check: rake ${SELF_CHECK_TASK} in the worker failed: ${(err as Error).message}`);
    }
    const difference = describeDifference(processRun.value, answer);
    if (difference !== undefined) {
      this.disabledReason = `self-check: rake ${SELF_CHECK_TASK} answered differently in the worker than as a process (${difference})`;
      this.options.logger?.warn({ reason: this.disabledReason }, 'console worker disabled: every console task runs as its own process');
      await worker.close();
      throw new Error(this.disabledReason);
    }
    this.verified = true;
    this.options.onSelfCheck?.(SELF_CHECK_TASK, answer);
    this.options.logger?.info({ pid: worker.pid, check: SELF_CHECK_TASK }, 'console worker checked: answers as a rake process does');
    return worker;
  }

  /** Logs a worker that has booted. */
  private ready(worker: ConsoleWorker, started: number): ConsoleWorker {
    this.options.logger?.info({ pid: worker.pid, boot_ms: this.now() - started }, 'console worker ready');
    return worker;
  }

  /** Closes a worker that is no longer the current one, in the background. */
  private retire(worker: ConsoleWorker): void {
    if (this.worker === worker) this.worker = undefined;
    void worker.close();
  }

  /**
   * Boots a replacement in the background; the old worker serves until it is ready, then is
   * closed once idle. A replacement that fails to start is retried after {@link WORKER_RETRY_MS}.
   */
  private recycle(old: ConsoleWorker, reason: string): void {
    if (this.recycling !== undefined || this.closed || this.now() < this.recycleRetryAt) return;
    this.options.logger?.info({ pid: old.pid, reason }, 'console worker due for replacement: a new one is booting');
    this.recycling = (async () => {
      let next: ConsoleWorker;
      try {
        next = await this.startWorker();
      } catch (err) {
        this.recycleRetryAt = this.now() + WORKER_RETRY_MS;
        if (this.closed) return;
        this.options.logger?.warn({ pid: old.pid, error: (err as Error).message }, 'console worker replacement could not start; the current one goes on serving');
        return;
      }
      const replaced = await this.mutex.runExclusive(() => {
        if (this.closed || this.worker !== old) return false;
        this.worker = next;
        return true;
      });
      if (!replaced) {
        await next.close();
        return;
      }
      this.options.logger?.info({ old_pid: old.pid, pid: next.pid, reason }, 'console worker replaced');
      await old.close();
    })().finally(() => {
      this.recycling = undefined;
    });
  }

  /** Writes the worker program into the script directory (once; rewritten when it differs). */
  private script(): Promise<string> {
    if (this.closed) return Promise.reject(new Error('the console worker manager is closed'));
    this.scriptPath ??= writeWorkerProgram(this.options.scriptDir);
    this.scriptPath.catch(() => {
      this.scriptPath = undefined;
    });
    return this.scriptPath;
  }
}
