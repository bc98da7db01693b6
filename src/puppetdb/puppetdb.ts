/**
 * The PuppetDB adapter: speaks PuppetDB and nothing else — one node's record
 * (`GET /pdb/query/v4/nodes/<certname>`) and the `deactivate node` command, version 3
 * (`POST /pdb/cmd/v1?command=deactivate_node&version=3&certname=<certname>` with
 * `{"certname","producer_timestamp"}`) — through the one Puppet HTTPS client with the master's
 * identity. PuppetDB's answers and errors are parsed here; whether to deactivate (ownership,
 * "is it active?") is the service's decision (src/service/puppetdb.ts).
 *
 * Source of truth: docs/reference/modern-puppet.md ("PuppetDB 7.12.1", "deactivate_node"),
 * <https://puppet.com/docs/puppetdb/7/api/query/v4/nodes.html>,
 * <https://www.puppet.com/docs/puppetdb/8/api/wire_format/deactivate_node_format_v3>.
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import { BackendError, onceUntilFailure, type BackendFailure } from '../backend.js';
import type { Config } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import { PuppetHttpClient, type PuppetHttpAnswer, type PuppetHttpBody, type PuppetHttpMethod } from '../puppet-http/client.js';
import { readTlsIdentity, resolvePuppetIdentity } from '../puppet-http/identity.js';

/** The service's name, first in every error. */
export const PUPPETDB_SERVICE = 'PuppetDB';
/** Answers are one node's record or a command's receipt: a few KiB at most (bytes). */
const PUPPETDB_MAX_RESPONSE_BYTES = 256 * 1024;

/** A PuppetDB request failed or PuppetDB answered something unexpected (a {@link BackendError}). */
export class PuppetDbError extends BackendError {
  override readonly name = 'PuppetDbError';
}

/** What `GET /pdb/query/v4/nodes/<certname>` says about a node (the fields espm reads). */
export interface PuppetDbNode {
  certname: string;
  /** When it was deactivated (ISO 8601), or null while active. */
  deactivated: string | null;
  /** When it expired through `node-ttl` (ISO 8601), or null. */
  expired: string | null;
  /** Status of its latest report: `changed`, `unchanged`, `failed`; null before its first report. */
  latest_report_status: string | null;
  /** When its latest report was made (ISO 8601), or null. */
  report_timestamp: string | null;
}

/** The node record as PuppetDB 7 answers it (other fields ignored). */
const nodeSchema = z.object({
  certname: z.string(),
  deactivated: z.string().nullable().optional().transform((v) => v ?? null),
  expired: z.string().nullable().optional().transform((v) => v ?? null),
  latest_report_status: z.string().nullable().optional().transform((v) => v ?? null),
  report_timestamp: z.string().nullable().optional().transform((v) => v ?? null),
});

/** PuppetDB's answer to a command: `{"uuid"}`, plus `processed`/`timed_out` when waited for. */
const commandSchema = z.object({ uuid: z.string(), processed: z.boolean().optional(), timed_out: z.boolean().optional() });

/** What {@link PuppetDb.deactivate} got back. */
export interface DeactivationReceipt {
  /** PuppetDB's id of the command. */
  uuid: string;
  /** True when PuppetDB processed it before answering; false when it is queued (processed later). */
  processed: boolean;
}

/** How {@link PuppetDb} reaches PuppetDB. */
export interface PuppetDbOptions {
  /** PuppetDB's origin, `https://HOST:PORT`. */
  url: string;
  /** Per request, ms. */
  timeoutMs: number;
  /** The master's puppet and puppet.conf (asked for the identity the overrides leave out). */
  puppet: string;
  puppetConfig: string;
  /** PEM paths overriding puppet's hostcert / hostprivkey / localcacert. */
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
}

/** Turns what the client threw into a {@link PuppetDbError} of the same failure. */
function toPuppetDbError(err: unknown): PuppetDbError {
  if (err instanceof PuppetDbError) return err;
  if (err instanceof BackendError) return new PuppetDbError(err.failure, err.message, err.output);
  return new PuppetDbError('failed', `${PUPPETDB_SERVICE}: ${(err as Error).message}`);
}

/** PuppetDB's own words in an error answer: `{"error": "…"}` or the text. */
function wordsOf(answer: PuppetHttpAnswer): string {
  try {
    const parsed = JSON.parse(answer.body) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    // not JSON
  }
  return answer.body.trim().slice(0, 500);
}

/** One PuppetDB, reached as the master. Connections are made at first use and kept. */
export class PuppetDb {
  private readonly connect: () => Promise<PuppetHttpClient>;
  private client: PuppetHttpClient | undefined;

