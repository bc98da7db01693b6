import { createPublicKey } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { generateNodeKey, NODE_KEY_POOL_READY, NodeKeyPool, type NodeKeyPair } from '../../src/ca/node-key-pool.js';
import { createLogger } from '../../src/logger.js';
import { LogCapture } from '../support/espm.js';

/** A generator whose generations finish only when the test says so. */
class ControlledGenerator {
  readonly pending: { bits: number; resolve: (k: NodeKeyPair) => void; reject: (e: Error) => void }[] = [];
  started = 0;
  maxInFlight = 0;
  /** Key size asked for by each generation, in order. */
  readonly bits: number[] = [];
  private made = 0;
  /** Cheap stand-ins for keys: distinct objects, told apart by `id`. */
  readonly generate = (bits: number): Promise<NodeKeyPair> => {
    this.started += 1;
    this.bits.push(bits);
    return new Promise<NodeKeyPair>((resolve, reject) => {
      this.pending.push({ bits, resolve, reject });
      this.maxInFlight = Math.max(this.maxInFlight, this.pending.length);
    });
  };
  /** Finishes the oldest generation with a new key, whose id it returns. */
  finish(): number {
    const next = this.pending.shift();
    if (next === undefined) throw new Error('no generation in flight');
    const id = ++this.made;
    next.resolve({ privateKey: { id } as never, publicKey: { id } as never });
    return id;
  }
  fail(message: string): void {
    const next = this.pending.shift();
    if (next === undefined) throw new Error('no generation in flight');
    next.reject(new Error(message));
  }
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
const idOf = (k: NodeKeyPair): number => (k.privateKey as unknown as { id: number }).id;

describe('NodeKeyPool', () => {
  it('fills up to its size in the background, one key at a time, with the configured key size', async () => {
    const gen = new ControlledGenerator();
    const logs = new LogCapture();
    const pool = new NodeKeyPool({ size: 3, keyBits: 3072, generate: gen.generate, logger: createLogger({ level: 'info', format: 'json', destination: logs }) });
    expect(gen.started).toBe(0); // nothing before start()
    pool.start();
    for (let i = 1; i <= 3; i++) {
      expect(gen.pending).toHaveLength(1);
      expect(logs.text()).not.toContain(NODE_KEY_POOL_READY);
      gen.finish();
      await settle();
      expect(pool.available).toBe(i);
    }
    // Full once: one info line, not repeated after later refills.
    expect(logs.records().filter((r) => r['msg'] === NODE_KEY_POOL_READY)).toEqual([expect.objectContaining({ level: 30, keys: 3, key_bits: 3072 })]);
    await pool.take();
    gen.finish();
    await settle();
    expect(pool.available).toBe(3);
    expect(logs.records().filter((r) => r['msg'] === NODE_KEY_POOL_READY)).toHaveLength(1);
    expect(gen.pending).toHaveLength(0);
    expect(gen.started).toBe(4); // 3 to fill, 1 to refill after the take
    expect(gen.maxInFlight).toBe(1);
    expect(gen.bits).toEqual([3072, 3072, 3072, 3072]);
    pool.close();
  });

  it('hands out a ready key at once, each key only once, and refills behind it', async () => {
    const gen = new ControlledGenerator();
    const pool = new NodeKeyPool({ size: 2, keyBits: 4096, generate: gen.generate });
    pool.start();
    gen.finish();
    await settle();
    gen.finish();
    await settle();
    expect(pool.available).toBe(2);
    const first = await pool.take();
    const second = await pool.take();
    expect(idOf(first)).not.toBe(idOf(second));
    expect(pool.available).toBe(0);
    expect(gen.pending).toHaveLength(1); // one background refill, not two
    expect(gen.pending[0]!.bits).toBe(4096);
    gen.finish();
    await settle();
    expect(pool.available).toBe(1);
    const third = await pool.take();
    expect([idOf(first), idOf(second)]).not.toContain(idOf(third));
    pool.close();
  });

  it('an empty pool makes a key per waiting caller, in parallel, and gives the first one done to the first caller', async () => {
    const gen = new ControlledGenerator();
    const pool = new NodeKeyPool({ size: 0, keyBits: 2048, generate: gen.generate });
    const waiting = [pool.take(), pool.take(), pool.take()];
    expect(gen.pending).toHaveLength(3);
    const ids = [gen.finish(), gen.finish(), gen.finish()];
    expect((await Promise.all(waiting)).map(idOf)).toEqual(ids);
    await settle();
    expect(gen.pending).toHaveLength(0); // size 0: nothing in the background
    expect(pool.available).toBe(0);
  });

  it('a caller arriving while the background refill runs gets that key, and the refill goes on', async () => {
    const gen = new ControlledGenerator();
    const pool = new NodeKeyPool({ size: 2, keyBits: 2048, generate: gen.generate });
    pool.start();
    expect(gen.pending).toHaveLength(1);
    const taken = pool.take();
    expect(gen.pending).toHaveLength(2); // the caller's own plus the background one
    const id = gen.finish();
    expect(idOf(await taken)).toBe(id);
    gen.finish();
    await settle();
    expect(pool.available).toBe(1);
    expect(gen.pending).toHaveLength(1);
    pool.close();
  });

  it('a failed generation rejects the caller waiting for it; a failed background one is logged and pauses the refill until the next take', async () => {
    const gen = new ControlledGenerator();
    const logs = new LogCapture();
    const pool = new NodeKeyPool({ size: 2, keyBits: 2048, generate: gen.generate, logger: createLogger({ level: 'info', format: 'json', destination: logs }) });
    const waiting = pool.take();
    expect(gen.pending).toHaveLength(2);
    gen.fail('out of entropy');
    await expect(waiting).rejects.toThrow('out of entropy');
    gen.fail('out of entropy again');
    await settle();
    expect(logs.text()).toContain('node key generation failed');
    expect(logs.text()).toContain('out of entropy again');
    expect(gen.pending).toHaveLength(0); // no hot loop of failures
    const next = pool.take();
    expect(gen.pending.length).toBeGreaterThanOrEqual(1);
    gen.finish();
    await expect(next).resolves.toBeDefined();
    pool.close();
  });

  it('close drops the ready keys, rejects waiters and refuses further takes; keys finished afterwards are discarded', async () => {
    const gen = new ControlledGenerator();
    const pool = new NodeKeyPool({ size: 2, keyBits: 2048, generate: gen.generate });
    pool.start();
    gen.finish();
    await settle();
    expect(pool.available).toBe(1);
    pool.close();
    expect(pool.available).toBe(0);
    gen.finish();
    await settle();
    expect(pool.available).toBe(0);
    expect(gen.pending).toHaveLength(0);
    await expect(pool.take()).rejects.toThrow(/closed/);
    const other = new NodeKeyPool({ size: 0, keyBits: 2048, generate: gen.generate });
    const waiter = other.take();
    other.close();
    await expect(waiter).rejects.toThrow(/closed/);
  });

  it('with the real generator, hands out distinct RSA keys of the configured size', async () => {
    const pool = new NodeKeyPool({ size: 1, keyBits: 2048 });
    pool.start();
    const [a, b] = await Promise.all([pool.take(), pool.take()]);
    pool.close();
    for (const k of [a, b]) {
      expect(k.privateKey.asymmetricKeyType).toBe('rsa');
      expect(k.privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      expect(createPublicKey(k.privateKey).equals(k.publicKey)).toBe(true);
    }
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
    const direct = await generateNodeKey(2048);
    expect(direct.publicKey.asymmetricKeyDetails?.publicExponent).toBe(65537n);
  });
});
