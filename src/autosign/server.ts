/**
 * The daemon's end of the policy hand-off: a Unix socket that `espm autosign` (run by
 * puppetserver's user) connects to with one CSR and gets one decision back (protocol.ts).
 *
 * Who can connect: the socket's directory must already exist, owned by the daemon's user
 * (root), not writable by group or others — espm_setup makes it root:<puppetserver's group>
 * 0750 — and the socket is made 0660 with that directory's group. The state directory (0700
 * root) stays out of reach; the daemon stays the ledger's only writer; a stopped daemon leaves
 * no socket to answer, and `espm autosign` then refuses.
 *
 * Source of truth: docs/design.md ("The hand-off"); puppetserver runs the policy as its own
 * user: docs/reference/modern-puppet.md ("Who runs the ENC and the autosign executable").
 *
 * @packageDocumentation
 */
import { chmod, chown, lstat, stat, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../logger.js';
import { AUTOSIGN_REQUEST_MAX_BYTES, AUTOSIGN_TIMEOUT_MS, parseAutosignRequest, type AutosignAnswer } from './protocol.js';

/** The service's decision for one CSR (src/service/tokens.ts `TokenService.decide`). */
export type Decide = (certname: string, csr: string) => Promise<{ decision: 'sign' } | { decision: 'refuse'; reason: string } | { decision: 'fallback' }>;

/** Options of {@link listenAutosign}. */
export interface AutosignServerOptions {
  /** Absolute path of the socket (`[autosign] socket`). */
  socket: string;
  /** The site's previous policy executable (`[autosign] fallback`), or undefined: refuse what espm holds nothing for. */
  fallback: string | undefined;
  /** How long the fallback may run, ms (`[autosign] fallback_timeout`). */
  fallbackTimeoutMs: number;
  /** The decision (the token service). */
  decide: Decide;
  /** Decisions (certname, decision, reason); never a CSR's challenge. */
  logger?: Logger;
}

/** A listening hand-off socket. */
export interface AutosignServer {
  /** The socket's path. */
  readonly socket: string;
  /** Stops listening and removes the socket (in-flight answers finish). */
  close(): Promise<void>;
}

/**
 * Checks the socket's directory: a directory owned by this process's user, not writable by
 * group or others.
 *
 * @returns its group id (the socket gets it)
 * @throws Error saying what is wrong
 */
async function checkDirectory(directory: string): Promise<number> {
  const info = await stat(directory).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`the autosign socket's directory ${directory} is missing (${err.code}): espm_setup makes it (root, puppetserver's group, 0750)`);
  });
  if (!info.isDirectory()) throw new Error(`${directory} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) throw new Error(`${directory} must be owned by uid ${uid} (it is owned by ${info.uid})`);
  if ((info.mode & 0o022) !== 0) throw new Error(`${directory} must not be writable by group or others (mode ${(info.mode & 0o777).toString(8)})`);
  return info.gid;
}

/** Removes a socket left by a daemon that died; anything else at the path is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (info === undefined) return;
  if (!info.isSocket()) throw new Error(`${path} exists and is not a socket`);
  await unlink(path);
}

function answerFor(decision: Awaited<ReturnType<Decide>>, options: AutosignServerOptions): AutosignAnswer {
  if (decision.decision !== 'fallback') return decision;
  if (options.fallback === undefined) return { decision: 'refuse', reason: 'espm holds no signing token for this certname and [autosign] fallback is not set' };
  return { decision: 'fallback', fallback: options.fallback, timeout_ms: options.fallbackTimeoutMs };
}

function serve(connection: Socket, options: AutosignServerOptions): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let answered = false;
  connection.setTimeout(AUTOSIGN_TIMEOUT_MS, () => connection.destroy());
  connection.on('error', () => connection.destroy());
  const reply = (answer: AutosignAnswer): void => {
    answered = true;
    connection.end(`${JSON.stringify(answer)}\n`);
  };
  connection.on('data', (chunk: Buffer) => {
    if (answered) return;
    size += chunk.length;
    if (size > AUTOSIGN_REQUEST_MAX_BYTES) {
      reply({ decision: 'refuse', reason: `the request is larger than ${AUTOSIGN_REQUEST_MAX_BYTES} bytes` });
      return;
    }
    chunks.push(chunk);
    if (!chunk.includes(0x0a)) return;
    const line = Buffer.concat(chunks).toString('utf8').split('\n')[0]!;
    const request = parseAutosignRequest(line);
    if (request === undefined) {
      reply({ decision: 'refuse', reason: 'not an autosign request' });
      return;
    }
    answered = true;
    options.decide(request.certname, request.csr).then(
      (decision) => {
        const answer = answerFor(decision, options);
        options.logger?.info({ certname: request.certname, decision: answer.decision, ...(answer.decision === 'refuse' ? { reason: answer.reason } : {}) }, 'autosign decision');
        connection.end(`${JSON.stringify(answer)}\n`);
      },
      (err: unknown) => {
        options.logger?.error({ certname: request.certname, error: (err as Error).message }, 'autosign decision failed: refused');
        connection.end(`${JSON.stringify({ decision: 'refuse', reason: 'espm could not decide (see its log)' } satisfies AutosignAnswer)}\n`);
      },
    );
  });
}

/**
 * Listens on the hand-off socket.
 *
 * @returns the listening server
 * @throws Error when the directory is missing or unsafe, or something other than a socket is
 *   at the path (nothing listens then: every CSR is refused)
 */
export async function listenAutosign(options: AutosignServerOptions): Promise<AutosignServer> {
  const gid = await checkDirectory(dirname(options.socket));
  await removeStaleSocket(options.socket);
  const server: Server = createServer({ allowHalfOpen: false }, (connection) => serve(connection, options));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.socket, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(options.socket, 0o660);
  await chown(options.socket, process.getuid?.() ?? 0, gid);
  options.logger?.info({ socket: options.socket }, 'autosign socket listening');
  return {
    socket: options.socket,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void unlink(options.socket).catch(() => undefined);
      }),
  };
}
