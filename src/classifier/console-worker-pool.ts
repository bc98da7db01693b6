/**
 * A pool of console worker managers (`[classifier] workers`, issue #19): each task goes to the
 * least busy member; a run of tasks (a launch's `node:add` and its parameters task) goes to one
 * member back to back. The first member runs the start-up self-check; the others trust it and
 * serve only while it has not disabled the worker. Source of truth: docs/design.md ("Backends").
 *
 * @packageDocumentation
 */
import type { ConsoleTaskRunner, ConsoleWorkerManager, ConsoleWorkerStatus } from './console-worker-manager.js';
import type { RakeOutput } from './dashboard-rake-tasks.js';

/** Several {@link ConsoleWorkerManager}s of one console. */
export class ConsoleWorkerPool {
  /** Tasks queued or running per member. */
  private readonly busy: number[];

  /** @param members - at least one; the first runs the self-check, the others were made `checked` */
  constructor(private readonly members: readonly ConsoleWorkerManager[]) {
    if (members.length === 0) throw new Error('a console worker pool needs at least one member');
    this.busy = members.map(() => 0);
  }

  /** The first member's warm-up (with the self-check): the same promise on every call. Never throws. */
  firstWarmUp(): Promise<ConsoleWorkerStatus> {
    return this.members[0]!.warmUp();
  }

  /**
   * Starts every member's worker (at once) and waits for them. Never throws.
   *
   * @returns the first member's status and, with more than one member, `ready`: how many run a worker
   */
  async warmUp(): Promise<{ first: ConsoleWorkerStatus; ready: number }> {
    const all = await Promise.all(this.members.map((m) => m.warmUp()));
    return { first: all[0]!, ready: this.members.filter((m) => m.status().state === 'ready').length };
  }

  /** The first member's state (the self-check's verdict lives there). */
  status(): ConsoleWorkerStatus {
    return this.members[0]!.status();
  }

  /** Ends every member's workers. */
  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }

  /**
   * Runs one task in the least busy member ({@link ConsoleWorkerManager.run}).
   *
   * @throws what {@link ConsoleWorkerManager.run} throws
   */
  run(task: string, args: readonly string[], readOnly: boolean): Promise<RakeOutput> {
    return this.using((m) => m.run(task, args, readOnly));
  }

  /**
   * Runs tasks back to back in one member ({@link ConsoleWorkerManager.session}).
   *
   * @throws whatever `body` throws
   */
  session<T>(body: (run: ConsoleTaskRunner) => Promise<T>): Promise<T> {
    return this.using((m) => m.session(body));
  }

  /**
   * Calls `work` with the least busy member (always the first when its self-check disabled
   * the worker: every task then runs as a process), counted busy until it settles.
   */
  private async using<T>(work: (member: ConsoleWorkerManager) => Promise<T>): Promise<T> {
    let index = 0;
    if (this.members[0]!.status().state !== 'disabled') {
      for (let i = 1; i < this.members.length; i += 1) if (this.busy[i]! < this.busy[index]!) index = i;
    }
    this.busy[index]! += 1;
    try {
      return await work(this.members[index]!);
    } finally {
      this.busy[index]! -= 1;
    }
  }
}