  /**
   * @param options - where PuppetDB is and as whom espm connects
   * @param runner - runs the one `puppet config print` (only when an identity path is not set)
   */
  constructor(
    private readonly options: PuppetDbOptions,
    runner: CommandRunner,
  ) {
    this.connect = onceUntilFailure(async () => {
      const { url, cert, key, ca } = options;
      const identity = await resolvePuppetIdentity({
        service: PUPPETDB_SERVICE,
        puppet: options.puppet,
        config: options.puppetConfig,
        timeoutMs: options.timeoutMs,
        runner,
        hostPortSettings: ['server', 'masterport'],
        overrides: { url, ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }), ...(ca === undefined ? {} : { ca }) },
      });
      const tls = await readTlsIdentity(identity, PUPPETDB_SERVICE);
      this.client = new PuppetHttpClient({
        baseUrl: url,
        service: PUPPETDB_SERVICE,
        tls,
        timeoutMs: options.timeoutMs,
        maxResponseBytes: PUPPETDB_MAX_RESPONSE_BYTES,
      });
      return this.client;
    });
  }

  /**
   * Resolves the identity and reads its PEM files now (espm calls it once listening), so that
   * the first request does not pay `puppet config print`.
   *
   * @throws {@link PuppetDbError} as the first request would (the next request tries again)
   */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (err) {
      throw toPuppetDbError(err);
    }
  }

  /** PuppetDB's origin. */
  get url(): string {
    return this.options.url;
  }

  private async request(method: PuppetHttpMethod, path: string, body?: PuppetHttpBody): Promise<PuppetHttpAnswer> {
    try {
      const client = await this.connect();
      return await client.request(method, path, body);
    } catch (err) {
      throw toPuppetDbError(err);
    }
  }

  /**
   * One node's record (`GET /pdb/query/v4/nodes/<certname>`; read retries are the client's).
   *
   * @param certname - the node's certname
   * @returns the record, or undefined when PuppetDB knows nothing about it (404)
   * @throws {@link PuppetDbError} `unavailable` (not reachable), `timeout`, `failed` (another
   *   status, an unreadable answer; PuppetDB's words in `output`)
   */
  async node(certname: string): Promise<PuppetDbNode | undefined> {
    const path = `/pdb/query/v4/nodes/${encodeURIComponent(certname)}`;
    const answer = await this.request('GET', path);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw this.refused('GET', path, answer);
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body);
    } catch {
      throw new PuppetDbError('failed', `${PUPPETDB_SERVICE}: GET ${path}: the answer is not JSON`, answer.body.slice(0, 500));
    }
    const node = nodeSchema.safeParse(parsed);
    if (!node.success) throw new PuppetDbError('failed', `${PUPPETDB_SERVICE}: GET ${path}: unexpected answer`, answer.body.slice(0, 500));
    return node.data;
  }

  /**
   * Sends `deactivate node` v3 for `certname`, waiting up to half the request timeout for
   * PuppetDB to process it (`secondsToWaitForCompletion`). Deactivating a certname PuppetDB does
   * not know creates a ghost row: ask {@link PuppetDb.node} first.
   *
   * @param certname - the node's certname
   * @param producerTimestamp - when espm decided it (PuppetDB records it as `deactivated`)
   * @returns the command's receipt (`processed` false: queued, processed later)
   * @throws {@link PuppetDbError} `unavailable`, `timeout` (outcome unknown: sending it again is
   *   harmless), `failed` (PuppetDB refused it: 400 and its words)
   */
  async deactivate(certname: string, producerTimestamp: Date): Promise<DeactivationReceipt> {
    const wait = Math.max(1, Math.floor(this.options.timeoutMs / 2000));
    const path = `/pdb/cmd/v1?command=deactivate_node&version=3&certname=${encodeURIComponent(certname)}&secondsToWaitForCompletion=${wait}`;
    const body = JSON.stringify({ certname, producer_timestamp: producerTimestamp.toISOString() });
    const answer = await this.request('POST', path, { text: body, type: 'application/json' });
    if (answer.status !== 200) throw this.refused('POST', path, answer);
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body);
    } catch {
      parsed = undefined;
    }
    const receipt = commandSchema.safeParse(parsed);
    if (!receipt.success) throw new PuppetDbError('failed', `${PUPPETDB_SERVICE}: POST ${path}: unexpected answer`, answer.body.slice(0, 500));
    return { uuid: receipt.data.uuid, processed: receipt.data.processed === true };
  }

  private refused(method: string, path: string, answer: PuppetHttpAnswer): PuppetDbError {
    // 503: PuppetDB is starting or its database is down — as good as unreachable.
    const failure: BackendFailure = answer.status === 503 ? 'unavailable' : 'failed';
    return new PuppetDbError(failure, `${PUPPETDB_SERVICE}: ${method} ${path}: HTTP ${answer.status}`, wordsOf(answer));
  }

  /** Drops the connections. */
  async close(): Promise<void> {
    await this.client?.destroy();
  }
}

/**
 * The PuppetDB of `[puppetdb]`, or undefined when `url` is empty (PuppetDB off).
 *
 * @param config - `[puppetdb]`
 * @param runner - src/exec runner for `puppet config print`
 */
export function createPuppetDb(config: Config['puppetdb'], runner: CommandRunner): PuppetDb | undefined {
  if (config.url === undefined) return undefined;
  return new PuppetDb(
    {
      url: config.url,
      timeoutMs: config.timeoutMs,
      puppet: config.puppet,
      puppetConfig: config.puppetConfig,
      cert: config.cert,
      key: config.key,
      ca: config.ca,
    },
    runner,
  );
}
