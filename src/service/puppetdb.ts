/**
 * The rules of PuppetDB at termination (docs/design.md "PuppetDB at termination"):
 *
 * - When the node or certificate of an owned name is gone (the first DELETE of either), the
 *   deactivation is first recorded as owed — the ledger entry becomes `deleted` with
 *   `pending_steps: ["puppetdb_deactivation"]`, durably — and then settled: PuppetDB is asked
 *   about the certname, and `deactivate node` is sent only when PuppetDB knows it and it is
 *   active (a 404 is left alone: deactivating an unknown name creates a ghost row). Then every
 *   entry of that name owing the step is relieved of it (a `deleted` entry with nothing left
 *   owed is removed).
 * - Only a name the ledger says espm deleted is ever deactivated: a name espm does not own
 *   never gets an owed step, so it is never sent.
 * - PuppetDB down or refusing: the step stays owed (it survives restarts: it is in the ledger),
 *   the caller answers 502 `puppetdb_failed`; the next DELETE of the name or the background
 *   retry (src/service/deactivation-retry.ts) settles it.
 * - `GET /v1/nodes/N` and `/v1/certificates/N` show PuppetDB's view of N ({@link PuppetDbView}).
 *
 * @packageDocumentation
 */
import { ENTRY_KINDS, type EntryKind, type PendingStep } from '../ownership/entries.js';
import type { Ledger } from '../ownership/ledger.js';
import type { Logger } from '../logger.js';
import type { PuppetDb, PuppetDbNode } from '../puppetdb/puppetdb.js';
import { KeyedMutex } from '../keyed-mutex.js';
import { ServiceError } from './errors.js';

/** The pending step this service settles. */
export const DEACTIVATION: PendingStep = 'puppetdb_deactivation';

/**
 * What PuppetDB says about a certname: `unknown` (never reported), `active`, `deactivated`
 * (by espm or anyone), `expired` (by PuppetDB's `node-ttl`).
 */
export type PuppetDbState = 'unknown' | 'active' | 'deactivated' | 'expired';

/** The `puppetdb` member of `GET /v1/nodes/N` and `GET /v1/certificates/N`. */
export interface PuppetDbView {
  state: PuppetDbState;
  /** `changed` · `unchanged` · `failed` of the latest agent run; null before the first report. */
  latest_report_status: string | null;
  /** When that report was made (ISO 8601), or null. */
  report_timestamp: string | null;
}

/** Options of {@link PuppetDbService}. */
export interface PuppetDbServiceOptions {
  /** Outcomes (certnames, sent or not, PuppetDB's failure words); never a secret. */
  logger?: Logger;
  /** Clock, ms since the epoch (the `producer_timestamp` sent); default `Date.now`. */
  now?: () => number;
}

/** PuppetDB's record → the API's view. */
function viewOf(node: PuppetDbNode | undefined): PuppetDbView {
  if (node === undefined) return { state: 'unknown', latest_report_status: null, report_timestamp: null };
  const state: PuppetDbState = node.deactivated !== null ? 'deactivated' : node.expired !== null ? 'expired' : 'active';
  return { state, latest_report_status: node.latest_report_status, report_timestamp: node.report_timestamp };
}

/** What {@link PuppetDbService.retryPending} did. */
export interface RetryOutcome {
  /** Names whose deactivation was settled. */
  settled: number;
  /** Names whose deactivation is still owed. */
  failed: number;
}

/** Deactivation at termination and PuppetDB's view of owned names. */
export class PuppetDbService {
  /** One settlement per certname at a time (a DELETE and the retry may meet). */
  private readonly perName = new KeyedMutex();

  /**
   * @param puppetdb - the adapter
   * @param ledger - the ownership ledger (shared with the node and certificate services)
   * @param options - logger, clock
   */
  constructor(
    private readonly puppetdb: PuppetDb,
    private readonly ledger: Ledger,
    private readonly options: PuppetDbServiceOptions = {},
  ) {}

