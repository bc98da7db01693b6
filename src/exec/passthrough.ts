/**
 * Running a command whose output is the caller's own answer: `espm enc` hands a name it does
 * not own to the site's previous ENC, and puppetserver must see that ENC's stdout, stderr and
 * exit status unchanged. The one place outside {@link ExecaCommandRunner} where espm starts a
 * process, kept apart because `espm enc` runs for every catalog compile and must not load
 * execa: an argv (never a shell), an absolute binary, a timeout, the standard streams
 * inherited.
 *
 * Source: docs/design.md "`enc`" (the fallback is passed through unchanged).
 *
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import { isAbsolute } from 'node:path';

/** How a passed-through command ended. */
export type PassthroughOutcome =
  /** it ran to its end: its exit status (a signal counts as 1) */
  | { ran: true; status: number }
  /** it could not be started, or was killed at its timeout: why */
  | { ran: false; reason: string };

/**
 * Runs `argv` with this process's stdin, stdout and stderr, synchronously.
 *
 * @param argv - absolute binary, then its arguments (never a shell)
 * @param timeoutMs - killed (SIGKILL) after this many ms
 * @param input - written to its stdin instead of inheriting ours (`espm autosign` has read
 *   puppetserver's CSR already and hands it on unchanged)
 * @returns its exit status, or why it did not run to its end
 * @throws Error when `argv` is empty or its binary is not an absolute path (nothing is run)
 */
export function runPassthrough(argv: readonly string[], timeoutMs: number, input?: string): PassthroughOutcome {
  const [command, ...args] = argv;
  if (command === undefined || !isAbsolute(command)) throw new Error(`not an absolute command: ${JSON.stringify(command ?? '')}`);
  const result =
    input === undefined
      ? spawnSync(command, args, { stdio: 'inherit', shell: false, timeout: timeoutMs, killSignal: 'SIGKILL' })
      : spawnSync(command, args, { stdio: ['pipe', 'inherit', 'inherit'], input, shell: false, timeout: timeoutMs, killSignal: 'SIGKILL' });
  if (result.error !== undefined) {
    const timedOut = (result.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    return { ran: false, reason: timedOut ? `${command} did not finish within ${timeoutMs / 1000} s and was killed` : `cannot run ${command}: ${result.error.message}` };
  }
  return { ran: true, status: result.status ?? 1 };
}
