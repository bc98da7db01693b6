/**
 * CertificateAuthority adapter for Puppet Server's CA HTTP API (`/puppet-ca/v1`), Puppet ≥ 6:
 * `[ca] backend = puppetserver-api`. No process is spawned per certificate.
 *
 * Source of truth: puppetserver 7.9.5 `documentation/http_certificate.md`,
 * `http_certificate_request.md`, `http_certificate_status.md`, `http_certificate_clean.md`,
 * and runs against a real puppetserver 7.9.5 (docs/reference/puppet-ca.md):
 * - `PUT certificate_request/NAME` (PEM CSR, `text/plain`) → 200; a name with a CSR or a
 *   signed certificate → 400 `NAME already has a requested certificate; ignoring certificate
 *   request` / `… already has a signed certificate; …`; a CN other than NAME → 400;
 * - `PUT certificate_status/NAME` `{"desired_state":"signed"}` → 204; no CSR → 409
 *   `Cannot sign certificate for host NAME without a certificate request`; a CSR with subject
 *   alt names on a CA without `allow-subject-alt-names` → 409;
 * - `DELETE certificate_status/NAME` discards the CSR (and a certificate, WITHOUT revoking it);
 * - `GET certificate/NAME` (`ca`: the CA certificate bundle) → PEM, 404 when unknown;
 * - `GET certificate_status/NAME` → JSON `{"name","state":"requested"|"signed"|"revoked",
 *   "fingerprint","fingerprints":{"SHA256",…},…}` (for `requested`, the fingerprint is the
 *   SHA-256 of the CSR's DER), 404 `Resource not found.` when unknown;
 * - `PUT clean` `{"certnames":[NAME]}` → 200 `Successfully cleaned all certs.` (revoked, the
 *   CA's copy deleted, CRL updated at once) or 200 `The following certs do not exist and cannot
 *   be revoked: ["NAME"]` (also when NAME has only a CSR, which stays);
 * - certificate_status and clean need a TLS client certificate carrying `pp_cli_auth`
 *   (auth.conf): the master's own host certificate has it, so it is espm's client identity.
 *
 * HTTPS goes through the one Puppet HTTPS client (src/puppet-http: the master's identity,
 * timeouts, size cap, reads retried, never a changing request). The node's RSA key is
 * generated in memory (Node's `crypto.generateKeyPair`), ahead of need in a {@link NodeKeyPool}
 * of `[ca] key_pool` keys, so an issue does not wait for a 4096-bit key generation; the CSR is
 * built by `node-request.ts`; the key is returned once and never written anywhere (the
 * master's ssldir gets nothing from this backend, so `[ca] keep_private_keys` does not apply).
 *
 * @packageDocumentation
 */
import { X509Certificate } from 'node:crypto';
import { onceUntilFailure } from '../backend.js';
import type { CaConfig } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import type { Receipt } from '../ownership/entries.js';
import { PuppetHttpClient, type PuppetHttpAnswer, type PuppetHttpBody } from '../puppet-http/client.js';
import { PuppetHttpError } from '../puppet-http/errors.js';
import { readTlsIdentity, resolvePuppetIdentity, type PuppetIdentity } from '../puppet-http/identity.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type CertificateOrder, type IssuedCertificate, type PolicySigning } from './authority.js';
import { caReceipt, normaliseFingerprint } from './certificate-info.js';
import { NodeKeyPool } from './node-key-pool.js';
import { buildNodeRequest, type NodeRequest } from './node-request.js';
import { ApiPolicySigning } from './puppetserver-api-policy.js';

export { buildNodeRequest, generateNodeRequest, type NodeRequest } from './node-request.js';

/** Path prefix of the CA API (puppetserver ≥ 6). */
export const PUPPET_CA_API_PREFIX = '/puppet-ca/v1';
/** The service's name in every error of the CA API's client. */
export const PUPPET_CA_SERVICE = 'Puppet Server CA';

/** Answers of puppetserver 7.x's CA API that espm recognises (see the module comment). */
export const PUPPETSERVER_API_MESSAGES = {
  /** `PUT certificate_request/NAME` (400) on a name the CA has a CSR or a certificate for. */
  exists: /already has a (?:signed|requested) certificate/,
  /** `PUT clean` (200) when the CA has no certificate of that name. */
  notCleaned: /do not exist and cannot be revoked/,
} as const;

