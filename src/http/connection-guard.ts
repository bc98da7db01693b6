/**
 * Connections before anyone authenticates: limits enforced when a TCP connection is
 * accepted — `[server] allow`, concurrent connections per client address and in total —
 * before any TLS handshake is paid for; the timeouts of every phase of a connection
 * (handshake, first request, headers, whole request, keep-alive idle); and the counts of
 * what was refused or timed out, logged as a rate-limited summary (never one line per
 * connection) and reported by `GET /v1/status`.
 *
 * The PSK check, the authentication throttle and the express allow-list guard act once a
 * request is parsed; this module bounds what an unauthenticated peer can hold before that.
 *
 * Source of truth: docs/design.md ("HTTP contract"), docs/operations.md ("Security notes").
 *
 * @packageDocumentation
 */
import type { Server as HttpsServer } from 'node:https';
import { isIPv6, type BlockList, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ipKeyGenerator } from 'express-rate-limit';
import { DEFAULTS } from '../config/defaults.js';
import type { Logger } from '../logger.js';
import { MemoryReleaseTrigger } from './memory-release.js';

/** Connection limits and timeouts. Durations in ms. */
export interface ConnectionLimits {
  /** A TLS handshake must complete within this, ms (`[server] handshake_timeout`). */
  readonly handshakeTimeoutMs: number;
  /**
   * After the handshake, the first byte of the first request must arrive within this, ms
   * (`[server] first_request_timeout`).
   */
  readonly firstRequestTimeoutMs: number;
  /**
   * A request's complete headers must arrive within this, ms, counted from the request's
   * start (for a connection's first request: from the end of the handshake)
   * (`[server] headers_timeout`; Node's `headersTimeout`).
   */
  readonly headersTimeoutMs: number;
  /**
   * A whole request, headers and body, must arrive within this, ms (`[server] request_timeout`;
   * Node's `requestTimeout`). Not the time espm takes to answer. At least `headersTimeoutMs`.
   */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this, ms (`[server] keepalive_timeout`). */
  readonly keepAliveTimeoutMs: number;
  /** Concurrent connections, all addresses together (`[server] max_connections`). */
  readonly maxConnections: number;
  /**
   * Concurrent connections of one client address — an IPv6 client by its /56 — (`[server]
   * max_connections_per_address`). Keep it well below `maxConnections`: a flood from one
   * address then leaves room for the platform's.
   */
  readonly maxConnectionsPerAddress: number;
  /**
   * After the open connections reached this many and fell back to a quarter of it, the freed
   * memory is given back to the kernel once (src/http/memory-release.ts); connections, 0 = never
   * (`[server] release_memory_after`).
   */
  readonly releaseMemoryAfter: number;
}

/**
 * The defaults of {@link ConnectionLimits}, in ms: `[server]`'s defaults (src/config/defaults.ts,
 * the one place defaults live) — a handshake in 10 s, the first request within 5 s of it, a
 * request's headers in 10 s and all of it in 30 s, 5 s of idle keep-alive; 1024 connections,
 * 256 per address (bench/discovery.ts's burst opens 200 at once from one address); freed memory
 * released after 128 connections were open at once.
 */
export const CONNECTION_DEFAULTS: ConnectionLimits = {
  handshakeTimeoutMs: DEFAULTS.server.handshake_timeout * 1000,
  firstRequestTimeoutMs: DEFAULTS.server.first_request_timeout * 1000,
  headersTimeoutMs: DEFAULTS.server.headers_timeout * 1000,
  requestTimeoutMs: DEFAULTS.server.request_timeout * 1000,
  keepAliveTimeoutMs: DEFAULTS.server.keepalive_timeout * 1000,
  maxConnections: DEFAULTS.server.max_connections,
  maxConnectionsPerAddress: DEFAULTS.server.max_connections_per_address,
  releaseMemoryAfter: DEFAULTS.server.release_memory_after,
};

/**
 * The {@link ConnectionLimits} members of `limits` alone (e.g. of `Config['server']`), to
 * compare two configs' limits.
 */
export function connectionLimits(limits: ConnectionLimits): ConnectionLimits {
  const { handshakeTimeoutMs, firstRequestTimeoutMs, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, releaseMemoryAfter } = limits;
  return { handshakeTimeoutMs, firstRequestTimeoutMs, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, releaseMemoryAfter };
}

/** How often Node checks the headers and request timeouts of open connections, ms. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/** Default interval of the refusal summary log line, ms. */
export const SUMMARY_INTERVAL_MS = 10_000;

/** Most distinct addresses named in one summary window (the rest are counted as `other`). */
const MAX_ADDRESSES_PER_WINDOW = 100;

/** Addresses named in one summary line, those with the most refusals first. */
const TOP_ADDRESSES_LOGGED = 5;

