/**
 * The rules of classification: discover groups and classes, create a node with them (and
 * parameters), delete it — only ever a node espm created, as the ledger says.
 *
 * Create: owned name? → 409 · groups/classes known (cached lists, re-checked fresh before
 * refusing)? else 422 listing them · parameters storable (`unstorableParameters`)? else 422 ·
 * ledger `pending` (write-ahead) · `classifier.create` (the adapter's own steps and their
 * rollback are the adapter's) · ledger `present` with the adapter's receipt. An outcome-unknown
 * failure (`timeout`, `interrupted`) leaves the name `uncertain`; any other failure removes
 * the entry. Delete: owned and present only (404 otherwise, 409 when uncertain), with the
 * stored receipt; when the adapter finds the receipt's object is no longer what espm made
 * (`NotOwnedError`), the name becomes `uncertain` (409). With PuppetDB on, a deleted node's
 * certname is then deactivated in PuppetDB (src/service/puppetdb.ts): a failure there answers
 * 502 `puppetdb_failed` and leaves the entry `deleted`, owing the deactivation, which the next
 * DELETE settles. Source of truth: docs/design.md ("Ownership", "PuppetDB at termination").
 * One operation per name at a time.
 *
 * @packageDocumentation
 */
import { ClassifierError, NodeExistsError, NotOwnedError, type Classifier } from '../classifier/classifier.js';
import { outcomeUnknown } from '../backend.js';
import type { Logger } from '../logger.js';
import type { NodeRequest } from '../names.js';
import type { NodeEntry, NodeRecord, Receipt } from '../ownership/entries.js';
import type { Ledger } from '../ownership/ledger.js';
import { backendProblem, ServiceError } from './errors.js';
import { KeyedMutex } from '../keyed-mutex.js';
import { ListCache, type CachedList } from './list-cache.js';
import type { PuppetDbService, PuppetDbView } from './puppetdb.js';

/** A node espm created, as the API answers it. */
export interface OwnedNode {
  name: string;
  groups: string[];
  classes: string[];
  parameters: Record<string, string>;
  /** When espm created it (ISO-8601). */
  created_at: string;
}

/** A node espm created, with PuppetDB's view of it when PuppetDB is on (null: PuppetDB could not be asked). */
export interface DescribedNode extends OwnedNode {
  puppetdb?: PuppetDbView | null;
}

/** Options of {@link NodeService}. */
export interface NodeServiceOptions {
  /** How long group/class lists are cached, ms. */
  cacheTtlMs: number;
  logger?: Logger;
  /** Clock, ms; default `Date.now`. */
  now?: () => number;
  /**
   * Called after every successful console call that changes a node, before the ledger
   * records the outcome (crash-consistency tests widen that window with it). Default none.
   */
  afterBackend?: () => Promise<void>;
  /** PuppetDB at termination; undefined = `[puppetdb] url` empty (off). */
  puppetdb?: PuppetDbService;
}

/** The classification service. */
export class NodeService {
  private readonly groups: ListCache;
  private readonly classes: ListCache;
  private readonly perName = new KeyedMutex();

  /**
   * @param classifier - the console adapter
   * @param ledger - the ownership ledger (shared with the certificate service)
   * @param options - cache TTL, logger, clock
   */
  constructor(
    private readonly classifier: Classifier,
    private readonly ledger: Ledger,
    private readonly options: NodeServiceOptions,
  ) {
    this.groups = new ListCache(() => classifier.listGroups(), options.cacheTtlMs, options.now);
    this.classes = new ListCache(() => classifier.listClasses(), options.cacheTtlMs, options.now);
    classifier.onListLearned?.((list, names) => (list === 'groups' ? this.groups : this.classes).prime(names));
  }

  /**
   * The console's node groups (cached, coalesced).
   *
   * @param refresh - bypass the cache
   * @throws {@link ServiceError} `backend_failed` / `backend_timeout`
   */
  async listGroups(refresh = false): Promise<CachedList> {
    try {
      return await this.groups.get(refresh);
    } catch (err) {
      throw backendProblem(err, 'listing node groups');
    }
  }

  /**
   * The console's classes (cached, coalesced).
   *
   * @param refresh - bypass the cache
   * @throws {@link ServiceError} `backend_failed` / `backend_timeout`
   */
  async listClasses(refresh = false): Promise<CachedList> {
    try {
      return await this.classes.get(refresh);
    } catch (err) {
      throw backendProblem(err, 'listing classes');
    }
  }

