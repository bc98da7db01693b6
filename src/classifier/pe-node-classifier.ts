/**
 * Classifier adapter for Puppet Enterprise 2016–2025's Node Classifier service (API v1):
 * `[classifier] backend = pe-node-classifier`. Source of truth: docs/design.md
 * ("`pe-node-classifier`"); the wire is node-classifier-api.ts.
 *
 * - groups = the NC's group names except espm's per-node groups; classes = the class names
 *   of `[classifier] environment`.
 * - create: a read of the groups SHARED by the creates of the moment (nc-groups-read.ts: the
 *   read in flight, or one answered ≤ {@link GROUPS_READ_REUSE_MS} ago — often the service's
 *   list read — that no delete or rollback has ended since; a burst of launches costs one
 *   read) → `NodeExistsError` when any group's rule names the node
 *   (`["=","name",N]` anywhere in it); the chosen groups' ids; then ONE `POST /v1/groups` of the
 *   per-node group `espm: <N>` (parent `parent_group`, rule `["or",["=","name",N]]`, classes
 *   `{class: {}}`, variables = the parameters) and one pin per chosen group. A failure after
 *   the group exists is rolled back here (unpin what may be pinned, delete the group).
 *   Receipt `{group_id, pinned: [group ids]}`.
 * - delete: `GET /v1/groups/<group_id>`: the group must still carry espm's name and rule, else
 *   {@link NotOwnedError} (nothing changed) — the NC's `DELETE` has no precondition, so this
 *   read stays, and a termination costs one request above the minimum (its unpins + 1 delete);
 *   unpin N from exactly the `pinned` groups, then `DELETE` the group; 404 from either =
 *   already gone. No other group is ever written. A delete (and a rollback) makes every groups
 *   read taken before it ends unusable for later creates.
 * - authentication: the master's certificate (the console's `rbac-certificate-allowlist` must
 *   hold its certname) or an RBAC token read from `[classifier] token_file`.
 *
 * @packageDocumentation
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { onceUntilFailure } from '../backend.js';
import type { ClassifierConfig } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import type { JsonValue, Receipt } from '../ownership/entries.js';
import { PuppetHttpClient } from '../puppet-http/client.js';
import { readTlsIdentity, resolvePuppetIdentity } from '../puppet-http/identity.js';
import { ClassifierError, NodeExistsError, NotOwnedError, type Classification, type Classifier } from './classifier.js';
import { SharedGroupsRead } from './nc-groups-read.js';
import { NODE_CLASSIFIER_SERVICE, NodeClassifierApi, toClassifierError, type NcGroup } from './node-classifier-api.js';

/** The name of espm's per-node group for node `name`. */
export const perNodeGroupName = (name: string): string => `espm: ${name}`;
/** The rule of espm's per-node group for node `name`. */
export const perNodeRule = (name: string): JsonValue => ['or', ['=', 'name', name]];

/** What the receipt of a create holds. */
export interface NodeClassifierReceipt {
  /** Id of the per-node group espm created. */
  group_id: string;
  /** Ids of the groups the node was pinned to, in the order pinned. */
  pinned: string[];
}

/** Whether `rule` names `node` (`["=","name",node]` anywhere in it). */
export function ruleNames(rule: JsonValue | undefined, node: string): boolean {
  if (!Array.isArray(rule)) return false;
  if (rule.length === 3 && rule[0] === '=' && rule[1] === 'name' && rule[2] === node) return true;
  return rule.some((term) => ruleNames(term, node));
}

/** Whether `group` is espm's per-node group for `node` (its name and its rule). */
export function isPerNodeGroupFor(group: NcGroup, node: string): boolean {
  return group.name === perNodeGroupName(node) && isDeepStrictEqual(group.rule, perNodeRule(node));
}

/** Whether `group` is one of espm's per-node groups (for any node). */
export function isPerNodeGroup(group: NcGroup): boolean {
  const node = /^espm: (.+)$/.exec(group.name)?.[1];
  return node !== undefined && isPerNodeGroupFor(group, node);
}

/** The description of a per-node group: says what it is, and the pins (read back for a delete without receipt). */
function describe(node: string, pinned: readonly string[]): string {
  return `Created by espm for node ${node}; deleted by espm when the node is deleted. Pinned to: ${pinned.length === 0 ? 'none' : pinned.join(', ')}.`;
}

/** The pins a per-node group's description records. */
function pinsOf(group: NcGroup): string[] {
  const list = /Pinned to: ([^.]*)\.$/.exec(group.description ?? '')?.[1] ?? '';
  return list.split(/,\s*/).filter((id) => /^[0-9a-f-]{36}$/i.test(id));
}

