/**
 * The one way espm runs a long-lived helper process (the console worker): like
 * {@link ExecaCommandRunner} — execa, an argv array (never a shell), an absolute binary and
 * the same scrubbed environment ({@link commandEnvironment}) — but with pipes on stdin and
 * stdout for a request/answer protocol spoken by the caller, and killed on request.
 *
 * A worker has no run time limit of its own: whoever talks to it sets a deadline on every
 * exchange and calls {@link WorkerProcess.kill} when it passes. execa's `cleanup` kills it
 * when espm exits.
 *
 * @packageDocumentation
 */
import { isAbsolute } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../logger.js';
import { commandEnvironment, KILL_GRACE_MS } from './command.js';

/** How much of a worker's stderr is kept (its last bytes), for diagnostics. */
export const WORKER_STDERR_TAIL_BYTES = 8 * 1024;

/** A long-lived helper process to start. */
export interface WorkerSpec {
  /** Absolute path of the binary (from config). */
  file: string;
  /** Arguments, one element each; never parsed by a shell. */
  args: readonly string[];
  /** Working directory; default espm's. */
  cwd?: string;
  /** Variables set for the worker on top of the allow-list of {@link commandEnvironment}. */
  env?: Readonly<Record<string, string>>;
  /** Receives everything the worker writes on its stdout, in order. */
  onOutput: (chunk: Buffer) => void;
}

/** How a worker ended. */
export interface WorkerExit {
  /** Exit status, when it exited. */
  exitCode: number | undefined;
  /** Signal name (`SIGKILL`), when a signal ended it. */
  signal: string | undefined;
  /** Why it could not be started at all (`ENOENT`, …), when it could not. */
  startError: string | undefined;
}

/** A running (or ended) worker process. */
export interface WorkerProcess {
  /** Its process id; undefined when it could not be started. */
  readonly pid: number | undefined;
  /** Settles (never rejects) when the process has ended. */
  readonly exited: Promise<WorkerExit>;
  /** True once the process has ended. */
  readonly hasExited: boolean;
  /**
   * Writes to the worker's stdin.
   *
   * @returns false when its stdin is already closed (nothing was written)
   */
  send(data: Uint8Array): boolean;
  /** Closes the worker's stdin (a well-behaved worker then exits). */
  closeInput(): void;
  /** The last {@link WORKER_STDERR_TAIL_BYTES} of what it wrote on stderr. */
  stderrTail(): string;
  /**
   * SIGTERM now, SIGKILL {@link KILL_GRACE_MS} later if it is still there. Idempotent; does
   * nothing for a worker that has ended or was never started.
   */
  kill(): void;
}

/** Starts workers. Adapters take one, so tests can count or fake what is spawned. */
export interface WorkerSpawner {
  /**
   * Starts a worker. Never throws for a binary that cannot be run: the returned process
   * ends at once with {@link WorkerExit.startError} set.
   *
   * @throws TypeError when `file` is not absolute (nothing is run)
   */
  spawn(spec: WorkerSpec): WorkerProcess;
}

/**
 * Starts a worker process on execa: stdin and stdout are pipes, stderr is kept (its tail),
 * the environment is {@link commandEnvironment}'s (nothing else of espm's).
 *
 * @param spec - binary, arguments, cwd, extra variables, stdout listener
 * @param logger - start and end are logged at debug level (binary, pid, status)
 * @throws TypeError when `spec.file` is not absolute (nothing is run)
 */
export function spawnWorker(spec: WorkerSpec, logger?: Logger): WorkerProcess {
  if (!isAbsolute(spec.file)) throw new TypeError(`worker must be an absolute path: ${spec.file}`);
  const subprocess = execa(spec.file, [...spec.args], {
    cwd: spec.cwd,
    env: commandEnvironment(spec.env),
    extendEnv: false,
    shell: false,
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    encoding: 'buffer',
    reject: false,
    cleanup: true,
    killSignal: 'SIGTERM',
    forceKillAfterDelay: KILL_GRACE_MS,
  });
  let tail = Buffer.alloc(0);
  let ended = false;
  subprocess.stdout?.on('data', (chunk: Buffer) => spec.onOutput(chunk));
  subprocess.stderr?.on('data', (chunk: Buffer) => {
    tail = Buffer.concat([tail, chunk]);
    if (tail.length > WORKER_STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - WORKER_STDERR_TAIL_BYTES);
  });
  // A worker that dies leaves its stdin broken: writes then fail with EPIPE, which the
  // caller learns from `exited`, not from an unhandled error event.
  subprocess.stdin?.on('error', () => undefined);
  logger?.debug({ command: spec.file, pid: subprocess.pid }, 'worker started');
  const exited: Promise<WorkerExit> = subprocess.then(
    (result) => {
      ended = true;
      const code = (result as { code?: string }).code;
      const startError = result.exitCode === undefined && result.signal === undefined ? (code ?? result.shortMessage ?? 'failed to start') : undefined;
      const exit = { exitCode: result.exitCode, signal: result.signal, startError };
      logger?.debug({ command: spec.file, pid: subprocess.pid, ...exit }, 'worker ended');
      return exit;
    },
    (err: unknown) => {
      ended = true;
      return { exitCode: undefined, signal: undefined, startError: (err as Error).message };
    },
  );
  return {
    pid: subprocess.pid,
    exited,
    get hasExited() {
      return ended;
    },
    send(data) {
      const stdin = subprocess.stdin;
      if (ended || stdin === null || stdin.destroyed || stdin.writableEnded) return false;
      stdin.write(data);
      return true;
    },
    closeInput() {
      const stdin = subprocess.stdin;
      if (stdin !== null && !stdin.destroyed && !stdin.writableEnded) stdin.end();
    },
    stderrTail: () => tail.toString('utf8'),
    kill() {
      // No pid: it was never started, so there is nothing to signal (and execa must not be
      // asked to: its forced kill would then reach espm's own process group).
      if (!ended && subprocess.pid !== undefined) subprocess.kill();
    },
  };
}

/** The real spawner, on execa ({@link spawnWorker}). */
export class ExecaWorkerSpawner implements WorkerSpawner {
  /** @param logger - each worker's start and end are logged at debug level */
  constructor(private readonly logger?: Logger) {}

  spawn(spec: WorkerSpec): WorkerProcess {
    return spawnWorker(spec, this.logger);
  }
}
