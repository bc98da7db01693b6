/**
 * The Node Classifier's groups read (`GET /v1/groups`, every group) shared by the
 * pe-node-classifier adapter's creates: one read in flight at a time, joined by every create
 * that comes while it is, and remembered for a short while after it is answered. Issue #19: a
 * burst of launches costs one groups read, not one per launch (on a PE install with thousands
 * of groups, each read is heavy). Source of truth: docs/design.md ("`pe-node-classifier`").
 *
 * When a read may answer a create of node N (its `NodeExistsError` check and the chosen
 * groups' ids):
 * - espm's per-node group of ANOTHER name M does not change that answer: its rule names only M
 *   and per-node groups are never chosen groups. So a create does not forget the read for the
 *   others; it only marks the reads it may be missing from ({@link GroupsRead.createdSince}),
 *   so that a second create of the same N reads again (the contract's NodeExistsError). In the
 *   daemon a second create of N never races the first anyway: the node service runs one
 *   operation per name at a time (`KeyedMutex` `perName` in src/service/nodes.ts) and the
 *   ledger refuses a create of a name it holds (`node_exists` before the adapter is called).
 * - a delete or a rollback removes a per-node group: a read taken before it ends — answered
 *   or still in flight — could show N as existing. {@link SharedGroupsRead.forget} moves the
 *   generation on; a read of an older generation answers no later create.
 *
 * @packageDocumentation
 */
import type { NcGroup } from './node-classifier-api.js';

/** One groups read. */
interface GroupsRead {
  /** The generation it was started in (see {@link SharedGroupsRead.forget}). */
  readonly generation: number;
  /** The groups, once answered. */
  readonly answer: Promise<NcGroup[]>;
  /** When it was answered (ms since the epoch); undefined while in flight. */
  answeredAt?: number;
  /** Names whose per-node group espm began to create after this read was started: it may not show them. */
  readonly createdSince: Set<string>;
}

/**
 * One shared `GET /v1/groups` for the pe-node-classifier adapter (one shared promise, cleared
 * when it settles; a generation counter for what deletes make stale).
 */
export class SharedGroupsRead {
  private generation = 0;
  private inFlight: GroupsRead | undefined;
  private last: GroupsRead | undefined;
  /** Names whose `POST /v1/groups` is under way: a read started now may not show them. */
  private readonly posting = new Set<string>();

  /**
   * @param read - sends one `GET /v1/groups` (its errors are passed on as they are)
   * @param reuseMs - how long an answered read stays good for a create, ms
   * @param now - the clock, ms since the epoch
   */
  constructor(
    private readonly read: () => Promise<NcGroup[]>,
    private readonly reuseMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A new read (the service's list read: it wants the NC as it is now), which creates that
   * come while it is in flight join.
   *
   * @throws whatever `read` throws
   */
  fresh(): Promise<NcGroup[]> {
    return this.start().answer;
  }

  /**
   * The groups for a create of `name`: a read answered ≤ `reuseMs` ago, else the one in
   * flight, else a new one — each only when nothing since its start can make it wrong about
   * `name` (a delete/rollback, or espm's own create of `name`); read again when a delete ends
   * while it was in flight.
   *
   * @throws whatever `read` throws
   */
  async forCreate(name: string): Promise<NcGroup[]> {
    for (;;) {
      const last = this.last;
      const reusable = last !== undefined && this.holdsFor(last, name) && this.now() - (last.answeredAt ?? 0) <= this.reuseMs ? last : undefined;
      const inFlight = this.inFlight !== undefined && this.holdsFor(this.inFlight, name) ? this.inFlight : undefined;
      const chosen = reusable ?? inFlight ?? this.start();
      const groups = await chosen.answer;
      if (this.holdsFor(chosen, name)) return groups;
    }
  }

  /**
   * Runs `post` (the `POST /v1/groups` of `name`'s per-node group) with every read that may
   * miss its outcome marked as not answering for `name`.
   *
   * @returns what `post` returns
   * @throws whatever `post` throws
   */
  async creating<T>(name: string, post: () => Promise<T>): Promise<T> {
    this.posting.add(name);
    this.last?.createdSince.add(name);
    this.inFlight?.createdSince.add(name);
    try {
      return await post();
    } finally {
      this.posting.delete(name);
    }
  }

  /** After a delete or a rollback (called when it has ended, however): no read taken until now answers a later create. */
  forget(): void {
    this.generation += 1;
    this.last = undefined;
    this.inFlight = undefined;
  }

  private holdsFor(read: GroupsRead, name: string): boolean {
    return read.generation === this.generation && !read.createdSince.has(name);
  }

  private start(): GroupsRead {
    const read: GroupsRead = {
      generation: this.generation,
      createdSince: new Set(this.posting),
      answer: this.read().then((groups) => {
        read.answeredAt = this.now();
        if (read.generation === this.generation) this.last = read;
        return groups;
      }),
    };
    this.inFlight = read;
    const clear = (): void => {
      if (this.inFlight === read) this.inFlight = undefined;
    };
    read.answer.then(clear, clear);
    return read;
  }
}
