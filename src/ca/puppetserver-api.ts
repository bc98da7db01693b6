/**
 * CertificateAuthority adapter for Puppet Server's CA HTTP API (`/puppet-ca/v1`), Puppet ≥ 6:
 * `[ca] backend = puppetserver-api`. No process is spawned per certificate.
 *
 * Source of truth: puppetserver 7.9.5 `documentation/http_certificate.md`,
 * `http_certificate_request.md`, `http_certificate_status.md`, `http_certificate_clean.md`,
 * and runs against a real puppetserver 7.9.5 (`shared/reference/puppet-ca.md`):
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
 * The node's RSA key is generated in memory (Node's `crypto.generateKeyPair`), ahead of need
 * in a {@link NodeKeyPool} of `[ca] key_pool` keys, so an issue does not wait for a 4096-bit
 * key generation; the CSR is built with node-forge and signed with Node's `crypto.sign`; the
 * key is returned once and never written anywhere (the master's ssldir gets nothing from this backend, so
 * `[ca] keep_private_keys` does not apply).
 *
 * @packageDocumentation
 */
import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import type ForgeTypes from 'node-forge';
import { onceUntilFailure } from '../backend.js';
import type { Config } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type IssuedCertificate } from './authority.js';
import { normaliseFingerprint } from './certificate-info.js';
import { generateNodeKey, NodeKeyPool, type NodeKeyPair } from './node-key-pool.js';
import { parseConfigPrint, runCaCommand } from './ssldir.js';

/** Path prefix of the CA API (puppetserver ≥ 6). */
export const PUPPET_CA_API_PREFIX = '/puppet-ca/v1';

/** Answers of puppetserver 7.x's CA API that espm recognises (see the module comment). */
export const PUPPETSERVER_API_MESSAGES = {
  /** `PUT certificate_request/NAME` (400) on a name the CA has a CSR or a certificate for. */
  exists: /already has a (?:signed|requested) certificate/,
  /** `PUT clean` (200) when the CA has no certificate of that name. */
  notCleaned: /do not exist and cannot be revoked/,
} as const;

/** How long an idle keep-alive connection to the CA is kept, ms (well under Jetty's 30 s idle timeout). */
export const API_IDLE_SOCKET_MS = 4_000;
/** Largest answer read from the CA, bytes (a certificate bundle is a few KiB). */
export const API_MAX_RESPONSE_BYTES = 1024 * 1024;
/** Connections the adapter keeps to the CA at most (CA operations are serialised by the service anyway). */
export const API_MAX_SOCKETS = 4;

/**
 * The puppet settings the adapter asks for when `[ca] api_*` keys are missing, all with one
 * `puppet config print … --section server --config <puppet.conf>`.
 */
export const API_PUPPET_SETTINGS = ['hostcert', 'hostprivkey', 'localcacert', 'ca_server', 'ca_port'] as const;

/**
 * Where and as whom the adapter talks to the CA: `[ca] api_url/api_cert/api_key/api_ca`,
 * the missing ones from puppet's `ca_server`/`ca_port`/`hostcert`/`hostprivkey`/`localcacert`.
 */
export interface PuppetserverApiSettings {
  /** Base URL of the CA server, `https://HOST:PORT` (HOST is the name its certificate is verified for). */
  url: string;
  /** Absolute path of the PEM client certificate (the master's host certificate, with `pp_cli_auth`). */
  cert: string;
  /** Absolute path of its PEM private key (secret; read, never logged). */
  key: string;
  /** Absolute path of the PEM CA bundle the server's certificate is verified against. */
  ca: string;
}

/** A node key and its CSR, made in memory by {@link generateNodeRequest}. */
export interface NodeRequest {
  /** The node's RSA private key, PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`). Secret. */
  privateKeyPem: string;
  /** Its public key. */
  publicKey: KeyObject;
  /** The CSR, PEM: CN = certname, SHA-256 with RSA, and, with alt names, a subjectAltName extension request. */
  csrPem: string;
  /** SHA-256 of the CSR's DER, colon-separated upper-case hex (what `certificate_status` shows for a CSR). */
  csrFingerprint: string;
}