function parseReceipt(receipt: Receipt | null): NodeClassifierReceipt | undefined {
  if (receipt === null) return undefined;
  const { group_id: id, pinned } = receipt as Partial<Record<string, JsonValue>>;
  if (typeof id !== 'string' || !Array.isArray(pinned) || !pinned.every((p) => typeof p === 'string')) return undefined;
  return { group_id: id, pinned: pinned as string[] };
}

/**
 * How long an answered groups read stays good enough for a create's own checks, ms. The node
 * service lists the groups (its cache, refreshed when a name is missing) just before it calls
 * `create`: reusing that read keeps a create at one groups read, and concurrent creates share
 * one. espm's deletes and rollbacks forget it (src/classifier/nc-groups-read.ts).
 */
export const GROUPS_READ_REUSE_MS = 1000;

/** The pe-node-classifier adapter. */
export class PeNodeClassifier implements Classifier {
  readonly backend = 'pe-node-classifier';
  private readonly connect: () => Promise<{ api: NodeClassifierApi; client: PuppetHttpClient; identity: string }>;
  private client: PuppetHttpClient | undefined;
  /** `GET /v1/groups`, shared by concurrent creates and remembered for {@link GROUPS_READ_REUSE_MS}. */
  private readonly groupsRead = new SharedGroupsRead(async () => (await this.api()).groups(), GROUPS_READ_REUSE_MS);

  /**
   * @param config - `[classifier]`: url, environment, parent_group, token_file, timeout, and
   *   where the master's identity is (puppet, config, api_cert/api_key/api_ca)
   * @param runner - runs the one `puppet config print` (src/exec)
   * @param logger - the daemon's logger
   */
  constructor(
    private readonly config: ClassifierConfig<'pe-node-classifier'>,
    runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.connect = onceUntilFailure(async () => {
      try {
        const paths = await resolvePuppetIdentity({
          service: NODE_CLASSIFIER_SERVICE,
          puppet: config.puppet,
          config: config.puppetConfig,
          timeoutMs: config.timeoutMs,
          runner,
          hostPortSettings: ['server', 'masterport'],
          overrides: {
            url: config.url,
            ...(config.apiCert === undefined ? {} : { cert: config.apiCert }),
            ...(config.apiKey === undefined ? {} : { key: config.apiKey }),
            ...(config.apiCa === undefined ? {} : { ca: config.apiCa }),
          },
        });
        const tls = await readTlsIdentity(paths, NODE_CLASSIFIER_SERVICE, config.tokenFile === undefined);
        let token: string | undefined;
        let identity: string;
        if (config.tokenFile !== undefined) {
          token = await readFile(config.tokenFile, 'utf8').then(
            (text) => text.trim(),
            (err: NodeJS.ErrnoException) => {
              throw new ClassifierError('failed', `${NODE_CLASSIFIER_SERVICE}: cannot read [classifier] token_file ${config.tokenFile}: ${err.code ?? err.message}`);
            },
          );
          identity =
            `the RBAC token of [classifier] token_file ${config.tokenFile} (expired, revoked, or its user lacks the Node Groups permissions ` +
            '"View", "Create, edit, and delete child groups" and "Edit child group rules" on the parent group): make a new one, e.g. `puppet-access login --lifetime 1y`, and write it there';
        } else {
          const subject = new X509Certificate(tls.cert ?? '').subject.match(/CN=([^\n,]+)/)?.[1] ?? 'unknown';
          identity =
            `the master's certificate ${subject} (${paths.cert}): add ${subject} to the console's rbac-certificate-allowlist ` +
            '(/etc/puppetlabs/console-services/rbac-certificate-allowlist; rbac-certificate-whitelist on older PE) and reload pe-console-services, ' +
            'or set [classifier] token_file to a file holding an RBAC token';
        }
        void this.client?.destroy();
        const client = new PuppetHttpClient({ baseUrl: config.url, service: NODE_CLASSIFIER_SERVICE, tls, ...(token === undefined ? {} : { token }), timeoutMs: config.timeoutMs });
        this.client = client;
        return { api: new NodeClassifierApi(client, identity), client, identity };
      } catch (err) {
        throw toClassifierError(err);
      }
    });
  }

  private async api(): Promise<NodeClassifierApi> {
    return (await this.connect()).api;
  }

  /** Checks that the NC answers (one groups read) and says which it is. */
  async start(): Promise<Record<string, unknown>> {
    const groups = await (await this.api()).groups();
    return { console: `${NODE_CLASSIFIER_SERVICE} ${this.config.url}`, groups: groups.length, auth: this.config.tokenFile === undefined ? 'certificate' : 'token' };
  }

