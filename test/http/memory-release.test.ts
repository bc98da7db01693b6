/**
 * When espm gives freed memory back after a flood (src/http/memory-release.ts): armed at the
 * high-water mark, one release SETTLE_MS after the count fell to a quarter of it, never per
 * connection. Jest's fake clock stands in for the 5 s wait.
 */
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { MemoryReleaseTrigger, SETTLE_MS } from '../../src/http/memory-release.js';

/** A trigger with threshold 100 (low water 25) whose releases are recorded. */
function trigger(threshold = 100, released = true): { t: MemoryReleaseTrigger; calls: number[] } {
  const calls: number[] = [];
  const t = new MemoryReleaseTrigger({
    threshold,
    release: () => {
      calls.push(Date.now());
      return Promise.resolve(released);
    },
  });
  return { t, calls };
}

/** Feeds open counts one connection at a time from `from` to `to`. */
function walk(t: MemoryReleaseTrigger, from: number, to: number): void {
  const step = to > from ? 1 : -1;
  for (let n = from + step; step > 0 ? n <= to : n >= to; n += step) t.update(n);
}

describe('MemoryReleaseTrigger', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('after the count reached the threshold and fell to a quarter of it: one release SETTLE_MS later, counted', async () => {
    const { t, calls } = trigger();
    walk(t, 0, 100);
    walk(t, 100, 25);
    jest.advanceTimersByTime(SETTLE_MS - 1);
    expect(calls).toHaveLength(0);
    // Further closes do not restart or add timers: one release.
    walk(t, 25, 0);
    await jest.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([SETTLE_MS]);
    expect(t.releases).toBe(1);
    await jest.advanceTimersByTimeAsync(10 * SETTLE_MS);
    expect(calls).toHaveLength(1);
  });

  it('a burst below the threshold never releases', async () => {
    const { t, calls } = trigger();
    walk(t, 0, 99);
    walk(t, 99, 0);
    await jest.advanceTimersByTimeAsync(10 * SETTLE_MS);
    expect(calls).toHaveLength(0);
  });

  it('the count still above a quarter of the threshold: no release until it falls that low', async () => {
    const { t, calls } = trigger();
    walk(t, 0, 100);
    walk(t, 100, 26);
    await jest.advanceTimersByTimeAsync(10 * SETTLE_MS);
    expect(calls).toHaveLength(0);
    t.update(25);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(calls).toHaveLength(1);
  });

  it('a new flood during the wait cancels it; the release follows the last flood', async () => {
    const { t, calls } = trigger();
    walk(t, 0, 100);
    walk(t, 100, 0);
    await jest.advanceTimersByTimeAsync(SETTLE_MS / 2);
    walk(t, 0, 100);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(calls).toHaveLength(0);
    walk(t, 100, 0);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(calls).toEqual([SETTLE_MS / 2 + SETTLE_MS + SETTLE_MS]);
  });

  it('the count back above a quarter when the wait ends: no release then, one at the next fall', async () => {
    const { t, calls } = trigger();
    walk(t, 0, 100);
    walk(t, 100, 10);
    walk(t, 10, 50);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(calls).toHaveLength(0);
    walk(t, 50, 10);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(calls).toHaveLength(1);
  });

  it('one release per flood: disarmed after it, armed again by the next flood', async () => {
    const { t, calls } = trigger();
    for (let flood = 0; flood < 3; flood++) {
      walk(t, 0, 120);
      walk(t, 120, 0);
      await jest.advanceTimersByTimeAsync(SETTLE_MS);
      // Small traffic afterwards does not release again.
      walk(t, 0, 3);
      walk(t, 3, 0);
      await jest.advanceTimersByTimeAsync(SETTLE_MS);
    }
    expect(calls).toHaveLength(3);
    expect(t.releases).toBe(3);
  });

  it('threshold 0 never releases; a release that could not run is not counted; close cancels a pending one', async () => {
    const off = trigger(0);
    walk(off.t, 0, 1000);
    walk(off.t, 1000, 0);
    await jest.advanceTimersByTimeAsync(10 * SETTLE_MS);
    expect(off.calls).toHaveLength(0);

    const unavailable = trigger(100, false);
    walk(unavailable.t, 0, 100);
    walk(unavailable.t, 100, 0);
    await jest.advanceTimersByTimeAsync(SETTLE_MS);
    expect(unavailable.calls).toHaveLength(1);
    expect(unavailable.t.releases).toBe(0);

    const closed = trigger();
    walk(closed.t, 0, 100);
    walk(closed.t, 100, 0);
    closed.t.close();
    await jest.advanceTimersByTimeAsync(10 * SETTLE_MS);
    expect(closed.calls).toHaveLength(0);
  });
});
