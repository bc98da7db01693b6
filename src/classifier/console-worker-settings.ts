/**
 * The settings, collaborators and state of a console worker manager
 * (src/classifier/console-worker-manager.ts), apart so the manager stays small.
 *
 * @packageDocumentation
 */
import type { WorkerSpawner } from '../exec/worker.js';
import type { Logger } from '../logger.js';
import type { RakeOutput } from './dashboard-rake-tasks.js';

/** Settings of `ConsoleWorkerManager` (from `[classifier]`). */
export interface ConsoleWorkerSettings {
  /** Absolute path of the console's Ruby. */
  ruby: string;
  /** Absolute path of the console's Rakefile. */
  rakefile: string;
  /** `RAILS_ENV`. */
  railsEnv: string;
  /** The console's directory. */
  cwd: string;
  /** Deadline of one task, ms (the worker is killed when it passes). */
  timeoutMs: number;
  /** Tasks one worker runs before it is replaced. */
  maxTasks: number;
  /** Age at which a worker is replaced, ms. */
  maxAgeMs: number;
  /** Idle time after which the database connection is refreshed before a task, ms. */
  idleRefreshMs: number;
}

/** Collaborators of `ConsoleWorkerManager`. */
export interface ConsoleWorkerManagerOptions {
  settings: ConsoleWorkerSettings;
  /** Directory the worker program is written to (`[state] dir`). */
  scriptDir: string;
  /** Starts worker processes (src/exec). */
  spawner: WorkerSpawner;
  /**
   * Runs a task as its own rake process (the fall-back, and the other side of the
   * self-check); throws `ClassifierError` for timeouts and start failures.
   */
  runProcess: (task: string, args: readonly string[]) => Promise<RakeOutput>;
  logger?: Logger;
  /** Clock, ms; default `Date.now`. */
  now?: () => number;
  /**
   * Told the answer of a passed self-check (`SELF_CHECK_TASK`, identical as a process
   * and in the worker), so the adapter can serve it rather than run the task again.
   */
  onSelfCheck?: (task: string, answer: RakeOutput) => void;
  /**
   * The worker program was already checked against a process by another manager of the same
   * console (a pool's first): this one runs no self-check of its own. Default false.
   */
  checked?: boolean;
}

/** Runs one task as `ConsoleWorkerManager.run` does (worker, or process fall-back). */
export type ConsoleTaskRunner = (task: string, args: readonly string[], readOnly: boolean) => Promise<RakeOutput>;

/** The manager's state, for logs and status. */
export interface ConsoleWorkerStatus {
  /**
   * `ready`: a verified worker is running · `idle`: none running now (one starts with the
   * next call) · `unavailable`: starting failed, calls run processes until a retry ·
   * `disabled`: the self-check failed, every call runs a process · `closed`.
   */
  state: 'ready' | 'idle' | 'unavailable' | 'disabled' | 'closed';
  /** The running worker's pid. */
  pid?: number;
  /** Why it is unavailable or disabled. */
  reason?: string;
}
