/**
 * Token signing's background work in the daemon: the hand-off socket (server.ts), the purge of
 * expired tokens (every {@link PURGE_INTERVAL_MS}) and, once listening, the revisit of token
 * CSRs refused while espm was stopped. Started once espm listens, stopped with the daemon.
 *
 * Source of truth: docs/design.md ("The hand-off").
 *
 * @packageDocumentation
 */
import type { Logger } from '../logger.js';
import type { TokenService } from '../service/tokens.js';
import { listenAutosign, type AutosignServer } from './server.js';

/** How often expired tokens are purged from the ledger, ms. */
export const PURGE_INTERVAL_MS = 60_000;

/** `[autosign]` as the daemon uses it (src/config/sections.ts). */
export interface AutosignSettings {
  socket: string;
  fallback: string | undefined;
  fallbackTimeoutMs: number;
}

/** Running token signing. */
export interface TokenSigningRuntime {
  /** Stops listening, removes the socket, stops the purge, waits for removals of refused CSRs. */
  stop(): Promise<void>;
}

/**
 * Starts the socket and the purge. Never throws: a socket that cannot listen is logged as an
 * error (every CSR is then refused by `espm autosign`, which cannot reach the daemon).
 *
 * @param tokens - the token service (decisions, purge)
 * @param settings - `[autosign]`
 * @param logger - where failures go
 */
export function startTokenSigning(tokens: TokenService, settings: AutosignSettings, logger: Logger): TokenSigningRuntime {
  const purge = setInterval(() => {
    tokens.purgeExpired().catch((err: unknown) => logger.warn({ error: (err as Error).message }, 'purging expired signing tokens failed'));
  }, PURGE_INTERVAL_MS);
  purge.unref();
  const listening: Promise<AutosignServer | undefined> = listenAutosign({
    socket: settings.socket,
    fallback: settings.fallback,
    fallbackTimeoutMs: settings.fallbackTimeoutMs,
    decide: (certname, csr) => tokens.decide(certname, csr),
    logger,
  }).catch((err: unknown) => {
    logger.error({ socket: settings.socket, error: (err as Error).message }, 'autosign socket not listening: every token CSR will be refused');
    return undefined;
  });
  // CSRs refused while espm was stopped: decided now (src/service/tokens.ts revisit).
  const revisited = listening.then((server) => (server === undefined ? [] : tokens.revisit()));
  return {
    async stop() {
      clearInterval(purge);
      await revisited;
      await (await listening)?.close();
      await tokens.settled();
    },
  };
}