/** An answer of the CA API: status code and body (text, at most {@link API_MAX_RESPONSE_BYTES}). */
export interface ApiAnswer {
  status: number;
  body: string;
}

/** What `GET certificate_status/NAME` answers (the fields espm reads). */
export interface CertificateStatus {
  name?: string;
  state?: string;
  fingerprint?: string;
  fingerprints?: { SHA256?: string };
}

const signAsync = promisify(sign);

/** Colon-separated upper-case hex SHA-256 of `der`. */
function sha256Fingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}

/**
 * Builds the CSR of a node whose key is `key`: subject CN = `certname` (UTF8String, as
 * Puppet's own CSRs), and when `dnsAltNames` is not empty an extensionRequest with
 * subjectAltName `DNS:certname` followed by the alt names (duplicates dropped); signed SHA-256
 * with RSA (Node's `crypto.sign`, in the thread pool). node-forge (ASN.1) is loaded at the
 * first call, so daemons on other backends do not hold it.
 *
 * @param certname - validated certname
 * @param dnsAltNames - validated DNS alt names, possibly empty
 * @param key - the node's key pair (from the {@link NodeKeyPool} or {@link generateNodeKey})
 */
export async function buildNodeRequest(certname: string, dnsAltNames: readonly string[], key: NodeKeyPair): Promise<NodeRequest> {
  const { default: forge } = await import('node-forge');
  const { privateKey, publicKey } = key;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: certname, valueTagClass: forge.asn1.Type.UTF8 as unknown as ForgeTypes.asn1.Class }]);
  if (dnsAltNames.length > 0) {
    const names = [...new Set([certname, ...dnsAltNames])];
    csr.setAttributes([
      { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) }] },
    ]);
  }
  const pki = forge.pki as typeof forge.pki & { getCertificationRequestInfo(csr: ForgeTypes.pki.CertificateSigningRequest): ForgeTypes.asn1.Asn1 };
  const info = pki.getCertificationRequestInfo(csr);
  const signature = await signAsync('sha256', Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary'), privateKey);
  csr.signatureOid = forge.pki.oids['sha256WithRSAEncryption']!;
  csr.siginfo.algorithmOid = csr.signatureOid;
  csr.certificationRequestInfo = info;
  csr.signature = signature.toString('binary');
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificationRequestToAsn1(csr)).getBytes(), 'binary');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKey,
    csrPem: forge.pki.certificationRequestToPem(csr).replace(/\r\n/g, '\n'),
    csrFingerprint: sha256Fingerprint(der),
  };
}

/**
 * Generates a fresh node RSA key ({@link generateNodeKey}) and its CSR ({@link buildNodeRequest}).
 *
 * @param certname - validated certname
 * @param dnsAltNames - validated DNS alt names, possibly empty
 * @param keyBits - RSA modulus size, bits (`[ca] key_bits`)
 */
export async function generateNodeRequest(certname: string, dnsAltNames: readonly string[], keyBits: number): Promise<NodeRequest> {
  return buildNodeRequest(certname, dnsAltNames, await generateNodeKey(keyBits));
}

/** A request that got no answer within `[ca] timeout`. */
class DeadlineError extends Error {}
/** An answer larger than {@link API_MAX_RESPONSE_BYTES}. */
class OversizeError extends Error {}

/** The HTTPS connection to the CA: base URL and a keep-alive agent holding the client identity. */
interface Connection {
  url: URL;
  agent: https.Agent;
}

/** The puppetserver-api adapter. */
export class PuppetserverApiAuthority implements CertificateAuthority {
  readonly backend = 'puppetserver-api';

