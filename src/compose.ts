/**
 * The composition root: builds one daemon's parts from its config — the ledger, the
 * classifier and CA adapters `[classifier] backend` / `[ca] backend` name, the two services,
 * PuppetDB at termination and its background retry when `[puppetdb] url` is set —
 * and the body of `GET /v1/status`. The HTTPS lifecycle (listen, reload, drain) is
 * src/server.ts's; this module decides which parts there are and how they are wired.
 *
 * Test hooks are passed in here ({@link ComposeOptions.afterBackend}); production code
 * reads none from the environment.
 *
 * Source of truth: docs/design.md ("Layers").
 *
 * @packageDocumentation
 */
import { join } from 'node:path';
import type { Config } from './config.js';
import type { CertificateAuthority } from './ca/authority.js';
import { createCertificateAuthority } from './ca/index.js';
import type { Classifier } from './classifier/classifier.js';
import { createClassifier } from './classifier/index.js';
import { SANDBOX_DIR } from './classifier/sandbox.js';
import { ExecaCommandRunner, type CommandRunner } from './exec/command.js';
import type { ConnectionCounts } from './http/connection-guard.js';
import type { StatusBody } from './http/routes/status.js';
import type { Logger } from './logger.js';
import { Ledger } from './ownership/ledger.js';
import { createPuppetDb } from './puppetdb/puppetdb.js';
import { CertificateService } from './service/certificates.js';
import { DeactivationRetry } from './service/deactivation-retry.js';
import { NodeService } from './service/nodes.js';
import { DEACTIVATION, PuppetDbService } from './service/puppetdb.js';
import { TokenService } from './service/tokens.js';
import { startTokenSigning, type TokenSigningRuntime } from './autosign/lifecycle.js';
import { VERSION } from './version.js';

/** What {@link composeDaemon} takes besides the config. */
export interface ComposeOptions {
  /** Where the daemon logs. */
  logger: Logger;
  /** Runs the backends' commands; default the real one (tests count spawns through it). */
  runner?: CommandRunner;
  /**
   * Called after every successful backend call that changes a node or a certificate, before
   * the ledger records the outcome. The crash-consistency tests widen that window with it
   * (test/support/espm-fault-delay.mjs); production passes none.
   */
  afterBackend?: () => Promise<void>;
}

/** One daemon's parts, wired. */
export interface Daemon {
  /** The ownership ledger (open and locked until {@link Daemon.close}). */
  readonly ledger: Ledger;
  readonly classifier: Classifier;
  readonly ca: CertificateAuthority;
  /** The classification service behind `/v1/groups`, `/v1/classes`, `/v1/nodes`. */
  readonly nodes: NodeService;
  /** The certificate service behind `/v1/certificates`. */
  readonly certificates: CertificateService;
  /** PuppetDB at termination; undefined when `[puppetdb] url` is empty. */
  readonly puppetdb: PuppetDbService | undefined;
  /** Token signing (`"signing": "token"`), on CAs with policy-based autosigning; undefined otherwise. */
  readonly tokens: TokenService | undefined;
  /**
   * Starts the adapters' background work once espm listens (the console worker, the CA's
   * key pool) and logs whether the console is usable. Never throws.
   */
  start(): void;
  /**
   * SIGHUP: the adapters re-read their operator-edited files (the enc groups file) and take
   * what they apply without a restart from the reloaded config (the enc fallback_enc and
   * timeout). Never throws.
   *
   * @param next - the reloaded config; undefined = files only
   */
  reload(next?: Config): Promise<void>;
  /** Stops the adapters and closes the ledger (releasing the state directory). */
  close(): Promise<void>;
}

/**
 * Builds a daemon's parts from its config: opens (and locks) the ledger, creates the
 * configured adapters and the services over them, and warns about sandbox backends.
 *
 * @param config - the validated config
 * @param options - logger, command runner, test hook
 * @returns the wired parts; nothing runs in the background until {@link Daemon.start}
 * @throws `StateLockedError` when another espm uses `[state] dir`; `LedgerCorruptError`
 */