  /**
   * Names of `wanted` not in the list; when some are missing from the cached list, checks a
   * fresh one before saying so (the console may have gained them since).
   */
  private async unknownNames(wanted: readonly string[], list: (refresh: boolean) => Promise<CachedList>): Promise<string[]> {
    if (wanted.length === 0) return [];
    const missing = (known: CachedList) => [...new Set(wanted.filter((n) => !known.names.includes(n)))];
    const cached = missing(await list(false));
    return cached.length === 0 ? [] : missing(await list(true));
  }

  /**
   * Creates a node in the console and records it as espm's.
   *
   * @param request - validated name, groups, classes, parameters
   * @returns the node as created
   * @throws {@link ServiceError} `node_exists` (409), `unknown_group`/`unknown_class`/
   *   `unsupported_parameter` (422; nothing written after the list check), `backend_failed`
   *   (502; the adapter has rolled back its own steps, or — `interrupted` — could not, and the
   *   name is `uncertain`), `backend_timeout` (504; `uncertain`), `backend_unavailable` (503)
   */
  async create(request: NodeRequest): Promise<OwnedNode> {
    return this.perName.run(request.name, async () => {
      const { name } = request;
      const existing = this.ledger.get('node', name);
      if (existing?.state === 'deleted') {
        throw new ServiceError('node_exists', `node ${name} was deleted but its deactivation in PuppetDB is still pending; DELETE it again first`);
      }
      if (existing !== undefined) {
        throw new ServiceError('node_exists', `a node named ${name} exists (created by espm)`);
      }
      // Independent look-ups run at once (on a cold cache: both lists and the console's
      // abilities); their verdicts are then judged in order: unknown names before parameters.
      const wantsParameters = Object.keys(request.parameters).length > 0;
      const [groups, classes, storable] = await Promise.allSettled([
        this.unknownNames(request.groups, (r) => this.listGroups(r)),
        this.unknownNames(request.classes, (r) => this.listClasses(r)),
        wantsParameters ? this.classifier.unstorableParameters(request.parameters) : Promise.resolve({}),
      ]);
      const unknownGroups = settled(groups);
      const unknownClasses = settled(classes);
      if (unknownGroups.length > 0 || unknownClasses.length > 0) {
        const parts = [
          unknownGroups.length > 0 ? `unknown node group(s): ${unknownGroups.join(', ')}` : '',
          unknownClasses.length > 0 ? `unknown class(es): ${unknownClasses.join(', ')}` : '',
        ].filter((p) => p !== '');
        throw new ServiceError(unknownGroups.length > 0 ? 'unknown_group' : 'unknown_class', `${parts.join('; ')} (the console would silently drop them)`, {
          unknown_groups: unknownGroups,
          unknown_classes: unknownClasses,
        });
      }
      if (wantsParameters) {
        if (storable.status === 'rejected') throw backendProblem(storable.reason, 'finding out which parameters the console can store');
        const refused = Object.entries(storable.value);
        if (refused.length > 0) {
          throw new ServiceError(
            'unsupported_parameter',
            refused.map(([key, why]) => `${key}: ${why}`).join('; '),
            { parameters: refused.map(([key]) => key) },
          );
        }
      }

      const record: NodeRecord = { groups: [...request.groups], classes: [...request.classes], parameters: { ...request.parameters } };
      await this.ledger.begin('node', name, record);
      let receipt: Receipt;
      try {
        receipt = await this.classifier.create({ name, ...record });
        await this.options.afterBackend?.();
      } catch (err) {
        if (err instanceof NodeExistsError) {
          await this.ledger.remove('node', name);
          throw new ServiceError('node_exists', `a node named ${name} exists in the console: ${err.output}`);
        }
        if (err instanceof ClassifierError && outcomeUnknown(err.failure)) {
          await this.ledger.markUncertain('node', name);
          this.options.logger?.warn({ node: name, failure: err.failure }, 'creating a node timed out or was interrupted: ownership uncertain');
        } else {
          await this.ledger.remove('node', name);
        }
        throw backendProblem(err, `creating node ${name}`);
      }
      const entry = await this.ledger.commit('node', name, { receipt });
      this.options.logger?.info({ node: name }, 'node created');
      return ownedNode(entry);
    });
  }

