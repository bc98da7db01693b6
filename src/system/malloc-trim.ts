/**
 * Gives the memory glibc's allocator keeps after it was freed back to the kernel: glibc's
 * `malloc_trim(0)`, called through the FFI package koffi (prebuilt binaries, no compiler), since
 * Node 20 has no API for it. After a flood of TLS connections the freed native memory of their
 * OpenSSL and TLS-wrap allocations stays resident in glibc's main arena (bench/RESULTS.md,
 * "Connection flood: where the RSS sits afterwards": 7 MB in use, ≈ 50 MB kept); a trim returns
 * the free pages of every arena, not only the top of the heap.
 *
 * Loaded lazily, at the first trim: koffi and libc are not opened in a daemon that never needs
 * them. On a system without glibc (musl, macOS, FreeBSD) or where loading fails, a trim is a
 * no-op, reported once in the log.
 *
 * Source of truth: `man 3 malloc_trim` (Linux man-pages; `int malloc_trim(size_t pad)`, glibc
 * `<malloc.h>`: returns 1 if memory was released to the system, 0 if not; since glibc 2.8 it
 * frees whole free pages in all arenas and all chunks, not only the top of the heap); koffi's
 * documentation (koffi.dev: `koffi.load`, `lib.func` with a C prototype).
 *
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../logger.js';

/** What one {@link MallocTrim.trim} did. */
export interface TrimResult {
  /** `malloc_trim`'s answer: true when it gave memory back to the kernel. */
  released: boolean;
  /** Resident set size before the call, bytes. */
  rssBeforeBytes: number;
  /** Resident set size after the call, bytes. */
  rssAfterBytes: number;
  /** How long `malloc_trim(0)` took, ms (it walks every arena's free chunks). */
  durationMs: number;
  /** How long the full garbage collection before it took, ms. */
  gcMs: number;
}

let fullGc: (() => void) | undefined;

/** Wait between the garbage collection and the trim, ms (the collected handles' native frees run meanwhile). */
const AFTER_GC_MS = 200;

/**
 * Runs a full V8 garbage collection. A closed TLS socket's native state (OpenSSL's SSL object,
 * its buffers) is freed when its JavaScript handle is collected, and an idle daemon may not run
 * a full collection for a long time: without it a trim finds much of the flood's memory still
 * allocated. Node exposes `gc` only under `--expose-gc`; the flag is set at run time and `gc`
 * taken from a new context (as jest-leak-detector does), leaving the main context's globals as
 * they are. Source: Node.js docs, `v8.setFlagsFromString` and `vm.runInNewContext`.
 */
export function collectGarbage(): void {
  if (fullGc === undefined) {
    setFlagsFromString('--expose-gc');
    fullGc = runInNewContext('gc') as () => void;
  }
  fullGc();
}

/** `malloc_trim(pad)`: 1 when memory was released, 0 when not. */
export type MallocTrimFunction = (pad: number) => number;

/**
 * Finds glibc's `malloc_trim`: the process must run on glibc (`process.report`'s
 * `glibcVersionRuntime`), then koffi opens `libc.so.6` and binds `int malloc_trim(size_t)`.
 *
 * @returns the bound function
 * @throws Error naming why it is unavailable (not glibc; koffi or libc.so.6 not loadable)
 */
export function loadGlibcMallocTrim(): MallocTrimFunction {
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
  if (header?.glibcVersionRuntime === undefined) throw new Error(`not glibc (${process.platform})`);
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const fn = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as MallocTrimFunction;
  return fn;
}

/**
 * Calls `malloc_trim(0)` on demand. Lifecycle: construct (nothing loaded) → {@link MallocTrim.trim}
 * any number of times (the first loads libc; if that fails every trim is a no-op, logged once at
 * info level).
 */
export class MallocTrim {
  /** undefined: not tried yet; null: unavailable. */
  private fn: MallocTrimFunction | null | undefined;

  /**
   * @param logger - where the release lines (RSS before/after, duration) and the one
   *   "unavailable" line go
   * @param load - finds `malloc_trim` (default {@link loadGlibcMallocTrim}; tests pass a failing one)
   */
  constructor(
    private readonly logger: Logger,
    private readonly load: () => MallocTrimFunction = loadGlibcMallocTrim,
  ) {}

  /** true when `malloc_trim` is bound, false when unavailable, undefined before the first trim. */
  get available(): boolean | undefined {
    return this.fn === undefined ? undefined : this.fn !== null;
  }

  /**
   * Runs a full garbage collection ({@link collectGarbage}), calls `malloc_trim(0)` and logs one info line `freed memory released to the system` with
   * the RSS before and after (MB) and the durations of both (ms). Synchronous: it blocks the
   * event loop for both (measured in bench/RESULTS.md, issue #18's last section).
   *
   * @param reason - why now, for the log line (e.g. `connections settled after a flood`)
   * @returns what it did, or null when `malloc_trim` is unavailable or the attempt failed
   *   (logged at warn); never rejects
   */
  async trim(reason: string): Promise<TrimResult | null> {
    try {
      return await this.attempt(reason);
    } catch (err) {
      this.logger.warn({ error: (err as Error).message }, 'releasing freed memory failed');
      return null;
    }
  }

  private async attempt(reason: string): Promise<TrimResult | null> {
    if (this.fn === undefined) {
      try {
        this.fn = this.load();
      } catch (err) {
        this.fn = null;
        this.logger.info({ error: (err as Error).message }, 'malloc_trim unavailable: freed memory is left to the allocator');
      }
    }
    if (this.fn === null) return null;
    const rssBeforeBytes = process.memoryUsage.rss();
    const ms = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e6;
    const gcStarted = process.hrtime.bigint();
    collectGarbage();
    const gcMs = ms(gcStarted);
    // Native state of collected handles is freed by V8's second-pass callbacks, after the GC.
    await new Promise((resolve) => setTimeout(resolve, AFTER_GC_MS));
    const started = process.hrtime.bigint();
    const released = this.fn(0) === 1;
    const durationMs = ms(started);
    const rssAfterBytes = process.memoryUsage.rss();
    const mb = (bytes: number): number => Math.round(bytes / 104857.6) / 10;
    const round2 = (n: number): number => Math.round(n * 100) / 100;
    this.logger.info(
      { reason, released, rss_before_mb: mb(rssBeforeBytes), rss_after_mb: mb(rssAfterBytes), gc_ms: round2(gcMs), trim_ms: round2(durationMs) },
      'freed memory released to the system',
    );
    return { released, rssBeforeBytes, rssAfterBytes, durationMs, gcMs };
  }
}