  /**
   * Where and as whom to connect: the `[ca] api_*` keys, the missing ones asked once from
   * puppet (one `puppet config print`; a failed look-up is retried on the next call).
   *
   * @throws {@link CaError} (from the returned promise) when puppet cannot tell
   */
  readonly resolveSettings: () => Promise<PuppetserverApiSettings>;
  private connection: (() => Promise<Connection>) | undefined;
  private agent: https.Agent | undefined;
  /** Node keys generated ahead of need (`[ca] key_pool`, `[ca] key_bits`). */
  readonly keys: NodeKeyPool;

  /**
   * @param config - `[ca]`: api_url, api_cert, api_key, api_ca, key_bits, key_pool, timeout
   *   (per request), puppet and config (for the settings look-up)
   * @param runner - runs the one `puppet config print` (src/exec); nothing else is spawned
   * @param logger - outcomes at debug level; never keys
   */
  constructor(
    private readonly config: Config['ca'],
    private readonly runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.resolveSettings = onceUntilFailure(() => this.lookupSettings());
    this.keys = new NodeKeyPool({ size: config.keyPool, keyBits: config.keyBits, ...(logger === undefined ? {} : { logger }) });
  }

  /** Starts filling the node key pool in the background (espm calls it once listening). */
  start(): void {
    this.keys.start();
  }

