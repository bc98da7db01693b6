/**
 * A pool of node RSA keys generated ahead of need, so that a certificate issue through the
 * puppetserver-api backend does not wait for a 4096-bit key generation (0.6–3 s on a 2-core
 * machine: a random prime search, bench/RESULTS.md) under the CA lock.
 *
 * Keys are made by Node's `crypto.generateKeyPair` in libuv's thread pool (never on the event
 * loop), one at a time in the background so at most one core is spent on refilling, and held
 * as `KeyObject`s in memory only: never written, never logged, dropped by {@link NodeKeyPool.close}
 * and gone when espm stops. Each key is handed out once. A request that finds the pool empty
 * waits for a key of its own (generated at once, in parallel with other waiters').
 *
 * @packageDocumentation
 */
import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { Logger } from '../logger.js';

/** The log message (info) of the first time the pool is full after start-up. */
export const NODE_KEY_POOL_READY = 'node key pool ready';

/** An RSA key pair for one node. The private key is secret. */
export interface NodeKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Makes one RSA key pair of `keyBits` bits (exponent 65537). */
export type NodeKeyGenerator = (keyBits: number) => Promise<NodeKeyPair>;

const generateRsaKeyPair = promisify(generateKeyPair);

/**
 * Generates one node RSA key pair with Node's `crypto.generateKeyPair` (OpenSSL, in the thread
 * pool), public exponent 65537.
 *
 * @param keyBits - modulus size, bits (`[ca] key_bits`, 2048–16384)
 * @throws the OpenSSL error when the size is refused
 */
export const generateNodeKey: NodeKeyGenerator = (keyBits) =>
  generateRsaKeyPair('rsa', { modulusLength: keyBits, publicExponent: 0x10001 });

/** Options of a {@link NodeKeyPool}. */
export interface NodeKeyPoolOptions {
  /** Keys kept ready (`[ca] key_pool`); 0 = no pool, every key is generated when asked for. */
  size: number;
  /** Modulus size of every key, bits (`[ca] key_bits`). */
  keyBits: number;
  /** The generator (default {@link generateNodeKey}; tests pass a counting or failing one). */
  generate?: NodeKeyGenerator;
  /** Where a failed background generation is reported (warn; the error message only). */
  logger?: Logger;
}

/** A caller waiting for a key. */
interface Waiter {
  resolve: (key: NodeKeyPair) => void;
  reject: (err: unknown) => void;
}

/**
 * Node keys kept ready: {@link take} hands one out (or waits for a fresh one), and the pool
 * refills itself in the background, one key at a time, up to its size. Filling starts with
 * {@link start} (espm calls it once listening) or at the first {@link take}.
 */
export class NodeKeyPool {
  private readonly ready: NodeKeyPair[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly generate: NodeKeyGenerator;
  /** Generations running now (for waiters and at most one for the background refill). */
  private inFlight = 0;
  private started = false;
  private closed = false;
  /** Set after a background generation failed: no more background refills until the next take(). */
  private backgroundPaused = false;
  /** Whether the pool has been full once (logged once, at info: {@link NODE_KEY_POOL_READY}). */
  private filledOnce = false;

  /** @param options - size, key size, generator, logger */
  constructor(private readonly options: NodeKeyPoolOptions) {
    this.generate = options.generate ?? generateNodeKey;
  }

  /** Keys ready to be handed out now. */
  get available(): number {
    return this.ready.length;
  }

  /** Key generations running now. */
  get generating(): number {
    return this.inFlight;
  }

  /** Starts filling the pool in the background (once; no-op when the size is 0 or the pool is closed). */
  start(): void {
    this.started = true;
    this.topUp();
  }

  /**
   * A key for one node, never handed out before: one from the pool, or, when it is empty, a
   * fresh one (the caller waits for its generation). Starts the background refill.
   *
   * @throws the generator's error when a fresh key could not be made; `Error` after {@link close}
   */
  take(): Promise<NodeKeyPair> {
    if (this.closed) return Promise.reject(new Error('the node key pool is closed'));
    this.started = true;
    this.backgroundPaused = false;
    const key = this.ready.shift();
    const answer = key !== undefined ? Promise.resolve(key) : new Promise<NodeKeyPair>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.topUp();
    return answer;
  }

  /** Drops every ready key and stops refilling; waiters are rejected. Generations under way finish and are discarded. */
  close(): void {
    this.closed = true;
    this.ready.length = 0;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('the node key pool is closed'));
  }

  /**
   * Starts generations: one per waiter not yet covered, plus one in the background while the
   * pool is below its size (never more than one background generation at a time).
   */
  private topUp(): void {
    if (this.closed) return;
    const missing = this.options.size - this.ready.length;
    const background = this.started && !this.backgroundPaused && missing - Math.max(0, this.inFlight - this.waiters.length) > 0 ? 1 : 0;
    const wanted = this.waiters.length + background;
    while (this.inFlight < wanted) {
      this.inFlight += 1;
      this.generate(this.options.keyBits).then(
        (key) => this.generated(key),
        (err: unknown) => this.failed(err),
      );
    }
  }

  private generated(key: NodeKeyPair): void {
    this.inFlight -= 1;
    if (this.closed) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter.resolve(key);
    else if (this.ready.length < this.options.size) {
      this.ready.push(key);
      if (!this.filledOnce && this.ready.length === this.options.size) {
        this.filledOnce = true;
        this.options.logger?.info({ keys: this.options.size, key_bits: this.options.keyBits }, NODE_KEY_POOL_READY);
      }
    }
    this.topUp();
  }

  private failed(err: unknown): void {
    this.inFlight -= 1;
    if (this.closed) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter.reject(err);
    else {
      this.backgroundPaused = true;
      this.options.logger?.warn({ key_bits: this.options.keyBits, error: (err as Error).message }, 'node key generation failed; the key pool refills at the next certificate issue');
    }
    this.topUp();
  }
}