/** Largest answer read from the CA, bytes (a certificate bundle is a few KiB). */
export const API_MAX_RESPONSE_BYTES = 1024 * 1024;
/** Connections the adapter keeps to the CA at most (CA operations are serialised by the service anyway). */
export const API_MAX_SOCKETS = 4;

/** An answer of the CA API: status code and body (text, at most {@link API_MAX_RESPONSE_BYTES}). */
export type ApiAnswer = Pick<PuppetHttpAnswer, 'status' | 'body'>;

/** What `GET certificate_status/NAME` answers (the fields espm reads). */
export interface CertificateStatus {
  name?: string;
  state?: string;
  fingerprint?: string;
  fingerprints?: { SHA256?: string };
}

/** The puppetserver-api adapter. */
export class PuppetserverApiAuthority implements CertificateAuthority {
  readonly backend = 'puppetserver-api';
  /** In the CSR espm builds (an extensionRequest; src/ca/node-request.ts). */
  readonly carriesExtensions = true;

  /**
   * Where and as whom to connect: the `[ca] api_*` keys, the missing ones asked once from
   * puppet (`ca_server`, `ca_port`, `hostcert`, `hostprivkey`, `localcacert` with one
   * `puppet config print`; a failed look-up is retried on the next call).
   *
   * @throws {@link CaError} (from the returned promise) when puppet cannot tell
   */
  readonly resolveSettings: () => Promise<PuppetIdentity>;
  private client: (() => Promise<PuppetHttpClient>) | undefined;
  private current: PuppetHttpClient | undefined;
  /** Node keys generated ahead of need (`[ca] key_pool`, `[ca] key_bits`). */
  readonly keys: NodeKeyPool;
  /** Token signing: puppetserver runs the master's policy executable for a node's own CSR. */
  readonly policySigning: PolicySigning = new ApiPolicySigning({
    status: (certname) => this.status(certname),
    fetchPem: (name) => this.fetchPem(name),
    call: (method, path, body) => this.call(method, path, body),
  });

  /**
   * @param config - `[ca]`: api_url, api_cert, api_key, api_ca, key_bits, key_pool, timeout
   *   (per request), puppet and config (for the settings look-up)
   * @param runner - runs the one `puppet config print` (src/exec); nothing else is spawned
   * @param logger - outcomes at debug level; never keys
   */
  constructor(
    private readonly config: CaConfig<'puppetserver-api'>,
    private readonly runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.resolveSettings = onceUntilFailure(() =>
      resolvePuppetIdentity({
        service: PUPPET_CA_SERVICE,
        puppet: config.puppet,
        config: config.config,
        timeoutMs: config.timeoutMs,
        runner,
        hostPortSettings: ['ca_server', 'ca_port'],
        overrides: {
          ...(config.apiUrl === undefined ? {} : { url: config.apiUrl }),
          ...(config.apiCert === undefined ? {} : { cert: config.apiCert }),
          ...(config.apiKey === undefined ? {} : { key: config.apiKey }),
          ...(config.apiCa === undefined ? {} : { ca: config.apiCa }),
        },
      }).catch((err: unknown) => {
        throw toCaError(err);
      }),
    );
    this.keys = new NodeKeyPool({ size: config.keyPool, keyBits: config.keyBits, ...(logger === undefined ? {} : { logger }) });
  }

  /** Starts filling the node key pool in the background (espm calls it once listening). */
  start(): void {
    this.keys.start();
  }

  /** The client, made at first use (identity, then its PEM files read); forgotten after a connection failure. */
  private connect(): Promise<PuppetHttpClient> {
    this.client ??= onceUntilFailure(async () => {
      const identity = await this.resolveSettings();
      const tls = await readTlsIdentity(identity, PUPPET_CA_SERVICE).catch((err: unknown) => {
        throw toCaError(err);
      });
      void this.current?.destroy();
      this.current = new PuppetHttpClient({
        baseUrl: `${identity.url.replace(/\/+$/, '')}${PUPPET_CA_API_PREFIX}`,
        service: PUPPET_CA_SERVICE,
        tls,
        timeoutMs: this.config.timeoutMs,
        maxResponseBytes: API_MAX_RESPONSE_BYTES,
        connections: API_MAX_SOCKETS,
      });
      return this.current;
    });
    return this.client();
  }

