/**
 * The one HTTPS client espm uses to talk to Puppet services (puppetserver's CA API; later the
 * Node Classifier, PuppetDB, `environment_classes`), on undici.
 *
 * - identity: a TLS client certificate (the master's `hostcert`/`hostprivkey`, see
 *   `identity.ts`) or an RBAC token sent as `X-Authentication`; the server is verified
 *   against the given CA bundle only (`localcacert`), TLS ≥ 1.2;
 * - a per-request timeout covering connect, headers and body (ms);
 * - a response-size cap (bytes): over it the connection is dropped and the call fails;
 * - retries, bounded with a small backoff, only for idempotent reads (GET/HEAD) on connection
 *   errors and 502/503/504 answers — never for POST/PUT/DELETE;
 * - every error a {@link PuppetHttpError} naming the service and the method + path.
 *
 * undici is imported at the first request, not with this module: a daemon whose backends speak
 * to no Puppet service over HTTPS (the PE 2.x console with `puppet cert`, the sandbox) never
 * holds it (idle RSS, issue #8; test/lazy-modules.test.ts).
 *
 * Source of truth: docs/design.md ("One Puppet HTTPS client").
 *
 * @packageDocumentation
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent, request as undiciRequest } from 'undici';
import { PuppetHttpError } from './errors.js';

/** HTTP methods the client sends. GET and HEAD are the idempotent reads it may retry. */
export type PuppetHttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

/** Default response-size cap, bytes (a certificate bundle or a status is a few KiB). */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
/** Default number of retries of an idempotent read (so at most 3 attempts). */
export const DEFAULT_READ_RETRIES = 2;
/** Default first backoff before a retry, ms (doubled per retry). */
export const DEFAULT_RETRY_DELAY_MS = 100;
/** Default idle time of a keep-alive connection, ms (well under Jetty's 30 s idle timeout). */
export const DEFAULT_KEEP_ALIVE_MS = 4_000;
/** Default connections kept to one service at most. */
export const DEFAULT_CONNECTIONS = 4;
/** Statuses after which an idempotent read is retried (a proxy's or a starting server's). */
const RETRY_STATUSES = new Set([502, 503, 504]);

/** TLS material, PEM strings (not paths). */
export interface PuppetTlsIdentity {
  /** CA bundle the server's certificate is verified against (`localcacert`). */
  ca: string;
  /** Client certificate (`hostcert`); omit for token mode. */
  cert?: string;
  /** Its private key (`hostprivkey`). Secret: never logged. */
  key?: string;
}

/** Options of {@link PuppetHttpClient}. */
export interface PuppetHttpClientOptions {
  /** `https://HOST:PORT[/base]`: request paths are appended to it. HOST is the name the server's certificate is verified for. */
  baseUrl: string;
  /** The service's name, first in every error: `Puppet Server CA`, `Node Classifier`, `PuppetDB`. */
  service: string;
  /** TLS trust and (unless `token`) client identity. */
  tls: PuppetTlsIdentity;
  /** RBAC token, sent as `X-Authentication` (then no client certificate is needed). Secret. */
  token?: string;
  /** Per-request timeout, ms: connect, headers and the whole body. */
  timeoutMs: number;
  /** Response-size cap, bytes; default {@link DEFAULT_MAX_RESPONSE_BYTES}. */
  maxResponseBytes?: number;
  /** Retries of an idempotent read; default {@link DEFAULT_READ_RETRIES}. */
  readRetries?: number;
  /** First backoff, ms, doubled per retry; default {@link DEFAULT_RETRY_DELAY_MS}. */
  retryDelayMs?: number;
  /** Keep-alive idle time, ms; default {@link DEFAULT_KEEP_ALIVE_MS}. */
  keepAliveMs?: number;
  /** Connections at most; default {@link DEFAULT_CONNECTIONS}. */
  connections?: number;
}

/** A request body: text and its content type. */
export interface PuppetHttpBody {
  text: string;
  /** e.g. `application/json`, `text/plain` */
  type: string;
}

/** An answer, whatever its status: the adapter decides what a status means. */
export interface PuppetHttpAnswer {
  status: number;
  /** Body as UTF-8 text, at most the size cap. */
  body: string;
  /** Response headers, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
}

/** Error codes of a connection that never got established: nothing was sent. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** The code of an error or of its cause (undici wraps socket errors). */
function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : '';
  return code;
}

/** Whether `err` comes from the TLS handshake or certificate verification. */
function isTlsError(err: unknown): boolean {
  const code = codeOf(err);
  const message = `${(err as Error).message ?? ''} ${(err as { cause?: Error }).cause?.message ?? ''}`;
  return /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH)/.test(code) || /certificate|handshake|alert/i.test(message);
}

/** undici's connection pool for one service and its request function (imported at first use). */
interface UndiciPool {
  agent: Agent;
  request: typeof undiciRequest;
}

/** Our own deadline fired. */
class Deadline extends Error {}
/** The answer grew over the cap. */
class Oversize extends Error {}

/**
 * An HTTPS client for one Puppet service. Connections are kept alive and shared; `close()`
 * drops them.
 */
export class PuppetHttpClient {
  /** The service's name, as errors start. */
  readonly service: string;
  private readonly base: URL;
  /** The pool being made or made (undici's import and one Agent), shared by every request. */
  private loaded: Promise<UndiciPool> | undefined;
  private readonly maxBytes: number;

