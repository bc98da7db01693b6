/**
 * The HTTPS server's lifecycle: listen, reload on SIGHUP, drain on SIGTERM/SIGINT.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { assertPrivateFile, ConfigError, loadConfig, type Config } from './config.js';
import { HTTP_LIMITS } from './http/limits.js';
import type { CertificateAuthority } from './ca/authority.js';
import { createCertificateAuthority } from './ca/index.js';
import { createClassifier } from './classifier/index.js';
import { SANDBOX_DIR } from './classifier/sandbox.js';
import { ExecaCommandRunner, type CommandRunner } from './exec/command.js';
import { accessSettings, type AccessSettings } from './http/access.js';
import { createApp } from './http/app.js';
import { PROBLEM_CONTENT_TYPE, problemBody } from './http/problem.js';
import type { StatusBody } from './http/routes/status.js';
import type { Classifier } from './classifier/classifier.js';
import type { Logger } from './logger.js';
import { Ledger } from './ownership/ledger.js';
import { CertificateService } from './service/certificates.js';
import { NodeService } from './service/nodes.js';
import { VERSION } from './version.js';

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
    private readonly ledger: Ledger,
    access: AccessSettings,
    private readonly classifier: Classifier,
    private readonly ca: CertificateAuthority,
  ) {
    this.access = access;
  }

  /**
   * Starts serving HTTPS (TLS ≥ 1.2) on `[server] host`:`[server] port`.
   *
   * @param config - validated config
   * @param options - logger, optional port override
   * @returns the listening server
   * @throws {@link ConfigError} if the certificate/key cannot be used; `StateLockedError`
   *   when another espm uses the state directory; `LedgerCorruptError`; the listen error
   *   (e.g. `EADDRINUSE`, `EACCES`) if the address cannot be bound
   */
  static async start(config: Config, options: StartOptions): Promise<EspmServer> {
    const { logger } = options;
    const tls = loadTlsMaterial(config);
    const startedAt = process.hrtime.bigint();
    const runner = options.runner ?? new ExecaCommandRunner(logger);
    const ledger = await Ledger.open(config.state.dir, { logger });
    warnAboutSandboxes(config, logger);
    const classifier = createClassifier(config.classifier, runner, config.state.dir, logger);
    const afterBackend = faultDelayHook(logger);
    const nodes = new NodeService(classifier, ledger, {
      cacheTtlMs: config.classifier.cacheTtlMs,
      logger,
      ...(afterBackend === undefined ? {} : { afterBackend }),
    });
    const ca = createCertificateAuthority(config.ca, runner, config.state.dir, logger);
    const certificates = new CertificateService(
      ca,
      ledger,
      logger,
      afterBackend,
    );
    let server!: EspmServer;
    const app = createApp({
      nodes,
      certificates,
      logger,
      access: () => server.access,
      draining: () => server.drainingSince !== null,
      status: () => ({
        version: VERSION,
        uptime_s: Number((process.hrtime.bigint() - startedAt) / 1_000_000_000n),
        classifier: { backend: server.config.classifier.backend },
        ca: { backend: server.config.ca.backend },
        ledger: ledgerCounts(ledger),
      }),
    });
    const https = createServer({ ...tls, minVersion: HTTP_LIMITS.minTlsVersion }, app);
    server = new EspmServer(config, https, logger, ledger, accessSettings(config.server.psk, config.server.allow), classifier, ca);
    try {
      await new Promise<void>((resolve, reject) => {
        https.once('error', reject);
        https.listen(options.port ?? config.server.port, config.server.host, () => {
          https.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await ledger.close();
      throw err;
    }
    // Find out early whether the console answers (and which tasks it has), and start the
    // console worker (paying the console's boot now, not at the first launch): a warning now
    // beats a surprise at the first launch.
    Promise.all([classifier.capabilities(), classifier.start?.() ?? Promise.resolve({})]).then(
      ([c, started]) => logger.info({ classifier: classifier.backend, console: c.description, ...started }, 'console found'),
      (err: unknown) =>
        logger.warn({ classifier: classifier.backend, error: (err as Error).message }, 'console not usable; classification calls will fail until it is'),
    );
    ca.start?.();
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
    return true;
  }

  /**
   * Stops accepting connections, lets in-flight requests finish, then closes.
   * Idle keep-alive connections are closed at once; answers given while draining carry
   * `Connection: close`. Connections still busy after `drainTimeoutMs` are destroyed.
   *
   * @param drainTimeoutMs - how long to wait for in-flight requests, ms
   * @returns true when every request finished in time, false when some were cut off
   */
  async stop(drainTimeoutMs: number = HTTP_LIMITS.drainTimeoutMs): Promise<boolean> {
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
    await this.classifier.close?.();
    this.ca.close?.();
    await this.ledger.close();
    this.logger.info('stopped');
    return !cutOff;
  }
}

/** Start of the warning logged when a sandbox backend is configured. */
export const SANDBOX_WARNING = 'sandbox backends are for integration testing, not for production';

/**
 * Logs a `warn` line when `[classifier] backend` or `[ca] backend` is `sandbox`: those
 * backends keep a pretend console and CA in the state directory and touch no Puppet master.
 *
 * @param config - the config in force
 * @param logger - where the warning goes
 * @returns true when a warning was logged
 */
export function warnAboutSandboxes(config: Config, logger: Logger): boolean {
  const keys = [
    config.classifier.backend === 'sandbox' ? '[classifier] backend = sandbox' : undefined,
    config.ca.backend === 'sandbox' ? '[ca] backend = sandbox' : undefined,
  ].filter((k): k is string => k !== undefined);
  if (keys.length === 0) return false;
  const state = join(config.state.dir, SANDBOX_DIR);
  logger.warn(
    { backends: keys, state },
    `${SANDBOX_WARNING}: ${keys.join(', ')} (their nodes and certificates exist only in ${state}; no Puppet master knows them)`,
  );
  return true;
}

/**
 * Answers a request Node's HTTP parser refused (oversized headers → 431, anything else → 400)
 * with a problem+json body, as every other error, then closes the connection.
 */
function answerUnparsableRequest(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (!socket.writable || (err.code === 'ECONNRESET')) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const body = JSON.stringify(
    problemBody(status, 'invalid_request', status === 431 ? 'request headers too large' : 'malformed HTTP request'),
  );
  socket.end(
    `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Environment variable of the crash-consistency test hook (never set in production). */
export const FAULT_DELAY_VARIABLE = 'ESPM_FAULT_DELAY_MS';

/**
 * The crash-consistency test hook: when {@link FAULT_DELAY_VARIABLE} holds a whole number of
 * ms, espm waits that long after every successful backend change and before recording it in
 * the ledger, so a test's SIGKILL can land in that window. Logged loudly when active.
 *
 * @returns the hook, or undefined when the variable is not set
 */
function faultDelayHook(logger: Logger): (() => Promise<void>) | undefined {
  const raw = process.env[FAULT_DELAY_VARIABLE];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const ms = Number(raw);
  logger.warn({ [FAULT_DELAY_VARIABLE]: ms }, 'crash-consistency test hook active: backend outcomes are recorded late');
  return () => new Promise((resolve) => setTimeout(resolve, ms));
}

/** Present and uncertain ledger entries per kind, for `GET /v1/status`. */
function ledgerCounts(ledger: Ledger): StatusBody['ledger'] {
  const counts = ledger.counts();
  return {
    nodes: { present: counts.node.present, uncertain: counts.node.uncertain },
    certificates: { present: counts.certificate.present, uncertain: counts.certificate.uncertain },
  };
}

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