  private async lookupSettings(): Promise<PuppetserverApiSettings> {
    const { apiUrl, apiCert, apiKey, apiCa } = this.config;
    if (apiUrl !== undefined && apiCert !== undefined && apiKey !== undefined && apiCa !== undefined) {
      return { url: apiUrl, cert: apiCert, key: apiKey, ca: apiCa };
    }
    const args = ['config', 'print', ...API_PUPPET_SETTINGS, '--section', 'server', '--config', this.config.config];
    const what = `puppet config print ${API_PUPPET_SETTINGS.join(' ')}`;
    const out = await runCaCommand(this.runner, { file: this.config.puppet, args, timeoutMs: this.config.timeoutMs }, what);
    const value = (key: (typeof API_PUPPET_SETTINGS)[number]): string => {
      const found = out.exitCode === 0 ? parseConfigPrint(out.stdout, key) : undefined;
      if (found === undefined || found === '') {
        throw new CaError('failed', `cannot find puppet's ${key} with ${what}; set [ca] api_url, api_cert, api_key and api_ca`, out.text);
      }
      return found;
    };
    const host = apiUrl === undefined ? value('ca_server') : '';
    const port = apiUrl === undefined ? value('ca_port') : '';
    return {
      url: apiUrl ?? `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
      cert: apiCert ?? value('hostcert'),
      key: apiKey ?? value('hostprivkey'),
      ca: apiCa ?? value('localcacert'),
    };
  }

  /** The connection, made at first use (settings, then the PEM files read); forgotten after a connection failure. */
  private connect(): Promise<Connection> {
    this.connection ??= onceUntilFailure(async () => {
      const settings = await this.resolveSettings();
      const read = async (path: string, what: string): Promise<string> => {
        try {
          return await readFile(path, 'utf8');
        } catch (err) {
          throw new CaError('failed', `cannot read the ${what} for the CA API, ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      };
      const [cert, key, ca] = await Promise.all([
        read(settings.cert, 'client certificate'),
        read(settings.key, 'client key'),
        read(settings.ca, 'CA certificate'),
      ]);
      this.agent?.destroy();
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets: API_MAX_SOCKETS,
        timeout: API_IDLE_SOCKET_MS,
        cert,
        key,
        ca,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      });
      return { url: new URL(settings.url), agent: this.agent };
    });
    return this.connection();
  }

  /** Forgets the connection (the next request reads the PEM files again). */
  private disconnect(): void {
    this.connection = undefined;
    this.agent?.destroy();
    this.agent = undefined;
  }

  /** Closes idle keep-alive connections to the CA and drops the keys of the node key pool. */
  close(): void {
    this.keys.close();
    this.disconnect();
  }

  /**
   * One request to the CA API, answered within `[ca] timeout`. A GET that fails on a reused
   * keep-alive connection the server had just closed is retried once.
   *
   * @param method - HTTP method
   * @param path - path below {@link PUPPET_CA_API_PREFIX}, e.g. `/certificate_status/web01`
   * @param body - request body and its content type
   * @returns status and body, whatever the status
   * @throws {@link CaError} `timeout` when no answer came in time, or the connection broke after
   *   a changing request was sent (outcome unknown); `unavailable` when the CA cannot be reached
   *   (refused, unknown host, TLS handshake or verification failure)
   */
  private async call(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: { text: string; type: string }): Promise<ApiAnswer> {
    const { url, agent } = await this.connect();
    const what = `${method} ${PUPPET_CA_API_PREFIX}${path}`;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.send(url, agent, method, path, body);
      } catch (err) {
        if (err instanceof DeadlineError) {
          throw new CaError('timeout', `${what} got no answer from ${url.host} within ${this.config.timeoutMs / 1000} s`);
        }
        if (err instanceof OversizeError) throw new CaError('failed', `${what}: ${err.message}`);
        const e = err as NodeJS.ErrnoException & { connected?: boolean; reused?: boolean };
        if (method === 'GET' && e.reused === true && attempt === 1) continue;
        const reason = `${e.code ?? 'error'}: ${e.message}`;
        this.disconnect();
        if (e.connected === true && method !== 'GET') {
          throw new CaError('timeout', `${what}: the connection to ${url.host} broke after the request was sent (${reason}); the outcome is unknown`);
        }
        throw new CaError('unavailable', `cannot reach the CA at ${url.origin} (${what}): ${reason}`);
      }
    }
  }

  private send(url: URL, agent: https.Agent, method: string, path: string, body?: { text: string; type: string }): Promise<ApiAnswer> {
    return new Promise((resolve, reject) => {
      let connected = false;
      let settled = false;
      const fail = (err: Error): void => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(Object.assign(err, { connected, reused: req.reusedSocket }));
      };
      const headers: Record<string, string> = { Accept: 'application/json, text/plain' };
      if (body !== undefined) {
        headers['Content-Type'] = body.type;
        headers['Content-Length'] = String(Buffer.byteLength(body.text));
      }
      const base = url.pathname.replace(/\/+$/, '');
      const req = https.request({ protocol: 'https:', hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || 443, path: `${base}${PUPPET_CA_API_PREFIX}${path}`, method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > API_MAX_RESPONSE_BYTES) {
            req.destroy(new OversizeError(`the CA's answer exceeds ${API_MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('the CA closed the connection in the middle of its answer')));
      });
      const timer = setTimeout(() => req.destroy(new DeadlineError()), this.config.timeoutMs);
      req.on('socket', (socket: TLSSocket) => {
        if (req.reusedSocket || !socket.connecting) connected = true;
        else socket.once('secureConnect', () => (connected = true));
      });
      req.on('error', fail);
      req.end(body?.text);
    });
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

  async issue(certname: string, dnsAltNames: readonly string[]): Promise<IssuedCertificate> {
    const started = Date.now();
    // The CA certificate first: no state changes yet if the CA is unreachable.
    const caCertificate = await this.fetchPem('ca');
    const request = await buildNodeRequest(certname, dnsAltNames, await this.keys.take());
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
      return { certname, certificate, privateKey: request.privateKeyPem, caCertificate };
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

  async revoke(certname: string): Promise<'revoked' | 'absent'> {
    const status = await this.status(certname);
    // A CSR alone is no certificate (and `clean` leaves it): nothing to revoke.
    if (status === undefined || status.state === 'requested') return 'absent';
    const answer = await this.call('PUT', '/clean', { text: JSON.stringify({ certnames: [certname] }), type: 'application/json' });
    if (answer.status < 200 || answer.status > 299) throw this.failure(`PUT clean ${certname}`, answer);
    if (PUPPETSERVER_API_MESSAGES.notCleaned.test(answer.body)) return 'absent';
    this.logger?.debug({ certname }, 'certificate revoked and cleaned through the CA API');
    return 'revoked';
  }

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