  /**
   * @param options - base URL, service name, TLS material, token, timeout, caps
   * @throws {@link PuppetHttpError} `failed` when the base URL is not `https://`
   */
  constructor(private readonly options: PuppetHttpClientOptions) {
    this.service = options.service;
    this.base = new URL(options.baseUrl);
    if (this.base.protocol !== 'https:') {
      throw new PuppetHttpError('failed', options.service, 'configuration', `${options.baseUrl} is not an https:// URL`);
    }
    this.maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  /** The kept-alive connection pool, made (and undici imported) at the first request. */
  private pool(): Promise<UndiciPool> {
    this.loaded ??= import('undici').then(({ Agent, request }) => {
      const { options } = this;
      const { ca, cert, key } = options.tls;
      const agent = new Agent({
        connections: options.connections ?? DEFAULT_CONNECTIONS,
        keepAliveTimeout: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS,
        keepAliveMaxTimeout: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        connect: {
          ca,
          ...(options.token === undefined && cert !== undefined && key !== undefined ? { cert, key } : {}),
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
          // Our own per-request deadline (timeoutMs) covers the handshake: a silent server is a
          // `timeout`, as it always was, not a retried connection error.
          timeout: options.timeoutMs + 1_000,
        },
      });
      return { agent, request };
    });
    return this.loaded;
  }

  /** `https://HOST:PORT` of the service. */
  get origin(): string {
    return this.base.origin;
  }

  /**
   * Sends one request (retrying an idempotent read as described in the module comment).
   *
   * @param method - HTTP method
   * @param path - path below the base URL, starting with `/` (already URL-encoded)
   * @param body - request body, if any
   * @returns the answer, whatever its status (after the last retry for 502/503/504)
   * @throws {@link PuppetHttpError} `unavailable` (not reachable, TLS refused), `timeout` (no
   *   whole answer in time; a changing request whose connection broke), `failed` (over the
   *   size cap, anything else)
   */
  async request(method: PuppetHttpMethod, path: string, body?: PuppetHttpBody): Promise<PuppetHttpAnswer> {
    const fullPath = `${this.base.pathname.replace(/\/+$/, '')}${path}`;
    const what = `${method} ${fullPath}`;
    const idempotent = method === 'GET' || method === 'HEAD';
    const retries = idempotent ? (this.options.readRetries ?? DEFAULT_READ_RETRIES) : 0;
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= retries;
      let answer: PuppetHttpAnswer;
      try {
        answer = await this.once(method, fullPath, body);
      } catch (err) {
        const mapped = this.mapError(err, what, idempotent);
        if (last || mapped.failure !== 'unavailable' || isTlsError(err)) throw mapped;
        await sleep((this.options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS) * 2 ** attempt);
        continue;
      }
      if (last || !RETRY_STATUSES.has(answer.status)) return answer;
      await sleep((this.options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS) * 2 ** attempt);
    }
  }

  private async once(method: PuppetHttpMethod, path: string, body?: PuppetHttpBody): Promise<PuppetHttpAnswer> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    // The deadline is raced, not only signalled: undici may hold an abort until a TLS
    // handshake under way ends.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort(new Deadline());
        reject(new Deadline());
      }, this.options.timeoutMs);
    });
    const exchange = this.exchange(method, path, body, controller.signal);
    exchange.catch(() => undefined); // settled after the deadline: nobody waits for it
    try {
      return await Promise.race([exchange, deadline]);
    } catch (err) {
      if (controller.signal.aborted && !(err instanceof Oversize)) throw new Deadline();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async exchange(method: PuppetHttpMethod, path: string, body: PuppetHttpBody | undefined, signal: AbortSignal): Promise<PuppetHttpAnswer> {
    const headers: Record<string, string> = { accept: 'application/json, text/plain' };
    if (this.options.token !== undefined) headers['x-authentication'] = this.options.token;
    if (body !== undefined) headers['content-type'] = body.type;
    const { agent, request } = await this.pool();
    const res = await request(new URL(path, this.base.origin), {
      method,
      headers,
      dispatcher: agent,
      signal,
      ...(body === undefined ? {} : { body: body.text }),
    });
    const length = Number(res.headers['content-length'] ?? NaN);
    if (length > this.maxBytes) {
      res.body.destroy();
      throw new Oversize();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxBytes) {
        res.body.destroy();
        throw new Oversize();
      }
      chunks.push(chunk);
    }
    return { status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers };
  }

  private mapError(err: unknown, what: string, idempotent: boolean): PuppetHttpError {
    if (err instanceof PuppetHttpError) return err;
    const fail = (failure: 'failed' | 'timeout' | 'unavailable', detail: string): PuppetHttpError =>
      new PuppetHttpError(failure, this.service, what, detail);
    const code = codeOf(err);
    if (err instanceof Deadline || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return fail('timeout', `got no answer from ${this.base.host} within ${this.options.timeoutMs / 1000} s`);
    }
    if (err instanceof Oversize) return fail('failed', `the answer exceeds ${this.maxBytes} bytes; connection dropped`);
    const reason = `${code || 'error'}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`;
    if (UNREACHABLE.has(code) || isTlsError(err)) return fail('unavailable', `cannot reach ${this.base.origin}: ${reason}`);
    if (!idempotent) {
      return fail('timeout', `the connection to ${this.base.host} broke while the request was under way (${reason}); the outcome is unknown`);
    }
    return fail('unavailable', `the connection to ${this.base.origin} broke (${reason})`);
  }

  /** Closes the connections (waits for requests under way). */
  async close(): Promise<void> {
    await (await this.settledPool())?.close();
  }

  /** Drops the connections at once (requests under way fail). */
  async destroy(): Promise<void> {
    await (await this.settledPool())?.destroy();
  }

  /** The pool if one was made or is being made (undefined when no request was ever sent). */
  private async settledPool(): Promise<Agent | undefined> {
    if (this.loaded === undefined) return undefined;
    return (await this.loaded).agent;
  }
}
