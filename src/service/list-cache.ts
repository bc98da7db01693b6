/**
 * A cached, coalesced list (the console's groups or classes): calls within `ttlMs` of a fetch
 * get the cached names; concurrent callers while a fetch runs share that one fetch (one
 * process); a refresh bypasses the cache but still joins a fetch already under way.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';

/** A list as served: names and an ETag derived from them. */
export interface CachedList {
  /** Sorted names. */
  names: readonly string[];
  /** Strong ETag (quoted SHA-256 prefix of the names). */
  etag: string;
}

/** The ETag of a list of names: quoted, 32 hex digits of SHA-256 over the JSON. */
export function listEtag(names: readonly string[]): string {
  return `"${createHash('sha256').update(JSON.stringify(names)).digest('hex').slice(0, 32)}"`;
}

/** One cached list. */
export class ListCache {
  private value: { list: CachedList; fetchedAt: number } | undefined;
  private inflight: Promise<CachedList> | undefined;

  /**
   * @param fetch - fetches the names (a backend call); its errors reach every waiting caller
   * @param ttlMs - how long a fetched list is served, ms (0: every call fetches, but
   *   concurrent calls still share one fetch)
   * @param now - clock, ms; default `Date.now`
   */
  constructor(
    private readonly fetch: () => Promise<string[]>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The list, from the cache when fresh.
   *
   * @param refresh - ignore the cached value
   * @throws whatever `fetch` throws (nothing is cached then)
   */
  async get(refresh = false): Promise<CachedList> {
    if (!refresh && this.value !== undefined && this.now() - this.value.fetchedAt < this.ttlMs) {
      return this.value.list;
    }
    if (this.inflight === undefined) {
      const started = this.now();
      this.inflight = this.fetch()
        .then((names) => {
          const list = { names: [...names], etag: listEtag(names) };
          this.value = { list, fetchedAt: started };
          return list;
        })
        .finally(() => {
          this.inflight = undefined;
        });
    }
    return this.inflight;
  }

  /**
   * Fills the cache with a list learned elsewhere (e.g. at start-up), as if fetched now,
   * unless a value fetched later than `fetchedAt` is already held.
   *
   * @param names - the names
   * @param fetchedAt - when they were read, ms; default now
   */
  prime(names: readonly string[], fetchedAt: number = this.now()): void {
    if (this.value !== undefined && this.value.fetchedAt >= fetchedAt) return;
    this.value = { list: { names: [...names], etag: listEtag(names) }, fetchedAt };
  }

  /** Forgets the cached value (the next call fetches). */
  invalidate(): void {
    this.value = undefined;
  }
}
