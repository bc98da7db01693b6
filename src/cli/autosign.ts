/**
 * `espm autosign [-s SOCKET] CERTNAME` (CSR PEM on stdin): the master's policy executable for
 * token signing (puppet.conf `[server] autosign` names the small wrapper espm_setup writes;
 * puppetserver passes the certname as the only argument and the CSR on stdin, and signs when
 * the exit status is 0). docs/design.md "Certificates: …token signing", "The hand-off".
 *
 * It decides nothing itself: it asks the daemon over its Unix socket (src/autosign/protocol.ts)
 * and exits 0 only on the daemon's `sign`. For a certname espm holds nothing for, the daemon
 * names the site's previous policy (`[autosign] fallback`), run here as an argv (no shell)
 * with the certname, the CSR on its stdin, a timeout, and its stdout, stderr and exit status
 * passed through. Daemon stopped, socket unreachable, no answer in time, a bad answer → exit 1
 * (refused), never 0. Nothing secret is printed (puppetserver logs stderr at WARN).
 *
 * Run by puppetserver's user for every CSR: loads only node's own modules and the protocol —
 * no commander, config, logger, express or X.509 library.
 *
 * @packageDocumentation
 */
import { readFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import { AUTOSIGN_ANSWER_MAX_BYTES, AUTOSIGN_TIMEOUT_MS, parseAutosignAnswer, type AutosignAnswer } from '../autosign/protocol.js';
import { runPassthrough } from '../exec/passthrough.js';

/** Where the daemon listens by default (`[autosign] socket`, src/config/defaults.ts). */
const DEFAULT_SOCKET = '/opt/espm/autosign/espm.sock';
/** Largest CSR read from stdin, bytes (as src/ca/csr.ts CSR_MAX_BYTES). */
const STDIN_MAX_BYTES = 64 * 1024;

/** Exit status: signed. */
export const EXIT_SIGN = 0;
/** Exit status: refused (also for any failure: a policy never signs by accident). */
export const EXIT_REFUSE = 1;
/** Exit status for a bad command line (not 0: refused too). */
export const EXIT_USAGE = 2;

const USAGE = 'usage: espm autosign [-s SOCKET] CERTNAME   (the CSR PEM on stdin)';

function write(fd: number, text: string): void {
  const buffer = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
}

function parseCommandLine(args: readonly string[]): { socket: string; certname: string } | string {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { socket: { type: 'string', short: 's' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    return (err as Error).message;
  }
  if (parsed.values.help === true) return 'help';
  const socket = parsed.values.socket ?? DEFAULT_SOCKET;
  if (!socket.startsWith('/')) return '-s needs an absolute path';
  if (parsed.positionals.length !== 1) return `expected exactly one CERTNAME, got ${parsed.positionals.length}`;
  return { socket, certname: parsed.positionals[0]! };
}

/** Asks the daemon; resolves with its answer, or a refusal saying why there is none. */
export function askDaemon(socket: string, certname: string, csr: string): Promise<AutosignAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (answer: AutosignAnswer): void => {
      if (done) return;
      done = true;
      connection.destroy();
      resolve(answer);
    };
    const connection = connect(socket);
    connection.setTimeout(AUTOSIGN_TIMEOUT_MS, () => finish({ decision: 'refuse', reason: `the espm daemon did not answer within ${AUTOSIGN_TIMEOUT_MS / 1000} s` }));
    connection.on('error', (err: NodeJS.ErrnoException) => finish({ decision: 'refuse', reason: `cannot reach the espm daemon at ${socket} (${err.code ?? err.message}): is it running?` }));
    connection.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > AUTOSIGN_ANSWER_MAX_BYTES) finish({ decision: 'refuse', reason: 'the espm daemon answered too much' });
      else chunks.push(chunk);
    });
    connection.on('end', () => {
      const answer = parseAutosignAnswer(Buffer.concat(chunks).toString('utf8').split('\n')[0] ?? '');
      finish(answer ?? { decision: 'refuse', reason: 'the espm daemon gave no answer' });
    });
    connection.write(`${JSON.stringify({ certname, csr })}\n`);
  });
}

/**
 * Runs `espm autosign`.
 *
 * @param args - the arguments after `autosign`
 * @param stdin - the CSR (default: read from fd 0, at most 64 KiB)
 * @returns the exit status: 0 sign, 1 refuse, 2 bad command line, or the fallback's
 */
export async function runAutosign(args: readonly string[], stdin?: string): Promise<number> {
  const parsed = parseCommandLine(args);
  if (parsed === 'help') {
    write(1, `${USAGE}\nThe master's policy executable: exit 0 only for a CSR matching an espm signing token; other certnames go to [autosign] fallback.\n`);
    return 0;
  }
  if (typeof parsed === 'string') {
    write(2, `espm autosign: ${parsed}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  let csr: string;
  try {
    csr = stdin ?? readFileSync(0, 'utf8');
  } catch (err) {
    write(2, `espm autosign: cannot read the CSR from stdin: ${(err as Error).message}\n`);
    return EXIT_REFUSE;
  }
  if (Buffer.byteLength(csr) > STDIN_MAX_BYTES) {
    write(2, `espm autosign: refused ${parsed.certname}: the CSR is larger than ${STDIN_MAX_BYTES} bytes\n`);
    return EXIT_REFUSE;
  }
  const answer = await askDaemon(parsed.socket, parsed.certname, csr);
  if (answer.decision === 'sign') return EXIT_SIGN;
  if (answer.decision === 'refuse') {
    write(2, `espm autosign: refused ${parsed.certname}: ${answer.reason}\n`);
    return EXIT_REFUSE;
  }
  const outcome = runPassthrough([answer.fallback, parsed.certname], answer.timeout_ms, csr);
  if (!outcome.ran) {
    write(2, `espm autosign: the fallback policy: ${outcome.reason}; refused\n`);
    return EXIT_REFUSE;
  }
  return outcome.status;
}