/** Why a connection was refused at accept time. */
export type RefusalReason = 'not_allowed' | 'per_address_limit' | 'total_limit';

/** Which phase a connection was closed in for taking too long. */
export type TimeoutPhase = 'handshake' | 'first_request' | 'request';

/** The `connections` member of `GET /v1/status`: counts since start-up. */
export interface ConnectionCounts {
  /** Connections open now (accepted, not yet closed). */
  open: number;
  /** Connections refused at accept time, before any TLS handshake, by reason. */
  refused: { total: number } & Record<RefusalReason, number>;
  /**
   * Connections closed for being too slow: the TLS handshake, the first request after it,
   * or a request's headers or body (`request`).
   */
  timed_out: Record<TimeoutPhase, number>;
  /** Times the freed memory was given back to the kernel after a flood (`[server] release_memory_after`). */
  memory_releases: number;
}

/**
 * The options of `https.createServer` carrying {@link ConnectionLimits}' timeouts.
 *
 * @param limits - the limits in force
 * @returns `handshakeTimeout`, `headersTimeout`, `requestTimeout`, `keepAliveTimeout` (ms) and
 *   the checking interval of the latter two ({@link TIMEOUT_CHECK_INTERVAL_MS})
 * @throws RangeError when `requestTimeoutMs` is below `headersTimeoutMs` (Node refuses it)
 */
export function timeoutServerOptions(limits: ConnectionLimits): {
  handshakeTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  if (limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw new RangeError(`request timeout (${limits.requestTimeoutMs} ms) is below the headers timeout (${limits.headersTimeoutMs} ms)`);
  }
  return {
    handshakeTimeout: limits.handshakeTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_INTERVAL_MS, limits.headersTimeoutMs),
  };
}

/**
 * A client address as the limits key it: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4, an
 * IPv6 address by its /56 (the prefix one subscriber typically holds, as the authentication
 * throttle keys it).
 */
export function addressKey(remoteAddress: string | undefined): string {
  const address = plainAddress(remoteAddress);
  return isIPv6(address) ? ipKeyGenerator(address) : address;
}

/** The address with an IPv4-mapped IPv6 prefix removed. */
function plainAddress(remoteAddress: string | undefined): string {
  const address = remoteAddress ?? '';
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
}

/** What {@link ConnectionGuard} needs. */
export interface ConnectionGuardOptions {
  /** Limits and timeouts in force. */
  limits: ConnectionLimits;
  /** The current `[server] allow` list (`null`: every address); read per connection, so a reload applies. */
  allow: () => BlockList | null;
  /** Where the summary lines go. */
  logger: Logger;
  /** At most one summary line per this many ms; default {@link SUMMARY_INTERVAL_MS}. */
  summaryIntervalMs?: number;
  /**
   * Gives freed memory back to the kernel (`malloc_trim(0)`, src/system/malloc-trim.ts), called
   * after a flood as `limits.releaseMemoryAfter` says; resolves true when it did, never rejects.
   * Default: none.
   */
  releaseMemory?: () => Promise<boolean>;
}

/** Counts of one summary window. */
interface Window {
  refused: Record<RefusalReason, number>;
  timedOut: Record<TimeoutPhase, number>;
  byAddress: Map<string, number>;
  other: number;
}

function emptyWindow(): Window {
  return {
    refused: { not_allowed: 0, per_address_limit: 0, total_limit: 0 },
    timedOut: { handshake: 0, first_request: 0, request: 0 },
    byAddress: new Map(),
    other: 0,
  };
}

/**
 * Guards an `https.Server`'s connections. Lifecycle: construct → {@link ConnectionGuard.attach}
 * once, right after `https.createServer` → {@link ConnectionGuard.counts} any time →
 * {@link ConnectionGuard.close} when the server stops (logs what is pending).
 *
 * What it keeps is bounded: one counter per client address with an open connection, and at
 * most {@link MAX_ADDRESSES_PER_WINDOW} addresses per summary window.
 */
export class ConnectionGuard {
  private readonly limits: ConnectionLimits;
  private readonly perAddress = new Map<string, number>();
  private open = 0;
  private readonly refused: Record<RefusalReason, number> = { not_allowed: 0, per_address_limit: 0, total_limit: 0 };
  private readonly timedOut: Record<TimeoutPhase, number> = { handshake: 0, first_request: 0, request: 0 };
  private window = emptyWindow();
  private summaryTimer: NodeJS.Timeout | undefined;
  private readonly summaryIntervalMs: number;
  private readonly memory: MemoryReleaseTrigger;

  constructor(private readonly options: ConnectionGuardOptions) {
    this.limits = options.limits;
    this.summaryIntervalMs = options.summaryIntervalMs ?? SUMMARY_INTERVAL_MS;
    const release = options.releaseMemory;
    this.memory = new MemoryReleaseTrigger({ threshold: release === undefined ? 0 : this.limits.releaseMemoryAfter, release: release ?? (() => Promise.resolve(false)) });
  }