  async listGroups(): Promise<string[]> {
    const groups = await this.groupsRead.fresh();
    return [...new Set(groups.filter((g) => !isPerNodeGroup(g)).map((g) => g.name))].sort();
  }

  async listClasses(): Promise<string[]> {
    return [...new Set(await (await this.api()).classes(this.config.environment))].sort();
  }

  /** Variables are JSON values: every validated parameter can be stored. */
  unstorableParameters(): Promise<Record<string, string>> {
    return Promise.resolve({});
  }

  async create(c: Classification): Promise<Receipt> {
    const api = await this.api();
    const groups = await this.groupsRead.forCreate(c.name);
    const holder = groups.find((g) => ruleNames(g.rule, c.name));
    if (holder !== undefined) {
      throw new NodeExistsError(`node ${c.name} already exists in the Node Classifier: the rule of node group "${holder.name}" (${holder.id}) names it`);
    }
    const chosen: string[] = [];
    for (const name of new Set(c.groups)) {
      const found = groups.filter((g) => g.name === name && !isPerNodeGroup(g));
      if (found.length !== 1) {
        throw new ClassifierError('failed', `${NODE_CLASSIFIER_SERVICE}: node group "${name}" ${found.length === 0 ? 'does not exist' : 'is not unique'} (nothing was created)`);
      }
      chosen.push(found[0]!.id);
    }
    const groupId = await this.groupsRead.creating(c.name, () => api.createGroup({
      name: perNodeGroupName(c.name),
      parent: this.config.parentGroup,
      environment: this.config.environment,
      description: describe(c.name, chosen),
      rule: perNodeRule(c.name),
      classes: Object.fromEntries(c.classes.map((cls) => [cls, {}])),
      variables: { ...c.parameters },
    }));
    const pinned: string[] = [];
    for (const id of chosen) {
      try {
        await api.pin(id, c.name);
      } catch (err) {
        throw await this.rollBack(api, c.name, groupId, [...pinned, id], err);
      }
      pinned.push(id);
    }
    this.logger?.debug({ node: c.name, group_id: groupId, pinned }, 'Node Classifier: per-node group created');
    return { group_id: groupId, pinned } satisfies NodeClassifierReceipt;
  }

  /** Undoes a half-done create; the error to throw (failed: nothing left; interrupted: rollback failed too). */
  private async rollBack(api: NodeClassifierApi, node: string, groupId: string, maybePinned: readonly string[], cause: unknown): Promise<ClassifierError> {
    const first = cause instanceof ClassifierError ? cause : new ClassifierError('failed', (cause as Error).message);
    try {
      for (const id of maybePinned) await api.unpin(id, node);
      await api.deleteGroup(groupId);
    } catch (err) {
      this.groupsRead.forget(); // the group may be gone or not: no earlier read answers for it
      const again = err as Error;
      return new ClassifierError(
        'interrupted',
        `${first.message}; rolling the node back failed too: ${again.message}`,
        [first.output, (err as ClassifierError).output ?? ''].filter((o) => o !== '').join('\n'),
      );
    }
    this.groupsRead.forget(); // reads taken since the POST may show the group just deleted
    return new ClassifierError('failed', `${first.message} (the node was rolled back: nothing was created)`, first.output);
  }

  async delete(name: string, receipt: Receipt | null): Promise<'deleted' | 'absent'> {
    try {
      return await this.deleteNode(name, receipt);
    } finally {
      // Ended, however: a groups read taken before now (answered or in flight) may still show
      // the node's group or pins, so no later create may use it.
      this.groupsRead.forget();
    }
  }

  private async deleteNode(name: string, receipt: Receipt | null): Promise<'deleted' | 'absent'> {
    const api = await this.api();
    const recorded = parseReceipt(receipt);
    let group: NcGroup | undefined;
    let pinned: string[];
    if (recorded !== undefined) {
      group = await api.group(recorded.group_id);
      if (group !== undefined && !isPerNodeGroupFor(group, name)) {
        throw new NotOwnedError(
          `the Node Classifier's group ${recorded.group_id}, which espm created for ${name}, is now "${group.name}" with rule ${JSON.stringify(group.rule ?? null)}: no longer espm's`,
        );
      }
      pinned = recorded.pinned;
    } else {
      // An entry adopted by an operator: espm's group is found by its name and rule.
      group = (await api.groups()).find((g) => isPerNodeGroupFor(g, name));
      pinned = group === undefined ? [] : pinsOf(group);
    }
    for (const id of pinned) await api.unpin(id, name);
    if (group === undefined) return 'absent';
    return api.deleteGroup(group.id);
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}