export async function composeDaemon(config: Config, options: ComposeOptions): Promise<Daemon> {
  const { logger, afterBackend } = options;
  const runner = options.runner ?? new ExecaCommandRunner(logger);
  const ledger = await Ledger.open(config.state.dir, { logger });
  warnAboutSandboxes(config, logger);
  if (afterBackend !== undefined) {
    logger.warn('crash-consistency test hook active: backend outcomes are recorded late');
  }
  const hook = afterBackend === undefined ? {} : { afterBackend };
  const classifier = createClassifier(config.classifier, runner, config.state.dir, logger);
  const ca = createCertificateAuthority(config.ca, runner, config.state.dir, logger);
  const puppetdbAdapter = createPuppetDb(config.puppetdb, runner);
  const puppetdb = puppetdbAdapter === undefined ? undefined : new PuppetDbService(puppetdbAdapter, ledger, { logger });
  const withPuppetDb = puppetdb === undefined ? {} : { puppetdb };
  const retry =
    puppetdb === undefined
      ? undefined
      : new DeactivationRetry(puppetdb, { intervalMs: config.puppetdb.retryIntervalMs, maxIntervalMs: config.puppetdb.retryMaxIntervalMs, logger });
  const nodes = new NodeService(classifier, ledger, { cacheTtlMs: config.classifier.cacheTtlMs, logger, ...hook, ...withPuppetDb });
  const tokens = ca.policySigning === undefined ? undefined : new TokenService(ca, ledger, { ttlMs: config.autosign.tokenTtlMs, logger, ...withPuppetDb });
  const certificates = new CertificateService(ca, ledger, { logger, ...hook, ...withPuppetDb, ...(tokens === undefined ? {} : { tokens }) });
  let tokenSigning: TokenSigningRuntime | undefined;
  return {
    ledger,
    classifier,
    ca,
    nodes,
    certificates,
    puppetdb,
    tokens,
    start() {
      startAdapters(classifier, ca, logger);
      puppetdbAdapter?.start().then(
        () => logger.info({ puppetdb: puppetdbAdapter.url }, 'PuppetDB identity ready'),
        (err: unknown) => logger.warn({ puppetdb: puppetdbAdapter.url, error: (err as Error).message }, 'PuppetDB identity not usable; PuppetDB calls will fail until it is'),
      );
      retry?.start();
      if (tokens !== undefined) tokenSigning ??= startTokenSigning(tokens, config.autosign, logger);
    },
    async reload(next?: Config) {
      if (classifier.reload === undefined) return;
      await classifier.reload(next?.classifier).then(
        (reloaded) => logger.info({ classifier: classifier.backend, ...reloaded }, 'classifier reloaded'),
        (err: unknown) =>
          logger.error({ classifier: classifier.backend, error: (err as Error).message }, 'classifier reload failed; keeping the previous state'),
      );
    },
    async close() {
      await retry?.stop();
      await puppetdbAdapter?.close();
      await tokenSigning?.stop();
      await classifier.close?.();
      ca.close?.();
      await ledger.close();
    },
  };
}

/**
 * Starts the adapters' background work: the classifier's (the console worker: paying the
 * console's boot now, not at the first launch) with one log line saying whether the console
 * is usable — a warning now beats a surprise at the first launch — and the CA's.
 */
function startAdapters(classifier: Classifier, ca: CertificateAuthority, logger: Logger): void {
  (classifier.start?.() ?? Promise.resolve({})).then(
    (started) => logger.info({ classifier: classifier.backend, ...started }, 'console found'),
    (err: unknown) =>
      logger.warn({ classifier: classifier.backend, error: (err as Error).message }, 'console not usable; classification calls will fail until it is'),
  );
  ca.start?.();
}

/**
 * The body of `GET /v1/status`.
 *
 * @param config - the config in force (its backends are reported)
 * @param ledger - counted per kind and state
 * @param startedAt - `process.hrtime.bigint()` when the daemon started, ns
 * @param connections - the connection guard's counts (src/http/connection-guard.ts)
 */
export function statusBody(config: Config, ledger: Ledger, startedAt: bigint, connections: ConnectionCounts): StatusBody {
  const counts = ledger.counts();
  return {
    version: VERSION,
    uptime_s: Number((process.hrtime.bigint() - startedAt) / 1_000_000_000n),
    classifier: { backend: config.classifier.backend },
    ca: { backend: config.ca.backend },
    ledger: {
      nodes: { present: counts.node.present, uncertain: counts.node.uncertain },
      certificates: { present: counts.certificate.present, uncertain: counts.certificate.uncertain },
    },
    puppetdb: { enabled: config.puppetdb.url !== undefined, pending_deactivations: pendingDeactivations(ledger) },
    connections,
  };
}

/** Certnames owing a PuppetDB deactivation (a node and a certificate of one name count once). */
function pendingDeactivations(ledger: Ledger): number {
  return new Set(ledger.list().filter((e) => e.pending_steps.includes(DEACTIVATION)).map((e) => e.name)).size;
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
