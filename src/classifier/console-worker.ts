/**
 * One warm console worker: a Ruby process that loads the console's Rakefile and boots its
 * Rails environment once, then runs rake tasks for espm one at a time, answering exactly what
 * `rake -s -f <Rakefile> RAILS_ENV=<env> <task> k=v…` run as its own process would have
 * printed and exited with (issue #9). It speaks the protocol of
 * src/classifier/console-worker-protocol.ts; the Ruby side is src/classifier/console-worker-source.ts.
 *
 * `started` is written before a task begins: a worker that dies without it did not run the
 * task (safe to run it as a process instead); one that dies after it may have (the outcome is
 * unknown). Replacement, fall-backs and the self-check are the manager's
 * (src/classifier/console-worker-manager.ts). Source of truth: docs/design.md ("Backends").
 *
 * @packageDocumentation
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import type { WorkerProcess, WorkerSpawner } from '../exec/worker.js';
import { CONSOLE_WORKER_FILE, CONSOLE_WORKER_SOURCE } from './console-worker-source.js';
import type { RakeOutput } from './dashboard-rake-tasks.js';
import { AnswerDecoder, encodeRequest, type WorkerAnswer, type WorkerAnswerKind } from './console-worker-protocol.js';


/** How to start one worker. */
export interface ConsoleWorkerOptions {
  /** Absolute path of the console's Ruby. */
  ruby: string;
  /** Absolute path of the worker program (`CONSOLE_WORKER_SOURCE` (src/classifier/console-worker-source.ts) written to a file). */
  script: string;
  /** Absolute path of the console's Rakefile. */
  rakefile: string;
  /** `RAILS_ENV`. */
  railsEnv: string;
  /** The console's directory (the worker's cwd). */
  cwd: string;
  /** How long loading the Rakefile and booting may take, ms. */
  startTimeoutMs: number;
  /** Starts the process (src/exec). */
  spawner: WorkerSpawner;
  /** Clock, ms; default `Date.now`. */
  now?: () => number;
}

/** Why a worker could not be started. */
export type WorkerStartFailure = 'unavailable' | 'boot' | 'timeout' | 'crashed' | 'protocol';

/** A worker could not be started: Ruby missing, the Rakefile or the boot failed, too slow. */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';
  /**
   * @param reason - why
   * @param message - what happened
   * @param output - what the worker printed (the boot's `rake aborted!`, Ruby's stderr)
   */
  constructor(
    readonly reason: WorkerStartFailure,
    message: string,
    readonly output = '',
  ) {
    super(message);
  }
}

/** How an exchange with a running worker failed. */
export type WorkerTaskFailure = 'timeout' | 'crashed' | 'protocol';

/** An exchange with a worker failed; the worker is dead (or being killed). */
export class WorkerTaskError extends Error {
  override readonly name = 'WorkerTaskError';
  /**
   * @param kind - `timeout` (killed at the deadline), `crashed` (it died), `protocol` (it said
   *   something unexpected and was killed)
   * @param started - whether the worker had acknowledged the request (`started`): if not, it
   *   certainly did not run it
   * @param message - what happened
   * @param detail - the worker's stderr tail, if any
   */
  constructor(
    readonly kind: WorkerTaskFailure,
    readonly started: boolean,
    message: string,
    readonly detail = '',
  ) {
    super(message);
  }
}

/** What a `refresh` request achieved. */
export type RefreshOutcome = 'refreshed' | 'unsupported' | 'failed';

interface Exchange {
  id: number;
  expected: readonly WorkerAnswerKind[];
  frames: WorkerAnswer[];
  settle: (failure?: { kind: WorkerTaskFailure; message: string }) => void;
}

/**
 * One console worker process. Not re-entrant: one exchange at a time (the
 * {@link ConsoleWorkerManager} serialises callers). Any failure kills it.
 */
export class ConsoleWorker {
  private readonly process: WorkerProcess;
  private readonly decoder = new AnswerDecoder();
  private readonly now: () => number;
  private exchange: Exchange | undefined;
  private nextId = 1;
  private dead = false;
  private completed = 0;
  private lastUse: number;
  /** When it was started (clock ms). */
  readonly startedAt: number;

