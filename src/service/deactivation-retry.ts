/**
 * The background retry of owed PuppetDB deactivations (docs/design.md "PuppetDB at
 * termination"): every `[puppetdb] retry_interval` while nothing fails; after a round in which
 * some deactivation still failed, the wait doubles, up to `retry_max_interval`; a clean round
 * resets it. Started by src/compose.ts once espm listens (so owed steps left by a crash or a
 * restart are settled without waiting for a DELETE), stopped before the ledger closes.
 *
 * @packageDocumentation
 */
import type { Logger } from '../logger.js';
import type { PuppetDbService } from './puppetdb.js';

/** Options of {@link DeactivationRetry}. */
export interface DeactivationRetryOptions {
  /** Wait before a round while nothing fails, ms (`[puppetdb] retry_interval`). */
  intervalMs: number;
  /** Upper bound of the doubled wait, ms (`[puppetdb] retry_max_interval`). */
  maxIntervalMs: number;
  logger?: Logger;
}

/** The retry loop: one round at a time, never overlapping, never throwing. */
export class DeactivationRetry {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private waitMs: number;
  private stopped = true;

  /**
   * @param service - settles the owed deactivations
   * @param options - intervals (ms), logger
   */
  constructor(
    private readonly service: PuppetDbService,
    private readonly options: DeactivationRetryOptions,
  ) {
    this.waitMs = options.intervalMs;
  }

  /** The wait before the next round, ms (doubles after a failing round). */
  get nextWaitMs(): number {
    return this.waitMs;
  }

  /** Starts the loop: the first round after `intervalMs`. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.round = this.runRound().finally(() => {
        this.round = undefined;
        this.schedule();
      });
    }, this.waitMs);
    this.timer.unref();
  }

  private async runRound(): Promise<void> {
    if (this.service.pendingNames().length === 0) {
      this.waitMs = this.options.intervalMs;
      return;
    }
    const outcome = await this.service.retryPending();
    this.waitMs = outcome.failed > 0 ? Math.min(this.waitMs * 2, this.options.maxIntervalMs) : this.options.intervalMs;
    this.options.logger?.info({ ...outcome, next_retry_s: this.waitMs / 1000 }, 'retried pending PuppetDB deactivations');
  }

  /** Stops the loop and waits for a round under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
  }
}
