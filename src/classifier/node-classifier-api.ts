/**
 * The wire of PE's Node Classifier API v1 (`https://<console>:4433/classifier-api/v1`), as the
 * `pe-node-classifier` adapter uses it: the groups (list, one, create, delete), pin and unpin,
 * an environment's classes, and the NC's errors `{"kind","msg","details"}` mapped to
 * {@link ClassifierError}. Every request goes through the one Puppet HTTPS client
 * (src/puppet-http). Nothing here decides anything: the adapter (pe-node-classifier.ts) does.
 *
 * Facts (Puppet's published NC API v1 documentation; see test/fixtures/node-classifier/README.md):
 * `GET /v1/groups` → 200 array of groups `{id,name,parent,environment,rule,classes,variables,…}`;
 * `GET /v1/groups/<id>` → 200 one group, 404 `not-found`; `POST /v1/groups` → 303 See Other with
 * `Location: /classifier-api/v1/groups/<id>` (400 `schema-violation`, 422 `uniqueness-violation`,
 * `missing-referents`, `missing-parent`); `DELETE /v1/groups/<id>` → 204, 404 `not-found`, 422
 * `children-present`; `POST /v1/groups/<id>/pin` and `/unpin` with `{"nodes":[N]}` → 204, 404;
 * `GET /v1/environments/<env>/classes` → 200 array of `{name,environment,parameters}`.
 *
 * @packageDocumentation
 */
import type { PuppetHttpAnswer, PuppetHttpClient, PuppetHttpMethod } from '../puppet-http/client.js';
import { PuppetHttpError } from '../puppet-http/errors.js';
import { ClassifierError } from './classifier.js';
import type { JsonValue } from '../ownership/entries.js';

/** The service's name in every error. */
export const NODE_CLASSIFIER_SERVICE = 'Node Classifier';

/** A node group as the NC answers it (the members espm reads). */
export interface NcGroup {
  id: string;
  name: string;
  parent?: string;
  environment?: string;
  description?: string;
  rule?: JsonValue;
  classes?: Record<string, JsonValue>;
  variables?: Record<string, JsonValue>;
}

/** What `POST /v1/groups` sends. */
export interface NcNewGroup {
  name: string;
  parent: string;
  environment: string;
  description: string;
  rule: JsonValue;
  classes: Record<string, Record<string, never>>;
  variables: Record<string, string>;
}

/** An NC error body. */
interface NcErrorBody {
  kind?: unknown;
  msg?: unknown;
}

/** Group ids as the NC writes them. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `kind: msg` of an NC error body, or the body itself (trimmed, at most 500 characters) when
 * it is not one.
 */
export function ncErrorWords(body: string): string {
  try {
    const parsed = JSON.parse(body) as NcErrorBody;
    if (typeof parsed.kind === 'string') return `${parsed.kind}: ${typeof parsed.msg === 'string' ? parsed.msg : ''}`.trim();
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 500);
}

/** A Puppet HTTPS client error as the adapter's error (same failure, message and words). */
export function toClassifierError(err: unknown): unknown {
  if (err instanceof PuppetHttpError) return new ClassifierError(err.failure, err.message, err.output);
  return err;
}

/** Talks to one Node Classifier. */
export class NodeClassifierApi {
  /**
   * @param client - the Puppet HTTPS client for the NC's base URL (`…/classifier-api`)
   * @param refusedIdentity - what to say on a 401/403: which identity was refused and how to
   *   allow it
   */
  constructor(
    private readonly client: PuppetHttpClient,
    private readonly refusedIdentity: string,
  ) {}

  private async call(method: PuppetHttpMethod, path: string, body?: unknown): Promise<PuppetHttpAnswer> {
    try {
      return await this.client.request(method, `/v1${path}`, body === undefined ? undefined : { text: JSON.stringify(body), type: 'application/json' });
    } catch (err) {
      throw toClassifierError(err);
    }
  }

  /** The error of an answer espm did not expect: the NC's `kind` and `msg` in its output. */
  private failure(method: PuppetHttpMethod, path: string, answer: PuppetHttpAnswer, doing = ''): ClassifierError {
    const request = `${NODE_CLASSIFIER_SERVICE}: ${method} /classifier-api/v1${path}`;
    const words = ncErrorWords(answer.body);
    if (answer.status === 401 || answer.status === 403) {
      return new ClassifierError('failed', `${request}: HTTP ${answer.status}: the Node Classifier refused ${this.refusedIdentity}${doing}`, words);
    }
    return new ClassifierError('failed', `${request}: HTTP ${answer.status}${doing}`, words);
  }

