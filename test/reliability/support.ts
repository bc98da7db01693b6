/**
 * Helpers shared by the reliability tests (issue #6): raw HTTPS requests (any method, path,
 * header or byte sequence, from a chosen source address), waiting, and snapshots of the files
 * a spawn or a write would change.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { RunningEspm } from '../support/espm.js';

/** An answer as it came off the wire. */
export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body, or undefined when it is not JSON. */
  body: Record<string, unknown> | undefined;
}

/** A request as {@link rawRequest} sends it. */
export interface RawRequest {
  method: string;
  /** Sent as is (no normalisation, no encoding). */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body with `Transfer-Encoding: chunked` (no Content-Length). */
  chunked?: boolean;
  /** `Authorization` header value; default `Bearer <the espm's PSK>`; null = none. */
  authorization?: string | null;
  /** Source address of the connection (any 127.x.y.z works on Linux loopback). */
  localAddress?: string;
}

/**
 * Sends one request over a new TLS connection pinned to the espm's certificate.
 *
 * @param espm - the running espm (URL, certificate, PSK)
 * @param req - what to send
 */
export function rawRequest(espm: RunningEspm, req: RawRequest): Promise<RawAnswer> {
  const url = new URL(espm.url);
  const headers: Record<string, string> = { ...req.headers };
  const authorization = req.authorization === undefined ? espm.authorization : req.authorization;
  if (authorization !== null) headers['authorization'] = authorization;
  const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, 'utf8');
  if (body !== undefined && req.chunked !== true) headers['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method: req.method,
        path: req.path,
        headers,
        ca: espm.setup.plan.certificate,
        agent: false,
        ...(req.localAddress === undefined ? {} : { localAddress: req.localAddress }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> | undefined;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
        });
        res.on('error', reject);
      },
    );
    request.on('error', reject);
    if (body === undefined) {
      request.end();
    } else if (req.chunked === true) {
      // Several writes: Node then uses chunked transfer encoding.
      for (let i = 0; i < body.length; i += 8192) request.write(body.subarray(i, i + 8192));
      request.end();
    } else {
      request.end(body);
    }
  });
}

/** Polls `condition` every 25 ms until it holds. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A file's bytes, or the string `absent`. */
export async function fileBytes(path: string): Promise<Buffer | 'absent'> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
}

/** The ledger file of an espm (bytes or `absent`). */
export function ledgerBytes(espm: RunningEspm): Promise<Buffer | 'absent'> {
  return fileBytes(join(espm.config.state.dir, 'ledger.json'));
}

/** The ledger's entries, parsed (empty when there is no file). */
export async function ledgerEntries(espm: RunningEspm): Promise<Array<{ kind: string; name: string; state: string }>> {
  const bytes = await ledgerBytes(espm);
  if (bytes === 'absent') return [];
  return (JSON.parse(bytes.toString('utf8')) as { entries: Array<{ kind: string; name: string; state: string }> }).entries;
}

/** True when a process with that pid exists (and is not a zombie). */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 3 is the state; Z = zombie (dead, not yet reaped).
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