  /**
   * Takes over the server's TCP `connection` event: every accepted socket is checked against
   * `[server] allow` and the limits first, and a refused one is reset at once (no TLS socket
   * is created for it, no handshake runs); an admitted one goes on to the server's own
   * listeners (the TLS handshake). Also starts the first-request timer of every connection
   * after its handshake and counts handshake and request timeouts.
   *
   * @param server - the server built with {@link timeoutServerOptions}; call before it listens
   */
  attach(server: HttpsServer): void {
    const downstream = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      for (const listener of downstream) listener.call(server, socket);
    });
    server.on('secureConnection', (socket: TLSSocket) => this.watchFirstRequest(socket));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.timeout('handshake', socket.remoteAddress);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') this.timeout('request', socket.remoteAddress);
    });
  }

  /** The counts since start-up (the `connections` member of `GET /v1/status`). */
  counts(): ConnectionCounts {
    const refused = { ...this.refused };
    return {
      open: this.open,
      refused: { total: refused.not_allowed + refused.per_address_limit + refused.total_limit, ...refused },
      timed_out: { ...this.timedOut },
      memory_releases: this.memory.releases,
    };
  }

  /** Logs the pending summary (if any) and stops its timer and a pending memory release. */
  close(): void {
    this.flush();
    this.memory.close();
  }

  /** Checks a new TCP connection; refuses it (reset, counted) or tracks it until it closes. */
  private admit(socket: Socket): boolean {
    const address = plainAddress(socket.remoteAddress);
    const allow = this.options.allow();
    let reason: RefusalReason | undefined;
    const key = addressKey(address);
    const mine = this.perAddress.get(key) ?? 0;
    if (allow !== null && !allow.check(address, isIPv6(address) ? 'ipv6' : 'ipv4')) reason = 'not_allowed';
    else if (mine >= this.limits.maxConnectionsPerAddress) reason = 'per_address_limit';
    else if (this.open >= this.limits.maxConnections) reason = 'total_limit';
    if (reason !== undefined) {
      socket.on('error', () => undefined);
      socket.resetAndDestroy();
      this.refused[reason] += 1;
      this.window.refused[reason] += 1;
      this.noteAddress(key);
      return false;
    }
    this.open += 1;
    this.memory.update(this.open);
    this.perAddress.set(key, mine + 1);
    socket.once('close', () => {
      this.open -= 1;
      this.memory.update(this.open);
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(key);
      else this.perAddress.set(key, left);
    });
    return true;
  }

  /**
   * Closes a connection that has sent no byte of a request `firstRequestTimeoutMs` after its
   * handshake. (Node's headers timeout would close it too, but only later, and answering a
   * request nobody sent.)
   */
  private watchFirstRequest(socket: TLSSocket): void {
    const timer = setTimeout(() => {
      if (socket.bytesRead === 0 && !socket.destroyed) {
        this.timeout('first_request', socket.remoteAddress);
        socket.destroy();
      }
    }, this.limits.firstRequestTimeoutMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private timeout(phase: TimeoutPhase, remoteAddress: string | undefined): void {
    this.timedOut[phase] += 1;
    this.window.timedOut[phase] += 1;
    this.noteAddress(addressKey(remoteAddress));
  }

  /** Counts an address in the summary window (bounded) and schedules the summary line. */
  private noteAddress(key: string): void {
    const { byAddress } = this.window;
    const seen = byAddress.get(key);
    if (seen !== undefined) byAddress.set(key, seen + 1);
    else if (byAddress.size < MAX_ADDRESSES_PER_WINDOW) byAddress.set(key, 1);
    else this.window.other += 1;
    if (this.summaryTimer === undefined) {
      this.summaryTimer = setTimeout(() => this.flush(), this.summaryIntervalMs);
      this.summaryTimer.unref();
    }
  }

  /** Logs one line with the window's counts by reason and its busiest addresses, then resets it. */
  private flush(): void {
    clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    const { refused, timedOut, byAddress, other } = this.window;
    if (byAddress.size === 0) return;
    this.window = emptyWindow();
    const addresses = [...byAddress.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP_ADDRESSES_LOGGED)
      .map(([address, count]) => ({ address, count }));
    this.options.logger.warn(
      {
        refused,
        timed_out: timedOut,
        addresses,
        distinct_addresses: byAddress.size,
        // Events from addresses beyond the first MAX_ADDRESSES_PER_WINDOW of the window.
        ...(other > 0 ? { events_from_more_addresses: other } : {}),
        open: this.open,
        interval_s: Math.round(this.summaryIntervalMs / 1000),
      },
      'connections refused or timed out before authentication',
    );
  }
}
