/**
 * The sections of espm.ini that do not depend on a backend: `[server]`, `[puppetdb]`,
 * `[autosign]`, `[state]`, `[log]`. Each is a strict zod object (an unknown key is an error)
 * transformed into its typed settings; durations become ms. Source: `docs/design.md` ("Config").
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import { DEFAULTS, LOG_FORMATS, LOG_LEVELS } from './defaults.js';
import { absolutePath, allowList, count, optionalAbsolutePath, optionalHttpsOrigin, seconds } from './values.js';

/** `[server]`: the HTTPS listener and who may call it. Required (cert, key, psk have no default). */
export const serverSection = z
  .strictObject({
    host: z.string().trim().min(1).default(DEFAULTS.server.host),
    port: z.coerce.number().int().min(1).max(65535, 'must be a port between 1 and 65535').default(DEFAULTS.server.port),
    cert: absolutePath,
    key: absolutePath,
    psk: z
      .string()
      .trim()
      .min(32, 'must be at least 32 characters (espm_setup writes 48)')
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
    allow: allowList.default([]),
    // Connections before authentication: src/http/connection-guard.ts, docs/operations.md.
    handshake_timeout: seconds(1).default(DEFAULTS.server.handshake_timeout),
    first_request_timeout: seconds(1).default(DEFAULTS.server.first_request_timeout),
    headers_timeout: seconds(1).default(DEFAULTS.server.headers_timeout),
    request_timeout: seconds(1).default(DEFAULTS.server.request_timeout),
    keepalive_timeout: seconds(1).default(DEFAULTS.server.keepalive_timeout),
    drain_timeout: seconds(1).default(DEFAULTS.server.drain_timeout),
    max_connections: count('connections', 1, 1_000_000, 'must be at least 1').default(DEFAULTS.server.max_connections),
    max_connections_per_address: count('connections', 1, 1_000_000, 'must be at least 1').default(DEFAULTS.server.max_connections_per_address),
    release_memory_after: count('connections', 0, 1_000_000, 'must be 0 (never) or more').default(DEFAULTS.server.release_memory_after),
  })
  .superRefine((k, ctx) => {
    if (k.request_timeout < k.headers_timeout) {
      ctx.addIssue({ code: 'custom', path: ['request_timeout'], message: `must be at least headers_timeout (${k.headers_timeout} s)` });
    }
    if (k.max_connections_per_address > k.max_connections) {
      ctx.addIssue({ code: 'custom', path: ['max_connections_per_address'], message: `must be at most max_connections (${k.max_connections})` });
    }
    if (k.release_memory_after > k.max_connections) {
      ctx.addIssue({ code: 'custom', path: ['release_memory_after'], message: `must be at most max_connections (${k.max_connections}), or 0` });
    }
  })
  .transform((k) => ({
    /** Address to listen on (IPv4/IPv6 literal or host name). */
    host: k.host,
    /** TCP port, 1–65535. */
    port: k.port,
    /** Absolute path of the PEM certificate served to clients. */
    cert: k.cert,
    /** Absolute path of the PEM private key of `cert`. */
    key: k.key,
    /** The pre-shared key callers present as `Authorization: Bearer <psk>`. Secret. */
    psk: k.psk,
    /** Client addresses allowed to connect (CIDRs or single addresses); empty = all. */
    allow: k.allow,
    /** A TLS handshake must complete within this, ms. */
    handshakeTimeoutMs: k.handshake_timeout * 1000,
    /** After the handshake, the first byte of a request must arrive within this, ms. */
    firstRequestTimeoutMs: k.first_request_timeout * 1000,
    /** A request's complete headers within this of its start, ms (Node's `headersTimeout`). */
    headersTimeoutMs: k.headers_timeout * 1000,
    /** A whole request, headers and body, within this of its start, ms (Node's `requestTimeout`). */
    requestTimeoutMs: k.request_timeout * 1000,
    /** An idle keep-alive connection is closed after this, ms. */
    keepAliveTimeoutMs: k.keepalive_timeout * 1000,
    /** How long SIGTERM/SIGINT waits for in-flight requests before closing connections, ms. */
    drainTimeoutMs: k.drain_timeout * 1000,
    /** Concurrent connections, all client addresses together. */
    maxConnections: k.max_connections,
    /** Concurrent connections of one client address (IPv6: per /56). */
    maxConnectionsPerAddress: k.max_connections_per_address,
    /** After this many connections were open at once, freed memory is released once they close; 0 = never. */
    releaseMemoryAfter: k.release_memory_after,
  }));