  private parse<T>(method: PuppetHttpMethod, path: string, answer: PuppetHttpAnswer, check: (v: unknown) => v is T, what: string): T {
    let value: unknown;
    try {
      value = JSON.parse(answer.body);
    } catch {
      value = undefined;
    }
    if (!check(value)) {
      throw new ClassifierError('failed', `${NODE_CLASSIFIER_SERVICE}: ${method} /classifier-api/v1${path}: the answer is not ${what}`, answer.body.trim().slice(0, 500));
    }
    return value;
  }

  /** `GET /v1/groups`: every group. */
  async groups(): Promise<NcGroup[]> {
    const answer = await this.call('GET', '/groups');
    if (answer.status !== 200) throw this.failure('GET', '/groups', answer);
    return this.parse('GET', '/groups', answer, (v): v is NcGroup[] => Array.isArray(v) && v.every(isGroup), 'a JSON array of node groups');
  }

  /** `GET /v1/groups/<id>`: the group, or undefined when there is none (404). */
  async group(id: string): Promise<NcGroup | undefined> {
    const path = `/groups/${encodeURIComponent(id)}`;
    const answer = await this.call('GET', path);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw this.failure('GET', path, answer);
    return this.parse('GET', path, answer, isGroup, 'a node group');
  }

  /**
   * `POST /v1/groups` → 303 + `Location`.
   *
   * @returns the new group's id
   */
  async createGroup(group: NcNewGroup): Promise<string> {
    const answer = await this.call('POST', '/groups', group);
    if (answer.status !== 303 && answer.status !== 201) throw this.failure('POST', '/groups', answer, ' (nothing was created)');
    const location = [answer.headers['location']].flat()[0] ?? '';
    const id = /\/v1\/groups\/([^/?#]+)\/?$/.exec(location)?.[1];
    if (id === undefined || !UUID.test(decodeURIComponent(id))) {
      throw new ClassifierError('interrupted', `${NODE_CLASSIFIER_SERVICE}: POST /classifier-api/v1/groups: answered ${answer.status} without a group id in Location (${location || 'none'}); the group may exist`);
    }
    return decodeURIComponent(id).toLowerCase();
  }

  /** `POST /v1/groups/<id>/pin` `{"nodes":[node]}`. */
  async pin(id: string, node: string): Promise<void> {
    const path = `/groups/${encodeURIComponent(id)}/pin`;
    const answer = await this.call('POST', path, { nodes: [node] });
    if (answer.status !== 204 && answer.status !== 200) throw this.failure('POST', path, answer);
  }

  /** `POST /v1/groups/<id>/unpin` `{"nodes":[node]}`: `absent` when the group is gone (404). */
  async unpin(id: string, node: string): Promise<'done' | 'absent'> {
    const path = `/groups/${encodeURIComponent(id)}/unpin`;
    const answer = await this.call('POST', path, { nodes: [node] });
    if (answer.status === 404) return 'absent';
    if (answer.status !== 204 && answer.status !== 200) throw this.failure('POST', path, answer);
    return 'done';
  }

  /** `DELETE /v1/groups/<id>`: `absent` when there is none (404). */
  async deleteGroup(id: string): Promise<'deleted' | 'absent'> {
    const path = `/groups/${encodeURIComponent(id)}`;
    const answer = await this.call('DELETE', path);
    if (answer.status === 404) return 'absent';
    if (answer.status !== 204 && answer.status !== 200) throw this.failure('DELETE', path, answer);
    return 'deleted';
  }

  /** `GET /v1/environments/<env>/classes`: the class names. */
  async classes(environment: string): Promise<string[]> {
    const path = `/environments/${encodeURIComponent(environment)}/classes`;
    const answer = await this.call('GET', path);
    if (answer.status !== 200) throw this.failure('GET', path, answer);
    const classes = this.parse(
      'GET',
      path,
      answer,
      (v): v is { name: string }[] => Array.isArray(v) && v.every((c) => typeof (c as { name?: unknown })?.name === 'string'),
      'a JSON array of classes',
    );
    return classes.map((c) => c.name);
  }
}

function isGroup(value: unknown): value is NcGroup {
  const g = value as Partial<NcGroup> | null;
  return typeof g === 'object' && g !== null && typeof g.id === 'string' && typeof g.name === 'string';
}
