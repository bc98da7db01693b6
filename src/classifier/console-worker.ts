/**
 * The warm console worker: one Ruby process that loads the console's Rakefile and boots its
 * Rails environment once, then runs rake tasks for espm one at a time, answering exactly what
 * `rake -s -f <Rakefile> RAILS_ENV=<env> <task> k=v…` run as its own process would have
 * printed and exited with (issue #9). The Ruby side is {@link CONSOLE_WORKER_SOURCE}.
 *
 * Protocol (stdin → worker, worker's stdout → espm; the tasks' own stdout/stderr are captured
 * per task inside the worker and never reach the channel). Every frame starts with an ASCII
 * header line and counts its payload in bytes, so payloads may hold any byte (JSON is not
 * used: Ruby 1.8.7's standard library has no JSON):
 *
 * ```
 * request: "@espm <task|refresh|quit> <id> <n>\n" then n fields, each "<bytes>\n" <data> "\n"
 *          task fields: the task name, then rake's argv elements ("key=value")
 * answer:  "@espm <kind> <id> <code> <outBytes> <errBytes>\n" <out> <err> "\n"
 *          ready (id 0) · started <id> · done <id> <exit status> · refreshed <id> <0|1|2> · bye <id>
 * ```
 *
 * Every request carries a fresh id, echoed by its answers; only one request is outstanding at
 * a time, and any answer that is not the one expected next (wrong kind or id) ends the worker.
 * `started` is written before the task begins: a worker that dies without it did not run the
 * task (safe to run it as a process instead); one that dies after it may have (the outcome is
 * unknown: `interrupted`, unless the task only reads).
 *
 * @packageDocumentation
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Mutex } from 'async-mutex';
import writeFileAtomic from 'write-file-atomic';
import { MAX_OUTPUT_BYTES } from '../exec/command.js';
import type { WorkerProcess, WorkerSpawner } from '../exec/worker.js';
import type { Logger } from '../logger.js';
import { ClassifierError } from './classifier.js';
import { CONSOLE_WORKER_FILE, CONSOLE_WORKER_SOURCE } from './console-worker-source.js';
import type { RakeOutput } from './dashboard-rake.js';

// ---------------------------------------------------------------------------------------
// framing

/** What espm asks of a worker. */
export type WorkerRequestKind = 'task' | 'refresh' | 'quit';
/** What a worker answers. */
export type WorkerAnswerKind = 'ready' | 'started' | 'done' | 'refreshed' | 'bye';

/** One decoded answer frame. */
export interface WorkerAnswer {
  kind: WorkerAnswerKind;
  /** The id of the request it answers (0 for `ready`). */
  id: number;
  /** Exit status (`ready`, `done`), or the `refreshed` outcome. */
  code: number;
  /** The task's stdout, bytes. */
  stdout: Buffer;
  /** The task's stderr, bytes. */
  stderr: Buffer;
}

/** Longest header line an answer may have, bytes. */
export const MAX_ANSWER_HEADER_BYTES = 128;
/** Largest stdout + stderr one answer may carry, bytes (as much as a process may print). */
export const MAX_ANSWER_PAYLOAD_BYTES = 2 * MAX_OUTPUT_BYTES;

const ANSWER_HEADER = /^@espm (ready|started|done|refreshed|bye) (\d{1,15}) (-?\d{1,5}) (\d{1,12}) (\d{1,12})$/;

/** The worker said something that is not the protocol, or not what was expected next. */
export class WorkerProtocolError extends Error {
  override readonly name = 'WorkerProtocolError';
}

/**
 * Encodes one request frame.
 *
 * @param kind - `task`, `refresh` or `quit`
 * @param id - the request's id (a positive integer, never reused by one worker client)
 * @param fields - for `task`: the task name, then `key=value` argv elements
 */
export function encodeRequest(kind: WorkerRequestKind, id: number, fields: readonly string[] = []): Buffer {
  const parts: Buffer[] = [Buffer.from(`@espm ${kind} ${id} ${fields.length}\n`, 'latin1')];
  for (const field of fields) {
    const data = Buffer.from(field, 'utf8');
    parts.push(Buffer.from(`${data.length}\n`, 'latin1'), data, Buffer.from('\n', 'latin1'));
  }
  return Buffer.concat(parts);
}