  /**
   * A node espm created, as it created it.
   *
   * @throws {@link ServiceError} `node_not_found` for any node espm does not own (or whose
   *   create is under way): existence of other nodes is not revealed
   */
  get(name: string): OwnedNode {
    const entry = this.ledger.get('node', name);
    if (entry?.state !== 'present') throw new ServiceError('node_not_found', `espm has no node named ${name}`);
    return ownedNode(entry);
  }

  /**
   * A node espm created, with PuppetDB's view of its certname when PuppetDB is on
   * (`GET /v1/nodes/{name}`).
   *
   * @throws {@link ServiceError} `node_not_found` as {@link NodeService.get}
   */
  async describe(name: string): Promise<DescribedNode> {
    const node = this.get(name);
    const puppetdb = this.options.puppetdb;
    return puppetdb === undefined ? node : { ...node, puppetdb: await puppetdb.view(name) };
  }

  /**
   * Deletes a node espm created (write-ahead: the entry is `deleting` while the console is
   * asked). A node already gone from the console is forgotten. With PuppetDB on, its certname
   * is then deactivated there; a node deleted earlier whose deactivation is still owed only
   * has that settled.
   *
   * @throws {@link ServiceError} `node_not_found` (not espm's), `ownership_uncertain` (409),
   *   `backend_failed`/`backend_timeout` (the entry stays: deleting again is safe),
   *   `puppetdb_failed` (502: the node is deleted, the deactivation stays owed)
   */
  async delete(name: string): Promise<void> {
    await this.perName.run(name, async () => {
      const entry = this.ledger.get('node', name);
      if (entry === undefined || entry.state === 'pending') {
        throw new ServiceError('node_not_found', `espm has no node named ${name}`);
      }
      if (entry.state === 'deleted') {
        // Only a follow-up is owed: settle it (PuppetDB off: nothing espm can do, as if gone).
        if (this.options.puppetdb?.owes('node', name) !== true) throw new ServiceError('node_not_found', `espm has no node named ${name}`);
        await this.options.puppetdb.settle(name);
        return;
      }
      if (entry.state === 'uncertain') {
        throw new ServiceError(
          'ownership_uncertain',
          `espm cannot tell whether it created node ${name} (a create was interrupted); ` +
            'an operator must resolve it with `espm ledger adopt node NAME` or `espm ledger forget node NAME`',
        );
      }
      if (entry.state === 'present') await this.ledger.markDeleting('node', name);
      let outcome: 'deleted' | 'absent';
      try {
        outcome = await this.classifier.delete(name, entry.receipt);
        await this.options.afterBackend?.();
      } catch (err) {
        if (err instanceof NotOwnedError) {
          // What espm created was changed into something else behind its back: not espm's to delete.
          await this.ledger.markUncertain('node', name);
          this.options.logger?.warn({ node: name }, 'the node\'s backend object is no longer espm\'s: ownership uncertain');
          throw new ServiceError(
            'ownership_uncertain',
            `espm will not delete node ${name}: ${err.reason}; ` +
              'an operator must resolve it with `espm ledger adopt node NAME` or `espm ledger forget node NAME`',
          );
        }
        // A clean refusal leaves the node as it was; a timeout or an interruption leaves it
        // `deleting` (it may be gone): either way deleting again is safe.
        if (!(err instanceof ClassifierError && outcomeUnknown(err.failure))) await this.ledger.commit('node', name);
        throw backendProblem(err, `deleting node ${name}`);
      }
      this.options.logger?.info({ node: name, outcome }, outcome === 'deleted' ? 'node deleted' : 'node was already gone; forgotten');
      if (this.options.puppetdb === undefined) await this.ledger.remove('node', name);
      else await this.options.puppetdb.afterDeletion('node', name);
    });
  }
}

/** A settled look-up's value, or its error thrown (already a {@link ServiceError}). */
function settled<T>(result: PromiseSettledResult<T>): T {
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}

/** A ledger entry as the API answers it (copies: the ledger's record is never handed out). */
function ownedNode(entry: NodeEntry): OwnedNode {
  return {
    name: entry.name,
    groups: [...entry.node.groups],
    classes: [...entry.node.classes],
    parameters: { ...entry.node.parameters },
    created_at: entry.created_at,
  };
}