  /** Forgets the client (the next request reads the PEM files again). */
  private disconnect(): void {
    this.client = undefined;
    void this.current?.destroy();
    this.current = undefined;
  }

  /** Closes the connections to the CA and drops the keys of the node key pool. */
  close(): void {
    this.keys.close();
    this.disconnect();
  }

  /**
   * One request to the CA API (through the one Puppet HTTPS client).
   *
   * @param method - HTTP method
   * @param path - path below {@link PUPPET_CA_API_PREFIX}, e.g. `/certificate_status/web01`
   * @param body - request body and its content type
   * @returns status and body, whatever the status
   * @throws {@link CaError} `timeout` when no answer came in time, or the connection broke after
   *   a changing request was sent (outcome unknown); `unavailable` when the CA cannot be reached
   *   (refused, unknown host, TLS handshake or verification failure); `failed` otherwise
   */
  private async call(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: PuppetHttpBody): Promise<ApiAnswer> {
    const client = await this.connect();
    try {
      return await client.request(method, path, body);
    } catch (err) {
      if (err instanceof PuppetHttpError && err.failure !== 'failed') this.disconnect();
      throw toCaError(err);
    }
  }

  /**
   * `GET certificate_status/NAME`.
   *
   * @returns the status, or undefined when the CA knows nothing of NAME (404)
   * @throws {@link CaError}
   */
  async status(certname: string): Promise<CertificateStatus | undefined> {
    const answer = await this.call('GET', `/certificate_status/${encodeURIComponent(certname)}`);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw this.failure(`GET certificate_status/${certname}`, answer);
    try {
      const parsed = JSON.parse(answer.body) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      return parsed as CertificateStatus;
    } catch {
      throw new CaError('failed', `GET certificate_status/${certname} answered something that is not a JSON object`, answer.body.trim());
    }
  }

  private failure(what: string, answer: ApiAnswer): CaError {
    const hint = answer.status === 403 ? ' (the client certificate needs the pp_cli_auth extension in auth.conf)' : '';
    return new CaError('failed', `${what} answered ${answer.status}${hint}`, answer.body.trim());
  }

  private async fetchPem(name: string): Promise<string> {
    const answer = await this.call('GET', `/certificate/${encodeURIComponent(name)}`);
    if (answer.status !== 200 || !answer.body.includes('-----BEGIN CERTIFICATE-----')) throw this.failure(`GET certificate/${name}`, answer);
    return answer.body;
  }

  /** Submits a CSR made in memory, signs it, fetches the certificate; rolls back at the CA on failure. */
  async issue({ certname, dnsAltNames, extensions }: CertificateOrder): Promise<IssuedCertificate> {
    const started = Date.now();
    // The CA certificate first: no state changes yet if the CA is unreachable.
    const caCertificate = await this.fetchPem('ca');
    const request = await buildNodeRequest(certname, dnsAltNames, await this.keys.take(), extensions);
    const name = encodeURIComponent(certname);
    let submitted: ApiAnswer;
    try {
      submitted = await this.call('PUT', `/certificate_request/${name}`, { text: request.csrPem, type: 'text/plain' });
    } catch (err) {
      // Only a timeout leaves it open whether the CA stored the CSR.
      throw err instanceof CaError && err.failure === 'timeout' ? await this.rollBack(certname, request, err) : err;
    }
    if (submitted.status === 409 || (submitted.status === 400 && PUPPETSERVER_API_MESSAGES.exists.test(submitted.body))) {
      throw new CertificateExistsError(submitted.body.trim());
    }
    if (submitted.status < 200 || submitted.status > 299) throw this.failure(`PUT certificate_request/${certname}`, submitted);
    try {
      const signed = await this.call('PUT', `/certificate_status/${name}`, { text: '{"desired_state":"signed"}', type: 'application/json' });
      if (signed.status < 200 || signed.status > 299) throw this.failure(`PUT certificate_status/${certname} (sign)`, signed);
      const certificate = await this.fetchPem(certname);
      if (!new X509Certificate(certificate).publicKey.equals(request.publicKey)) {
        throw new CaError('failed', `the CA's certificate for ${certname} does not carry the key espm generated`);
      }
      this.logger?.debug({ certname, ms: Date.now() - started }, 'certificate signed through the CA API');
      return { certname, certificate, privateKey: request.privateKeyPem, caCertificate, receipt: caReceipt(certificate) };
    } catch (err) {
      throw await this.rollBack(certname, request, err);
    }
  }