  /**
   * PuppetDB's view of a certname, for a GET.
   *
   * @returns the view, or null when PuppetDB could not be asked (a `warn` line says why)
   */
  async view(certname: string): Promise<PuppetDbView | null> {
    try {
      return viewOf(await this.puppetdb.node(certname));
    } catch (err) {
      this.options.logger?.warn({ certname, failure: (err as Error).message }, 'PuppetDB could not be asked about a node');
      return null;
    }
  }

  /** Kinds whose entry of `name` owes the deactivation. */
  private owing(name: string): EntryKind[] {
    return ENTRY_KINDS.filter((kind) => this.ledger.get(kind, name)?.pending_steps.includes(DEACTIVATION) === true);
  }

  /**
   * The backend object of the owned entry `kind`/`name` is gone: records the deactivation as
   * owed (durably, before PuppetDB is asked), then settles it.
   *
   * @throws {@link ServiceError} `puppetdb_failed` (502) when PuppetDB could not be asked or
   *   refused: the entry stays `deleted`, owing the step
   */
  async afterDeletion(kind: EntryKind, name: string): Promise<void> {
    await this.ledger.finishDeletion(kind, name, [DEACTIVATION]);
    await this.settle(name);
  }

  /**
   * Whether `kind`/`name` is a deleted entry still owing the deactivation (its next DELETE
   * settles it).
   */
  owes(kind: EntryKind, name: string): boolean {
    const entry = this.ledger.get(kind, name);
    return entry?.state === 'deleted' && entry.pending_steps.includes(DEACTIVATION);
  }

  /**
   * Settles the owed deactivation of `name`: deactivates it when PuppetDB knows it and it is
   * active, then relieves every entry of the name of the step. Nothing is sent when no entry
   * owes it (another call settled it, or espm never owned the name).
   *
   * @throws {@link ServiceError} `puppetdb_failed` — the step stays owed
   */
  async settle(name: string): Promise<void> {
    await this.perName.run(name, async () => {
      const owing = this.owing(name);
      if (owing.length === 0) return;
      let sent = false;
      try {
        const node = await this.puppetdb.node(name);
        if (node !== undefined && node.deactivated === null && node.expired === null) {
          await this.puppetdb.deactivate(name, new Date((this.options.now ?? Date.now)()));
          sent = true;
        }
      } catch (err) {
        const output = err instanceof Error && 'output' in err && err.output !== '' ? `: ${String(err.output)}` : '';
        this.options.logger?.warn({ certname: name, failure: (err as Error).message }, 'PuppetDB deactivation failed; it stays pending');
        throw new ServiceError(
          'puppetdb_failed',
          `deactivating ${name} in PuppetDB: ${(err as Error).message}${output}; ` +
            'the deletion itself is done, the deactivation stays pending (DELETE again, or espm retries it in the background)',
          { pending_steps: [DEACTIVATION] },
        );
      }
      for (const kind of owing) await this.ledger.completePendingStep(kind, name, DEACTIVATION);
      this.options.logger?.info({ certname: name, deactivated: sent }, sent ? 'node deactivated in PuppetDB' : 'PuppetDB has no active node of that name; nothing to deactivate');
    });
  }

  /** Certnames owing the deactivation (sorted). */
  pendingNames(): string[] {
    const names = this.ledger.list().filter((e) => e.pending_steps.includes(DEACTIVATION)).map((e) => e.name);
    return [...new Set(names)].sort();
  }

  /**
   * Settles every owed deactivation, one name after another (the background retry).
   *
   * @returns how many were settled and how many are still owed; never throws
   */
  async retryPending(): Promise<RetryOutcome> {
    const outcome: RetryOutcome = { settled: 0, failed: 0 };
    for (const name of this.pendingNames()) {
      try {
        await this.settle(name);
        outcome.settled += 1;
      } catch {
        outcome.failed += 1;
      }
    }
    return outcome;
  }
}
