/**
 * When to give freed memory back after a flood of connections (issue #18): once the number of
 * open connections reached a high-water mark (`[server] release_memory_after`) and then fell to a
 * quarter of that mark, one release (a full GC and `malloc_trim(0)`, src/system/malloc-trim.ts)
 * runs {@link SETTLE_MS} later if the count is still that low. Never per connection, never on the request
 * path: a timer, at most one per flood.
 *
 * Source of truth: bench/RESULTS.md ("Connection flood: where the RSS sits afterwards"),
 * docs/operations.md ("Connection limits and timeouts").
 *
 * @packageDocumentation
 */

/** How long the open count must stay low after a flood before the release, ms. */
export const SETTLE_MS = 5_000;

/** What {@link MemoryReleaseTrigger} needs. */
export interface MemoryReleaseOptions {
  /** High-water mark of open connections that arms a release, connections; 0 = never. */
  threshold: number;
  /** Gives freed memory back; resolves true when it did (counted), false when it could not. Never rejects. */
  release: () => Promise<boolean>;
  /** ms the count must stay at or below a quarter of `threshold`; default {@link SETTLE_MS}. */
  settleMs?: number;
}

/**
 * Watches the open-connection count. Lifecycle: construct → {@link MemoryReleaseTrigger.update}
 * on every change of the count → {@link MemoryReleaseTrigger.close} when the server stops.
 *
 * Armed when the count reaches `threshold`; when armed and the count falls to
 * `floor(threshold / 4)` or below, a timer of `settleMs` starts (once; a count back at
 * `threshold` cancels it). When it fires and the count is still that low, `release` runs once and
 * the trigger disarms until the next high-water mark; otherwise it waits for the next fall.
 */
export class MemoryReleaseTrigger {
  private armed = false;
  private open = 0;
  private timer: NodeJS.Timeout | undefined;
  private done = 0;
  private readonly low: number;
  private readonly settleMs: number;

  constructor(private readonly options: MemoryReleaseOptions) {
    this.low = Math.floor(options.threshold / 4);
    this.settleMs = options.settleMs ?? SETTLE_MS;
  }

  /** Releases done since start-up (those `release` reported as done). */
  get releases(): number {
    return this.done;
  }

  /**
   * Notes the open-connection count after a connection opened or closed.
   *
   * @param open - connections open now
   */
  update(open: number): void {
    this.open = open;
    if (this.options.threshold <= 0) return;
    if (open >= this.options.threshold) {
      this.armed = true;
      this.cancel();
    } else if (this.armed && open <= this.low && this.timer === undefined) {
      this.timer = setTimeout(() => this.settled(), this.settleMs);
      this.timer.unref();
    }
  }

  /** Cancels a pending release. */
  close(): void {
    this.cancel();
  }

  private settled(): void {
    this.timer = undefined;
    if (this.open > this.low) return;
    this.armed = false;
    void this.options.release().then((released) => {
      if (released) this.done += 1;
    });
  }

  private cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
