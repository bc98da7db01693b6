/**
 * The HTTPS server's lifecycle: listen, reload on SIGHUP, drain on SIGTERM/SIGINT.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { assertPrivateFile, ConfigError, loadConfig, type Config } from './config.js';
import { HTTP_LIMITS } from './http/limits.js';
import { composeDaemon, statusBody, type Daemon } from './compose.js';
import type { CommandRunner } from './exec/command.js';
import { accessSettings, type AccessSettings } from './http/access.js';
import { ConnectionGuard, connectionLimits, timeoutServerOptions } from './http/connection-guard.js';
import { createApp } from './http/app.js';
import { PROBLEM_CONTENT_TYPE, problemBody } from './http/problem.js';
import type { Logger } from './logger.js';
import { MallocTrim } from './system/malloc-trim.js';

/** PEM certificate and private key served to clients. Secret (the key). */
export interface TlsMaterial {
  cert: string;
  key: string;
}

/**
 * Reads and checks the configured certificate and key: both readable, the key not
 * group/world accessible, and the two a pair.
 *
 * @param config - `[server] cert` and `[server] key` are used
 * @throws {@link ConfigError} naming `[server] cert` or `[server] key`
 */
export function loadTlsMaterial(config: Config): TlsMaterial {
  const read = (path: string, key: 'cert' | 'key'): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`[server] ${key}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const material = { cert: read(config.server.cert, 'cert'), key: read(config.server.key, 'key') };
  assertPrivateFile(config.server.key, '[server] key');
  try {
    createSecureContext({ ...material, minVersion: HTTP_LIMITS.minTlsVersion });
  } catch (err) {
    throw new ConfigError(
      `[server] cert/key: ${config.server.cert} and ${config.server.key} are not a usable certificate and key pair: ${(err as Error).message}`,
    );
  }
  return material;
}

/** Options of {@link EspmServer.start}. */
export interface StartOptions {
  /** Where the daemon logs. */
  logger: Logger;
  /** Listen on this port instead of `[server] port` (tests use 0 for a free port). */
  port?: number;
  /** Runs the backends' commands; default the real one (tests count spawns through it). */
  runner?: CommandRunner;
  /** Test hook between a backend change and its ledger record (see `ComposeOptions.afterBackend`). */
  afterBackend?: () => Promise<void>;
}

/**
 * A running espm daemon: the HTTPS server and the state it reloads.
 *
 * Lifecycle: {@link EspmServer.start} → any number of {@link EspmServer.reload} →
 * {@link EspmServer.stop}.
 */
export class EspmServer {
  private access: AccessSettings;
  private drainingSince: number | null = null;

  private constructor(
    private config: Config,
    private readonly https: Server,
    private readonly logger: Logger,
    private readonly daemon: Daemon,
    access: AccessSettings,
  ) {
    this.access = access;
  }

  /**
   * Starts serving HTTPS (TLS ≥ 1.2) on `[server] host`:`[server] port`.
   *
   * @param config - validated config
   * @param options - logger, optional port override, command runner, test hook
   * @returns the listening server
   * @throws {@link ConfigError} if the certificate/key cannot be used; `StateLockedError`
   *   when another espm uses the state directory; `LedgerCorruptError`; the listen error
   *   (e.g. `EADDRINUSE`, `EACCES`) if the address cannot be bound
   */
  static async start(config: Config, options: StartOptions): Promise<EspmServer> {
    const { logger } = options;
    const tls = loadTlsMaterial(config);
    const startedAt = process.hrtime.bigint();
    const daemon = await composeDaemon(config, {
      logger,
      ...(options.runner === undefined ? {} : { runner: options.runner }),
      ...(options.afterBackend === undefined ? {} : { afterBackend: options.afterBackend }),
    });
    let server!: EspmServer;
    const app = createApp({
      nodes: daemon.nodes,
      certificates: daemon.certificates,
      logger,
      access: () => server.access,
      draining: () => server.drainingSince !== null,
      status: () => statusBody(server.config, daemon.ledger, startedAt, guard.counts()),
    });
    // Limits and timeouts of connections before authentication (src/http/connection-guard.ts).
    const limits = connectionLimits(config.server);
    const https = createServer({ ...tls, minVersion: HTTP_LIMITS.minTlsVersion, ...timeoutServerOptions(limits) }, app);
    // After a flood, glibc keeps the connections' freed TLS memory: malloc_trim(0) gives it back.
    const trimmer = new MallocTrim(logger);
    const releaseMemory = async (): Promise<boolean> => (await trimmer.trim('connections settled after a flood')) !== null;
    const guard = new ConnectionGuard({ limits, allow: () => server.access.allow, logger, releaseMemory });
    guard.attach(https);
    https.once('close', () => guard.close());
    server = new EspmServer(config, https, logger, daemon, accessSettings(config.server.psk, config.server.allow));
    try {
      await new Promise<void>((resolve, reject) => {
        https.once('error', reject);
        https.listen(options.port ?? config.server.port, config.server.host, () => {
          https.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await daemon.close();
      throw err;
    }
    daemon.start();
    https.on('clientError', (err: NodeJS.ErrnoException, socket) => answerUnparsableRequest(err, socket));
    https.on('tlsClientError', (err, socket) => {
      logger.debug({ remote: socket.remoteAddress, error: err.message }, 'TLS handshake failed');
    });
    const { address, port } = server.address();
    logger.info({ address, port, url: `https://${address.includes(':') ? `[${address}]` : address}:${port}` }, 'listening');
    return server;
  }

  /** The bound address and port. */
  address(): { address: string; port: number } {
    const info = this.https.address() as AddressInfo;
    return { address: info.address, port: info.port };
  }

  /** The config in force (the last one successfully loaded). */
  get currentConfig(): Config {
    return this.config;
  }

  /**
   * Re-reads the config file (SIGHUP). A new PSK, certificate/key and allow-list take
   * effect for new requests and handshakes; open connections are kept. Changes to keys
   * that need a restart (host, port, backends, state dir, log format) are logged and
   * ignored. A broken config is logged and the old one kept.
   *
   * @returns true when the new config took effect, false when the old one was kept
   */
  reload(): boolean {
    let next: Config;
    let tls: TlsMaterial;
    try {
      next = loadConfig(this.config.path);
      tls = loadTlsMaterial(next);
    } catch (err) {
      this.logger.error({ error: (err as Error).message }, 'reload failed; keeping the previous config');
      return false;
    }
    const needRestart = [
      ['[server] host', this.config.server.host, next.server.host],
      ['[server] port', this.config.server.port, next.server.port],
      ['[classifier] backend', this.config.classifier.backend, next.classifier.backend],
      ['[ca] backend', this.config.ca.backend, next.ca.backend],
      ['[state] dir', this.config.state.dir, next.state.dir],
      ['[log] format', this.config.log.format, next.log.format],
      [
        '[server] connection limits and timeouts',
        JSON.stringify(connectionLimits(this.config.server)),
        JSON.stringify(connectionLimits(next.server)),
      ],
    ]
      .filter(([, before, after]) => before !== after)
      .map(([key]) => key);
    if (needRestart.length > 0) {
      this.logger.warn({ keys: needRestart }, 'these changes take effect only after a restart');
    }
    this.https.setSecureContext({ ...tls, minVersion: HTTP_LIMITS.minTlsVersion });
    this.access = accessSettings(next.server.psk, next.server.allow);
    this.logger.level = next.log.level;
    this.config = next;
    this.logger.info({ config: next.path }, 'config reloaded');
    void this.daemon.reload(next);
    return true;
  }

  /**
   * Stops accepting connections, lets in-flight requests finish, then closes.
   * Idle keep-alive connections are closed at once; answers given while draining carry
   * `Connection: close`. Connections still busy after `drainTimeoutMs` are destroyed.
   *
   * @param drainTimeoutMs - how long to wait for in-flight requests, ms; default `[server] drain_timeout`
   * @returns true when every request finished in time, false when some were cut off
   */
  async stop(drainTimeoutMs: number = this.config.server.drainTimeoutMs): Promise<boolean> {
    if (this.drainingSince === null) this.drainingSince = Date.now();
    this.logger.info({ drain_timeout_ms: drainTimeoutMs }, 'stopping: draining in-flight requests');
    const closed = new Promise<void>((resolve) => this.https.close(() => resolve()));
    // Keep-alive connections become idle as their in-flight request is answered: close them
    // as they do, rather than waiting for the keep-alive timeout.
    this.https.closeIdleConnections();
    const idleSweep = setInterval(() => this.https.closeIdleConnections(), 50);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), drainTimeoutMs);
    });
    const cutOff = await Promise.race([closed.then(() => false), timedOut]);
    clearTimeout(timer);
    clearInterval(idleSweep);
    if (cutOff) {
      this.logger.warn('drain timeout reached; closing the remaining connections');
      this.https.closeAllConnections();
      await closed;
    }
    await this.daemon.close();
    this.logger.info('stopped');
    return !cutOff;
  }
}

