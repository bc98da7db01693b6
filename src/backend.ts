/**
 * What every backend adapter (classifier, CA) shares: the ways a backend call fails, the one
 * error type they raise, and running a backend command with its failures mapped to it.
 *
 * @packageDocumentation
 */
import {
  CommandStartError,
  CommandTimeoutError,
  type CommandResult,
  type CommandRunner,
  type CommandSpec,
} from './exec/command.js';

/** The ways a backend call can fail. */
export type BackendFailure =
  /** the tool ran and reported an error, or answered something unexpected */
  | 'failed'
  /** the tool was killed at its timeout: the outcome is unknown */
  | 'timeout'
  /**
   * the tool died while it was running (e.g. the console worker crashed mid-task): the
   * outcome is unknown, as after a timeout, but it is answered as a failure (502)
   */
  | 'interrupted'
  /** the tool could not be started (binary or directory missing) */
  | 'unavailable';

/** A backend call failed; `output` carries the tool's own words for the problem detail. */
export class BackendError extends Error {
  override readonly name: string = 'BackendError';
  /**
   * @param failure - which way it failed
   * @param message - what espm tried and what happened
   * @param output - the tool's output (trimmed, colour removed), if any
   */
  constructor(
    readonly failure: BackendFailure,
    message: string,
    readonly output = '',
  ) {
    super(message);
  }
}

/**
 * Whether a failed backend call may nevertheless have taken effect (`timeout`,
 * `interrupted`): ownership of what it was creating or deleting is then uncertain.
 *
 * @param failure - how the call failed
 */
export function outcomeUnknown(failure: BackendFailure): boolean {
  return failure === 'timeout' || failure === 'interrupted';
}

/**
 * Runs a backend command; a timeout or a failure to start becomes a {@link BackendError}
 * built by `makeError` (so each adapter raises its own subclass).
 *
 * @param runner - src/exec runner
 * @param spec - the command
 * @param what - what it does, for messages (`rake node:add`)
 * @param makeError - builds the adapter's error
 * @throws what `makeError` builds, for `timeout` (with what the tool printed) and `unavailable`
 */
export async function runBackendCommand(
  runner: CommandRunner,
  spec: CommandSpec,
  what: string,
  makeError: (failure: BackendFailure, message: string, output?: string) => BackendError,
): Promise<CommandResult> {
  try {
    return await runner.run(spec);
  } catch (err) {
    if (err instanceof CommandTimeoutError) {
      throw makeError('timeout', `${what} did not finish within ${spec.timeoutMs / 1000} s and was killed`, `${err.stdout}\n${err.stderr}`.trim());
    }
    if (err instanceof CommandStartError) throw makeError('unavailable', `cannot run ${what}: ${err.message}`);
    throw err;
  }
}

/**
 * Memoises an async look-up (a console's task set, a master's ssldir): the first call runs
 * it, later calls share its result; a failed look-up is forgotten so the next call retries.
 *
 * @param lookup - the look-up
 * @returns a function giving the (shared) result
 */
export function onceUntilFailure<T>(lookup: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => {
    if (result === undefined) {
      result = lookup();
      result.catch(() => {
        result = undefined;
      });
    }
    return result;
  };
}