/** Splits a worker's stdout into answer frames, however the bytes arrive. */
export class AnswerDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: Omit<WorkerAnswer, 'stdout' | 'stderr'> & { outBytes: number; errBytes: number } | undefined;

  /**
   * Adds bytes; returns the frames they complete.
   *
   * @throws {@link WorkerProtocolError} on anything that is not a well-formed frame
   */
  push(chunk: Buffer): WorkerAnswer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: WorkerAnswer[] = [];
    for (;;) {
      if (this.header === undefined) {
        const head = this.peek(Math.min(this.buffered, MAX_ANSWER_HEADER_BYTES + 1));
        const newline = head.indexOf(0x0a);
        if (newline < 0) {
          if (head.length > MAX_ANSWER_HEADER_BYTES) throw new WorkerProtocolError(`not an answer header: ${JSON.stringify(head.toString('latin1').slice(0, 60))}`);
          break;
        }
        const line = head.subarray(0, newline).toString('latin1');
        const match = ANSWER_HEADER.exec(line);
        if (match === null) throw new WorkerProtocolError(`not an answer header: ${JSON.stringify(line.slice(0, 60))}`);
        const outBytes = Number(match[4]);
        const errBytes = Number(match[5]);
        if (outBytes + errBytes > MAX_ANSWER_PAYLOAD_BYTES) throw new WorkerProtocolError(`answer too large: ${outBytes + errBytes} bytes`);
        this.take(newline + 1);
        this.header = { kind: match[1] as WorkerAnswerKind, id: Number(match[2]), code: Number(match[3]), outBytes, errBytes };
      }
      const { outBytes, errBytes, ...rest } = this.header;
      const size = outBytes + errBytes + 1;
      if (this.buffered < size) break;
      const body = this.take(size);
      if (body[size - 1] !== 0x0a) throw new WorkerProtocolError(`answer ${rest.kind} ${rest.id} is not terminated where its lengths say`);
      frames.push({ ...rest, stdout: body.subarray(0, outBytes), stderr: body.subarray(outBytes, outBytes + errBytes) });
      this.header = undefined;
    }
    return frames;
  }

  /** The first `n` buffered bytes, left in the buffer. */
  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  /** Removes and returns the first `n` buffered bytes. */
  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}

// ---------------------------------------------------------------------------------------
// one worker

/** How to start one worker. */
export interface ConsoleWorkerOptions {
  /** Absolute path of the console's Ruby. */
  ruby: string;
  /** Absolute path of the worker program ({@link CONSOLE_WORKER_SOURCE} written to a file). */
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

// ---------------------------------------------------------------------------------------
// the manager: one worker at a time, self-check, restarts, fall-backs

/** The list task run both ways by the start-up self-check. */
export const SELF_CHECK_TASK = 'nodegroup:list';
/** How long after a failed start the next start is tried, ms (calls run processes meanwhile). */
export const WORKER_RETRY_MS = 60_000;
/** The least time a worker gets to load and boot, ms, however short the task timeout. */
export const WORKER_MIN_START_MS = 30_000;

/** Settings of {@link ConsoleWorkerManager} (from `[classifier]`). */
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

/** Collaborators of {@link ConsoleWorkerManager}. */
export interface ConsoleWorkerManagerOptions {
  settings: ConsoleWorkerSettings;
  /** Directory the worker program is written to (`[state] dir`). */
  scriptDir: string;
  /** Starts worker processes (src/exec). */
  spawner: WorkerSpawner;
  /**
   * Runs a task as its own rake process (the fall-back, and the other side of the
   * self-check); throws {@link ClassifierError} for timeouts and start failures.
   */
  runProcess: (task: string, args: readonly string[]) => Promise<RakeOutput>;
  logger?: Logger;
  /** Clock, ms; default `Date.now`. */
  now?: () => number;
}

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
    if (this.closed || this.disabledReason !== undefined || args.some((a) => a.includes('\n'))) {
      return this.options.runProcess(task, args);
    }
    const outcome = await this.mutex.runExclusive(async (): Promise<{ output: RakeOutput } | { fallback: string }> => {
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
    });
    if ('fallback' in outcome) {
      this.options.logger?.debug({ task, reason: outcome.fallback }, 'console task runs as its own process');
      return this.options.runProcess(task, args);
    }
    return outcome.output;
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
    this.scriptPath ??= (async () => {
      const path = join(this.options.scriptDir, CONSOLE_WORKER_FILE);
      const current = await readFile(path, 'utf8').catch(() => undefined);
      if (current !== CONSOLE_WORKER_SOURCE) {
        await mkdir(this.options.scriptDir, { recursive: true, mode: 0o700 });
        await writeFileAtomic(path, CONSOLE_WORKER_SOURCE, { mode: 0o644 });
      }
      return path;
    })();
    this.scriptPath.catch(() => {
      this.scriptPath = undefined;
    });
    return this.scriptPath;
  }
}

/**
 * How two answers to the same task differ (exit status, then stdout, then stderr), or
 * undefined when they are byte-identical.
 *
 * @param process - the rake process's answer
 * @param worker - the worker's answer
 */
export function describeDifference(process: RakeOutput, worker: RakeOutput): string | undefined {
  if (process.exitCode !== worker.exitCode) return `exit status ${process.exitCode} as a process, ${worker.exitCode} in the worker`;
  for (const stream of ['stdout', 'stderr'] as const) {
    const a = process[stream];
    const b = worker[stream];
    if (a === b) continue;
    let at = 0;
    while (at < a.length && at < b.length && a[at] === b[at]) at += 1;
    const line = a.slice(0, at).split('\n').length;
    return `${stream} differs at line ${line}: ${JSON.stringify(a.slice(at, at + 60))} as a process, ${JSON.stringify(b.slice(at, at + 60))} in the worker`;
  }
  return undefined;
}