  private constructor(private readonly options: ConsoleWorkerOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.lastUse = this.startedAt;
    this.process = options.spawner.spawn({
      file: options.ruby,
      args: [options.script, options.rakefile, options.railsEnv],
      cwd: options.cwd,
      env: { RAILS_ENV: options.railsEnv },
      onOutput: (chunk) => this.onOutput(chunk),
    });
    void this.process.exited.then((exit) => {
      this.dead = true;
      const how = exit.startError !== undefined ? `could not be started (${exit.startError})` : exit.signal !== undefined ? `was killed by ${exit.signal}` : `exited ${exit.exitCode}`;
      this.exchange?.settle({ kind: 'crashed', message: `the console worker (pid ${this.pid ?? '-'}) ${how}` });
    });
  }

  /**
   * Starts a worker and waits until it has loaded the Rakefile and booted the environment.
   *
   * @param options - what to run, where, and how long the start may take
   * @param spawned - called with the worker as soon as its process exists (before it is
   *   ready), so an owner can end it even while it boots
   * @throws {@link WorkerStartError} (the process is killed)
   */
  static async start(options: ConsoleWorkerOptions, spawned?: (worker: ConsoleWorker) => void): Promise<ConsoleWorker> {
    const worker = new ConsoleWorker(options);
    spawned?.(worker);
    let ready: WorkerAnswer;
    try {
      [ready] = (await worker.talk(0, ['ready'], options.startTimeoutMs)) as [WorkerAnswer];
    } catch (err) {
      worker.kill();
      const exit = await worker.process.exited;
      const failure = err as WorkerTaskError;
      if (exit.startError !== undefined) {
        throw new WorkerStartError('unavailable', `cannot run ${options.ruby} in ${options.cwd}: ${exit.startError}`);
      }
      const reason: WorkerStartFailure = failure.kind === 'timeout' ? 'timeout' : failure.kind === 'protocol' ? 'protocol' : 'crashed';
      const what = failure.kind === 'timeout' ? `did not load and boot within ${options.startTimeoutMs / 1000} s` : failure.message;
      throw new WorkerStartError(reason, `the console worker ${what}`, worker.process.stderrTail().trim());
    }
    if (ready.code !== 0) {
      worker.kill();
      const output = `${ready.stdout.toString('utf8')}\n${ready.stderr.toString('utf8')}`.trim();
      throw new WorkerStartError('boot', `the console worker's Rakefile load or boot exited ${ready.code}`, output);
    }
    return worker;
  }

  /** Its process id. */
  get pid(): number | undefined {
    return this.process.pid;
  }

  /** False once it has died, been killed, or broken the protocol. */
  get alive(): boolean {
    return !this.dead && !this.process.hasExited;
  }

  /** Tasks it has completed. */
  get tasks(): number {
    return this.completed;
  }

  /** When it last finished an exchange (or started), clock ms. */
  get lastUsedAt(): number {
    return this.lastUse;
  }

  /** Settles when its process has ended. */
  get exited(): Promise<unknown> {
    return this.process.exited;
  }

  /**
   * Runs one task, as `rake -s -f <Rakefile> RAILS_ENV=<env> <task> <args…>` would.
   *
   * @param task - the task name
   * @param args - `key=value` argv elements (no newline)
   * @param timeoutMs - deadline for the whole exchange; the worker is killed when it passes
   * @throws {@link WorkerTaskError} (the worker is dead afterwards)
   */
  async run(task: string, args: readonly string[], timeoutMs: number): Promise<RakeOutput> {
    const id = this.nextId++;
    const [, done] = (await this.talk(id, ['started', 'done'], timeoutMs, encodeRequest('task', id, [task, ...args]))) as [WorkerAnswer, WorkerAnswer];
    this.completed += 1;
    return { exitCode: done.code, stdout: done.stdout.toString('utf8'), stderr: done.stderr.toString('utf8') };
  }