  /**
   * After a failure between submitting the CSR and handing the certificate out: removes what
   * espm left at the CA — its CSR (`DELETE certificate_status/NAME`, only when the CSR's
   * fingerprint is espm's) or a certificate carrying espm's key (`PUT clean`; its key was
   * never handed out) — so that a retry is possible.
   *
   * @returns the error to throw: `err`, or, when `err` left the outcome unknown (`timeout`)
   *   and the roll-back made it known (nothing of espm's is left), a `failed` {@link CaError}
   */
  private async rollBack(certname: string, request: NodeRequest, err: unknown): Promise<unknown> {
    const name = encodeURIComponent(certname);
    try {
      const status = await this.status(certname);
      let left: string;
      if (status === undefined) left = 'nothing';
      else if (status.state === 'requested') {
        if (normaliseFingerprint(status.fingerprints?.SHA256 ?? status.fingerprint ?? '') !== normaliseFingerprint(request.csrFingerprint)) left = 'someone else\'s CSR';
        else {
          const deleted = await this.call('DELETE', `/certificate_status/${name}`);
          if (deleted.status < 200 || deleted.status > 299) throw this.failure(`DELETE certificate_status/${certname}`, deleted);
          left = 'nothing';
        }
      } else {
        const certificate = await this.fetchPem(certname);
        if (!new X509Certificate(certificate).publicKey.equals(request.publicKey)) left = 'someone else\'s certificate';
        else {
          const cleaned = await this.call('PUT', '/clean', { text: JSON.stringify({ certnames: [certname] }), type: 'application/json' });
          if (cleaned.status < 200 || cleaned.status > 299) throw this.failure('PUT clean', cleaned);
          left = 'nothing';
        }
      }
      this.logger?.warn({ certname, left, error: (err as Error).message }, 'certificate issue failed; rolled back at the CA');
      if (left === 'nothing' && err instanceof CaError && err.failure === 'timeout') {
        return new CaError('failed', `${err.message}; espm's request was then withdrawn from the CA`, err.output);
      }
    } catch (rollbackError) {
      this.logger?.warn({ certname, error: (rollbackError as Error).message }, 'certificate issue failed and could not be rolled back at the CA');
    }
    return err;
  }

  /** `PUT clean` (revokes, deletes the CA's copy, updates the CRL). The receipt is not needed: the service checked the fingerprint. */
  async revoke(certname: string, _receipt: Receipt | null = null): Promise<'revoked' | 'absent'> {
    const status = await this.status(certname);
    // A CSR alone is no certificate (and `clean` leaves it): nothing to revoke.
    if (status === undefined || status.state === 'requested') return 'absent';
    const answer = await this.call('PUT', '/clean', { text: JSON.stringify({ certnames: [certname] }), type: 'application/json' });
    if (answer.status < 200 || answer.status > 299) throw this.failure(`PUT clean ${certname}`, answer);
    if (PUPPETSERVER_API_MESSAGES.notCleaned.test(answer.body)) return 'absent';
    this.logger?.debug({ certname }, 'certificate revoked and cleaned through the CA API');
    return 'revoked';
  }

  /** The SHA-256 of `certificate_status` for a signed certificate; undefined for none or a CSR only. */
  async currentFingerprint(certname: string): Promise<string | undefined> {
    const status = await this.status(certname);
    if (status?.state !== 'signed') return undefined;
    const fingerprint = status.fingerprints?.SHA256 ?? status.fingerprint;
    if (typeof fingerprint !== 'string' || fingerprint === '') {
      throw new CaError('failed', `GET certificate_status/${certname} shows a signed certificate without a SHA-256 fingerprint`, JSON.stringify(status));
    }
    return fingerprint;
  }
}

/** Maps an error of the Puppet HTTPS client (or anything else) to a {@link CaError}. */
function toCaError(err: unknown): unknown {
  if (err instanceof PuppetHttpError) return new CaError(err.failure, err.message, err.output);
  return err;
}
