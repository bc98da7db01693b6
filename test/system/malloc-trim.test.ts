/**
 * glibc's malloc_trim through koffi (src/system/malloc-trim.ts): on this Linux/glibc machine the
 * real call runs and gives memory back; where it cannot be loaded every trim is a no-op,
 * logged once.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { loadGlibcMallocTrim, MallocTrim } from '../../src/system/malloc-trim.js';

/** A pino logger writing parsed lines into `lines`. */
function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('MallocTrim', () => {
  it('on glibc: binds malloc_trim, gives freed memory back and logs RSS before/after and durations', async () => {
    expect(typeof loadGlibcMallocTrim()).toBe('function');
    const { logger, lines } = capture();
    const trim = new MallocTrim(logger);
    expect(trim.available).toBeUndefined();
    // Freed native memory for the trim to find: many small Buffers (malloc'd, below the mmap threshold).
    let chunks: Buffer[] | null = Array.from({ length: 20_000 }, () => Buffer.allocUnsafeSlow(2048).fill(1));
    expect(chunks.length).toBe(20_000);
    chunks = null;
    const result = await trim.trim('test');
    expect(trim.available).toBe(true);
    expect(result).not.toBeNull();
    expect(result!.released).toBe(true);
    expect(result!.durationMs).toBeGreaterThanOrEqual(0);
    expect(result!.gcMs).toBeGreaterThan(0);
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual([
      expect.objectContaining({ level: 30, msg: 'freed memory released to the system', reason: 'test', released: true, rss_before_mb: expect.any(Number), rss_after_mb: expect.any(Number), gc_ms: expect.any(Number), trim_ms: expect.any(Number) }),
    ]);
  });

  it('where malloc_trim cannot be loaded: every trim is a no-op, reported once', async () => {
    const { logger, lines } = capture();
    let loads = 0;
    const trim = new MallocTrim(logger, () => {
      loads += 1;
      throw new Error('not glibc (linux-musl)');
    });
    expect(await trim.trim('test')).toBeNull();
    expect(await trim.trim('test')).toBeNull();
    expect(trim.available).toBe(false);
    expect(loads).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual([expect.objectContaining({ level: 30, msg: 'malloc_trim unavailable: freed memory is left to the allocator', error: 'not glibc (linux-musl)' })]);
  });
});