  /**
   * Asks the worker to reconnect ActiveRecord (the console's database connection may have
   * been dropped while it was idle).
   *
   * @throws {@link WorkerTaskError} (the worker is dead afterwards)
   */
  async refresh(timeoutMs: number): Promise<RefreshOutcome> {
    const id = this.nextId++;
    const [answer] = (await this.talk(id, ['refreshed'], timeoutMs, encodeRequest('refresh', id))) as [WorkerAnswer];
    return answer.code === 0 ? 'refreshed' : answer.code === 1 ? 'unsupported' : 'failed';
  }

  /** Kills it (SIGTERM, then SIGKILL). Idempotent. */
  kill(): void {
    this.dead = true;
    this.process.kill();
  }

  /**
   * Ends it: closes its stdin (it exits when idle), kills it if it is still there after
   * `graceMs`, and waits for the end.
   */
  async close(graceMs = 2000): Promise<void> {
    this.dead = true;
    this.process.closeInput();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.process.kill();
        resolve();
      }, graceMs);
    });
    await Promise.race([this.process.exited, late]);
    clearTimeout(timer);
    await this.process.exited;
  }

  /** Sends `request` (if any) and waits for the `expected` answers to request `id`. */
  private talk(id: number, expected: readonly WorkerAnswerKind[], timeoutMs: number, request?: Buffer): Promise<WorkerAnswer[]> {
    if (this.exchange !== undefined) throw new Error('console worker: one exchange at a time');
    return new Promise<WorkerAnswer[]>((resolve, reject) => {
      const frames: WorkerAnswer[] = [];
      const timer = setTimeout(() => {
        this.kill();
        exchange.settle({ kind: 'timeout', message: `the console worker (pid ${this.pid ?? '-'}) did not answer within ${timeoutMs / 1000} s and was killed` });
      }, timeoutMs);
      const exchange: Exchange = {
        id,
        expected,
        frames,
        settle: (failure) => {
          if (this.exchange !== exchange) return;
          clearTimeout(timer);
          this.exchange = undefined;
          this.lastUse = this.now();
          if (failure === undefined) {
            resolve(frames);
          } else {
            reject(new WorkerTaskError(failure.kind, frames.length > 0 && expected[0] === 'started', failure.message, this.process.stderrTail().trim()));
          }
        },
      };
      this.exchange = exchange;
      if (!this.alive) {
        exchange.settle({ kind: 'crashed', message: `the console worker (pid ${this.pid ?? '-'}) is not running` });
        return;
      }
      if (request !== undefined && !this.process.send(request)) {
        this.kill();
        exchange.settle({ kind: 'crashed', message: `the console worker (pid ${this.pid ?? '-'}) no longer reads its input` });
      }
    });
  }

  private onOutput(chunk: Buffer): void {
    let frames: WorkerAnswer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.violation((err as Error).message);
      return;
    }
    for (const frame of frames) {
      const exchange = this.exchange;
      const expected = exchange?.expected[exchange.frames.length];
      if (exchange === undefined || frame.kind !== expected || frame.id !== exchange.id) {
        this.violation(
          `unexpected answer ${frame.kind} ${frame.id}` + (exchange === undefined ? ' while idle' : ` (expected ${expected} ${exchange.id})`),
        );
        return;
      }
      exchange.frames.push(frame);
      if (exchange.frames.length === exchange.expected.length) exchange.settle();
    }
  }

  /** The worker broke the protocol: it is killed, and any exchange fails. */
  private violation(message: string): void {
    this.kill();
    this.exchange?.settle({ kind: 'protocol', message: `the console worker (pid ${this.pid ?? '-'}) broke the protocol: ${message}` });
  }
}

/**
 * Writes the worker program to `<dir>/console-worker.rb` (mode 0644; the directory is made
 * 0700 when missing), unless the file there already holds exactly this program.
 *
 * @param dir - `[state] dir`
 * @returns the program's absolute path
 * @throws the file system's error when it cannot be read or written
 */
export async function writeWorkerProgram(dir: string): Promise<string> {
  const path = join(dir, CONSOLE_WORKER_FILE);
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current !== CONSOLE_WORKER_SOURCE) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, CONSOLE_WORKER_SOURCE, { mode: 0o644 });
  }
  return path;
}