/**
 * `[puppetdb]`: PuppetDB's `https://HOST:PORT` (empty = off), the timeout of one request, the
 * master's identity (asked of puppet unless `cert`/`key`/`ca` are set) and the background
 * retry of pending deactivations (docs/design.md "PuppetDB at termination").
 */
export const puppetdbSection = z
  .strictObject({
    url: optionalHttpsOrigin('off'),
    timeout: seconds(1).default(DEFAULTS.puppetdb.timeout),
    puppet: absolutePath.default(DEFAULTS.puppetdb.puppet),
    config: absolutePath.default(DEFAULTS.puppetdb.config),
    cert: optionalAbsolutePath('ask puppet'),
    key: optionalAbsolutePath('ask puppet'),
    ca: optionalAbsolutePath('ask puppet'),
    retry_interval: seconds(1).default(DEFAULTS.puppetdb.retry_interval),
    retry_max_interval: seconds(1).default(DEFAULTS.puppetdb.retry_max_interval),
  })
  .superRefine((k, ctx) => {
    if (k.retry_max_interval < k.retry_interval) {
      ctx.addIssue({ code: 'custom', path: ['retry_max_interval'], message: `must be at least retry_interval (${k.retry_interval} s)` });
    }
  })
  .transform((k) => ({
    /** PuppetDB's origin (`https://host:port`); undefined = PuppetDB is off. */
    url: k.url,
    /** Timeout of one PuppetDB request, ms. */
    timeoutMs: k.timeout * 1000,
    /** Absolute path of the master's `puppet` (asked for hostcert, hostprivkey, localcacert). */
    puppet: k.puppet,
    /** Absolute path of the master's puppet.conf. */
    puppetConfig: k.config,
    /** Client certificate (PEM path); undefined = puppet's `hostcert`. */
    cert: k.cert,
    /** Its private key (PEM path); undefined = puppet's `hostprivkey`. */
    key: k.key,
    /** CA bundle PuppetDB is verified against (PEM path); undefined = puppet's `localcacert`. */
    ca: k.ca,
    /** First background retry of a pending deactivation after this, ms; doubled per failure. */
    retryIntervalMs: k.retry_interval * 1000,
    /** The retry interval's upper bound, ms. */
    retryMaxIntervalMs: k.retry_max_interval * 1000,
  }))
  .prefault({});

/**
 * `[autosign]`: token signing (src/service/tokens.ts) — how long a signing token lives, the
 * site's previous policy executable and how long it may run, and the daemon's Unix socket the
 * master's policy executable (`espm autosign`) asks.
 */
export const autosignSection = z
  .strictObject({
    token_ttl: seconds(1).default(DEFAULTS.autosign.token_ttl),
    fallback: optionalAbsolutePath('none'),
    fallback_timeout: seconds(1).default(DEFAULTS.autosign.fallback_timeout),
    socket: absolutePath.default(DEFAULTS.autosign.socket),
  })
  .transform((k) => ({
    /** How long an unused signing token stays valid, ms (default 2 h). */
    tokenTtlMs: k.token_ttl * 1000,
    /** Absolute path of the policy executable CSRs without an espm token go to; undefined = refuse them. */
    fallback: k.fallback,
    /** How long the fallback may run, ms (default 30 s). */
    fallbackTimeoutMs: k.fallback_timeout * 1000,
    /** Absolute path of the daemon's Unix socket for `espm autosign`. */
    socket: k.socket,
  }))
  .prefault({});

/** `[state]`: where the ledger, its lock and the sandboxes' state live. */
export const stateSection = z
  .strictObject({
    /** Absolute path of the state directory (ledger, lock, sandbox state). */
    dir: absolutePath.default(DEFAULTS.state.dir),
  })
  .prefault({});

/** `[log]`: pino's level and the output format. */
export const logSection = z
  .strictObject({
    level: z.enum(LOG_LEVELS).default(DEFAULTS.log.level),
    format: z.enum(LOG_FORMATS).default(DEFAULTS.log.format),
  })
  .prefault({});
