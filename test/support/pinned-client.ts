/**
 * Test support: the platform's HTTPS client of espm, pinning espm's certificate — the PEM
 * espm_setup printed is the ONLY trusted CA, as the cloud platform is configured
 * (docs/design.md, "HTTP contract v1"). One new TLS connection per call (`agent: false`):
 * nothing is kept alive across espm's SIGTERM drain. Used by the end-to-end test and the demo.
 *
 * Never logs anything: callers decide what of an answer to print (a certificate answer holds a
 * private key).
 *
 * @packageDocumentation
 */
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';

/** One answer of espm, as the platform sees it. */
export interface PinnedAnswer {
  /** HTTP status. */
  status: number;
  headers: IncomingHttpHeaders;
  /** The JSON body (`{}` when empty; `{ unparsed: <first 200 characters> }` when not JSON). */
  body: Record<string, unknown>;
  /** SHA-256 fingerprint (`AB:CD:…`) of the certificate espm presented. */
  peerFingerprint: string;
  /** Request sent → body read, ms. */
  ms: number;
}

/** Where espm listens and what the platform was told by espm_setup. */
export interface PinnedClientOptions {
  /** espm's port on `host`. */
  port: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** espm's certificate (PEM): the only trusted CA. */
  certificate: string;
  /** The preshared key: sent as `Authorization: Bearer <psk>` on `/v1/` paths only. */
  psk: string;
  /** A call without an answer within this long fails, ms (default 180 000). */
  timeoutMs?: number;
}

/** A call of the platform: method, path (with query), optional JSON body. */
export type PinnedCall = (method: string, path: string, body?: unknown) => Promise<PinnedAnswer>;

/**
 * The platform's client of one espm.
 *
 * @param options - port, pinned certificate, PSK
 * @returns a function making one call per new TLS connection; it rejects (`<METHOD> <path>:
 *   <reason>`) when the TLS handshake fails — e.g. `self-signed certificate` when espm presents
 *   another certificate than the pinned one —, on a socket error, or after `timeoutMs`
 */
export function pinnedClient(options: PinnedClientOptions): PinnedCall {
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.timeoutMs ?? 180_000;
  return (method, path, body) => {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        {
          host,
          port: options.port,
          path,
          method,
          ca: options.certificate,
          agent: false,
          timeout: timeoutMs,
          headers: {
            ...(path.startsWith('/v1/') ? { authorization: `Bearer ${options.psk}` } : {}),
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const peerFingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            let parsed: Record<string, unknown> = {};
            if (text !== '') {
              try {
                parsed = JSON.parse(text) as Record<string, unknown>;
              } catch {
                parsed = { unparsed: text.slice(0, 200) };
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, peerFingerprint, ms: Date.now() - started });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
      req.on('error', (err) => reject(new Error(`${method} ${path}: ${err.message}`)));
      req.end(payload);
    });
  };
}

/**
 * Throws unless the answer has the expected status. The message carries only the problem
 * fields (code, title, detail) — never a whole body, which may hold a private key.
 *
 * @param answer - espm's answer
 * @param expected - the status wanted
 * @param what - the call, for the message (e.g. `POST /v1/nodes web01.example.test`)
 * @throws Error `<what>: expected HTTP <expected>, got <status> {code, title, detail}`
 */
export function expectStatus(answer: PinnedAnswer, expected: number, what: string): void {
  if (answer.status !== expected) {
    const { code, title, detail } = answer.body as { code?: unknown; title?: unknown; detail?: unknown };
    throw new Error(`${what}: expected HTTP ${expected}, got ${answer.status} ${JSON.stringify({ code, title, detail })}`);
  }
}