/**
 * Answers a request Node's HTTP parser refused (oversized headers → 431, anything else → 400)
 * with a problem+json body, as every other error, then closes the connection.
 */
function answerUnparsableRequest(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  // Only an HTTP parse error or a request timeout is answered; anything else (a reset, a TLS
  // handshake error or timeout) has no HTTP peer to answer.
  const answerable = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code?.startsWith('HPE_') === true;
  if (!socket.writable || !answerable) {
    socket.destroy();
    return;
  }
  const [status, title, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'request headers too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'the request did not arrive in time']
        : [400, 'Bad Request', 'malformed HTTP request'];
  const body = JSON.stringify(problemBody(status, 'invalid_request', detail));
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // A peer that never closes its side must not keep the connection half-open.
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

/** How long a connection answered by {@link answerUnparsableRequest} may stay half-open, ms. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Wires the process signals to a running server: SIGHUP reloads the config; SIGTERM or
 * SIGINT drains and stops it. A second SIGTERM/SIGINT while draining is ignored (logged).
 *
 * @param server - the running daemon
 * @param logger - where signal handling is logged
 * @returns resolves with the exit status (0) once the server has stopped
 */
export function runUntilSignalled(server: EspmServer, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onHup = (): void => {
      logger.info({ signal: 'SIGHUP' }, 'reloading config');
      server.reload();
    };
    const onStop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'already stopping');
        return;
      }
      stopping = true;
      logger.info({ signal }, 'signal received');
      void server.stop().then(() => {
        process.off('SIGHUP', onHup);
        process.off('SIGTERM', onStop);
        process.off('SIGINT', onStop);
        resolve(0);
      });
    };
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
  });
}
