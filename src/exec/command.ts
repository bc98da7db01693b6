/**
 * The one way espm runs a command: execa with an argv array (never a shell, never a string
 * built from input), an absolute binary, a timeout on every call (kill on expiry), and an
 * environment rebuilt from a short allow-list so nothing of espm's own environment (e.g.
 * `name=`, `classes=`, which the console's rake tasks read) reaches the tool.
 *
 * @packageDocumentation
 */
import { constants } from 'node:os';
import { isAbsolute } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../logger.js';

/** Variables of espm's environment passed on to commands; everything else is dropped. */
export const PASSED_ENVIRONMENT = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'USER', 'LOGNAME', 'TMPDIR'] as const;

/** How long a command gets after SIGTERM (sent at its timeout) before SIGKILL, ms. */
export const KILL_GRACE_MS = 2000;
/** Largest stdout/stderr kept per command, bytes. */
export const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/** A command to run. */
export interface CommandSpec {
  /** Absolute path of the binary (from config). */
  file: string;
  /** Arguments, one element each; never parsed by a shell. */
  args: readonly string[];
  /** Working directory; default espm's. */
  cwd?: string;
  /** Kill the command after this long, ms. Required: nothing runs without a timeout. */
  timeoutMs: number;
  /** Variables set for the command on top of {@link PASSED_ENVIRONMENT}. */
  env?: Readonly<Record<string, string>>;
}

/** What a finished command left behind. A non-zero exit is a result, not an error. */
export interface CommandResult {
  /** Exit status (signals are reported as 128 + signal number). */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Wall time, ms. */
  durationMs: number;
}

/** Base class of the errors of {@link CommandRunner.run}. `command` is the binary's path. */
export class CommandError extends Error {
  /**
   * @param command - absolute path of the binary
   * @param message - what went wrong
   * @param stdout - what it printed before failing, if anything
   * @param stderr - same for stderr
   */
  constructor(
    readonly command: string,
    message: string,
    readonly stdout = '',
    readonly stderr = '',
  ) {
    super(message);
  }
}

/** The command ran longer than its timeout and was killed. */
export class CommandTimeoutError extends CommandError {
  override readonly name = 'CommandTimeoutError';
}

/** The command could not be started (binary missing, not executable, cwd missing). */
export class CommandStartError extends CommandError {
  override readonly name = 'CommandStartError';
}

/** Runs commands. Adapters take one, so tests can count or fake what is spawned. */
export interface CommandRunner {
  /**
   * Runs a command to completion.
   *
   * @returns exit status, stdout, stderr, duration (a non-zero exit is returned, not thrown)
   * @throws {@link CommandTimeoutError} when it was killed at `timeoutMs`
   * @throws {@link CommandStartError} when it could not be started
   * @throws TypeError when `file` is not absolute or `timeoutMs` not positive (nothing is run)
   */
  run(spec: CommandSpec): Promise<CommandResult>;
}

/** The environment a command gets: the allow-list of espm's, then the spec's own. */
export function commandEnvironment(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASSED_ENVIRONMENT) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

/** The real runner, on execa. */
export class ExecaCommandRunner implements CommandRunner {
  /** @param logger - each command is logged at debug level: binary, argument count, exit, ms */
  constructor(private readonly logger?: Logger) {}

  async run(spec: CommandSpec): Promise<CommandResult> {
    if (!isAbsolute(spec.file)) throw new TypeError(`command must be an absolute path: ${spec.file}`);
    if (!(spec.timeoutMs > 0)) throw new TypeError(`command needs a positive timeout: ${spec.file}`);
    const started = process.hrtime.bigint();
    const result = await execa(spec.file, [...spec.args], {
      cwd: spec.cwd,
      env: commandEnvironment(spec.env),
      extendEnv: false,
      shell: false,
      stdin: 'ignore',
      timeout: spec.timeoutMs,
      killSignal: 'SIGTERM',
      forceKillAfterDelay: KILL_GRACE_MS,
      maxBuffer: MAX_OUTPUT_BYTES,
      reject: false,
      stripFinalNewline: false,
      encoding: 'utf8',
    });
    const durationMs = Number((process.hrtime.bigint() - started) / 1_000_000n);
    const stdout = typeof result.stdout === 'string' ? result.stdout : '';
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    if (result.timedOut) {
      this.logger?.warn({ command: spec.file, ms: durationMs, timeout_ms: spec.timeoutMs }, 'command timed out and was killed');
      throw new CommandTimeoutError(spec.file, `${spec.file} did not finish within ${spec.timeoutMs} ms and was killed`, stdout, stderr);
    }
    const startFailure = (result as { code?: string }).code;
    if (result.exitCode === undefined && result.signal === undefined) {
      throw new CommandStartError(
        spec.file,
        `cannot run ${spec.file}: ${startFailure ?? result.shortMessage ?? 'failed to start'}`,
      );
    }
    const exitCode = result.exitCode ?? 128 + signalNumber(result.signal);
    this.logger?.debug({ command: spec.file, args: spec.args.length, exit: exitCode, ms: durationMs }, 'command finished');
    return { exitCode, stdout, stderr, durationMs };
  }
}

/** The number of a signal by name (`SIGTERM` → 15), from the OS's own table. */
function signalNumber(signal: string | undefined): number {
  if (signal === undefined) return 0;
  return (constants.signals as Record<string, number | undefined>)[signal] ?? 0;
}
