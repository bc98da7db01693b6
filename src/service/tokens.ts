/**
 * The rules of token signing (`"signing": "token"` of `POST /v1/certificates`): hand out a
 * one-time challenge for a certname, decide — for the master's policy executable — whether a
 * node's own CSR is signed, remove a CSR espm refused for a name it holds a token for, withdraw
 * an unused token, revoke only the certificate whose public key espm approved, and purge
 * expired tokens. The daemon is the ledger's only writer; the challenge password is handed out
 * once and only its SHA-256 is kept.
 *
 * Source of truth: docs/design.md ("Certificates: trusted extensions, and a signing mode where
 * the key never leaves the node"); puppetserver's behaviour: docs/reference/modern-puppet.md
 * ("Policy-based autosigning").
 *
 * @packageDocumentation
 */
import type { PuppetDbService } from './puppetdb.js';
import { stringify } from 'yaml';
import type { CertificateAuthority, PolicySigning } from '../ca/authority.js';
import { certificateInfo, normaliseFingerprint, publicKeySha256 } from '../ca/certificate-info.js';
import { CHALLENGE_PASSWORD_OID, CsrError, readCsr } from '../ca/csr.js';
import { resolveExtensions } from '../ca/trusted-extensions.js';
import { KeyedMutex } from '../keyed-mutex.js';
import type { Logger } from '../logger.js';
import type { CertificateRequest } from '../names.js';
import type { CertificateEntry, TokenRecord } from '../ownership/entries.js';
import type { Ledger } from '../ownership/ledger.js';
import { backendProblem, ServiceError } from './errors.js';
import { RefusedCsrs } from './refused-csrs.js';
import { challengeDigest, judgeCsr, newChallengePassword } from './token-policy.js';

/** What `POST /v1/certificates` answers for `"signing": "token"`: no key, no certificate. */
export interface TokenBody {
  certname: string;
  signing: 'token';
  /** Secret: the one-time challenge password. Never logged; espm keeps only its SHA-256. */
  challenge_password: string;
  /** ISO-8601: the token is refused from then on. */
  expires_at: string;
  ca_certificate: string;
  /** YAML for the node's `csr_attributes.yaml` (challengePassword and extension requests). */
  csr_attributes: string;
}

/** What `GET /v1/certificates/{certname}` answers for a token certificate. */
export interface TokenCertificateBody {
  certname: string;
  signing: 'token';
  state: 'awaiting_csr' | 'signed';
  dns_alt_names: string[];
  /** The trusted extensions the CSR must ask for (Puppet's short name where it has one, else the OID) → value; `{}` when none. */
  extensions: Record<string, string>;
  /** ISO-8601, while awaiting the CSR. */
  expires_at?: string;
  fingerprint_sha256?: string;
  serial?: string;
  not_after?: string;
  created_at: string;
}

/** The policy executable's answer for one CSR: sign, refuse, or ask the site's previous policy. */
export type PolicyAnswer = { decision: 'sign' } | { decision: 'refuse'; reason: string } | { decision: 'fallback' };

/** Options of {@link TokenService}. */
export interface TokenServiceOptions {
  /** How long a token stays valid, ms (`[autosign] token_ttl`). */
  ttlMs: number;
  /** Outcomes (names and reasons; never a challenge password). */
  logger?: Logger;
  /** The clock, ms since the epoch (tests). Default `Date.now`. */
  now?: () => number;
  /** Waits between looks for a refused CSR at the CA, ms (default 250, up to 40 looks). */
  discardPollMs?: number;
  /** PuppetDB at termination: a revoked token certificate's certname is deactivated as for a pre-signed one. */
  puppetdb?: PuppetDbService;
}

/** The token service. */
export class TokenService {
  private readonly perName = new KeyedMutex();
  private readonly now: () => number;
  private readonly refused: RefusedCsrs;

  /**
   * @param ca - the CA adapter (token signing needs its {@link PolicySigning})
   * @param ledger - the ownership ledger (token certificates are `certificate` entries with `signing: token`)
   * @param options - TTL, logger, clock
   */
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly ledger: Ledger,
    private readonly options: TokenServiceOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.refused = new RefusedCsrs(ca.policySigning, { pollMs: options.discardPollMs ?? 250, ...(options.logger === undefined ? {} : { logger: options.logger }) });
  }

  /** Waits for every pending removal of a refused CSR (tests, shutdown). */
  settled(): Promise<void> {
    return this.refused.settled();
  }

  private signing(): PolicySigning {
    if (this.ca.policySigning === undefined) {
      throw new ServiceError(
        'unsupported_signing',
        `the CA backend ${this.ca.backend} cannot sign a node's own CSR (token signing needs puppetserver's policy-based autosigning); use "signing": "presigned"`,
      );
    }
    return this.ca.policySigning;
  }

  /**
   * Hands out a one-time signing token for a certname.
   *
   * @throws {@link ServiceError} `unsupported_signing` (422), `certificate_exists` (409: espm's,
   *   or the CA has a certificate or a CSR of that name), `backend_*` (the CA could not be asked)
   */
  async create(request: CertificateRequest): Promise<TokenBody> {
    const signing = this.signing();
    const { certname } = request;
    return this.perName.run(certname, async () => {
      if (this.ledger.get('certificate', certname) !== undefined) {
        throw new ServiceError('certificate_exists', `a certificate for ${certname} exists (issued by espm)`);
      }
      let caCertificate: string;
      try {
        caCertificate = await signing.caCertificate();
        if ((await this.ca.currentFingerprint(certname)) !== undefined || (await signing.requestedFingerprint(certname)) !== undefined) {
          throw new ServiceError('certificate_exists', `the CA already has a certificate or a CSR for ${certname}`);
        }
      } catch (err) {
        throw err instanceof ServiceError ? err : backendProblem(err, `preparing a signing token for ${certname}`);
      }
      const extensions = resolveExtensions(request.extensions);
      const password = newChallengePassword();
      const expiresAt = new Date(this.now() + this.options.ttlMs).toISOString();
      const token: TokenRecord = {
        challenge_sha256: challengeDigest(password),
        expires_at: expiresAt,
        extensions: Object.fromEntries(extensions.map((e) => [e.oid, e.value])),
      };
      const record = { dns_alt_names: request.dns_alt_names, signing: 'token' as const, token };
      await this.ledger.begin('certificate', certname, record);
      await this.ledger.commit('certificate', certname, { record });
      this.logger?.info({ certname, expires_at: expiresAt }, 'signing token handed out');
      const csrAttributes = stringify({
        custom_attributes: { [CHALLENGE_PASSWORD_OID]: password },
        ...(extensions.length === 0 ? {} : { extension_requests: Object.fromEntries(extensions.map((e) => [e.shortName ?? e.oid, e.value])) }),
      });
      return { certname, signing: 'token', challenge_password: password, expires_at: expiresAt, ca_certificate: caCertificate, csr_attributes: csrAttributes };
    });
  }

  private get logger(): Logger | undefined {
    return this.options.logger;
  }

  /** The token entry of `certname`, or undefined for none (or a pre-signed certificate). */
  tokenEntry(certname: string): CertificateEntry | undefined {
    const entry = this.ledger.get('certificate', certname);
    return entry?.certificate.signing === 'token' ? entry : undefined;
  }

  private expired(token: TokenRecord | undefined): boolean {
    return token !== undefined && token.approved_public_key_sha256 === undefined && Date.parse(token.expires_at) <= this.now();
  }

  /**
   * Decides a CSR for the master's policy executable. A certname espm holds no entry for goes
   * to the site's previous policy (`fallback`); one espm is pre-signing is refused (espm signs it
   * itself); one with a token is signed only by {@link judgeCsr}, and the token is used up
   * (durably, before the answer) — one use even when CSRs race. A refused CSR for a token name
   * is removed from the CA afterwards (src/service/refused-csrs.ts).
   *
   * @param certname - what puppetserver passed (not yet validated)
   * @param csrPem - the CSR puppetserver passed on stdin
   */
  async decide(certname: string, csrPem: string): Promise<PolicyAnswer> {
    const entry = this.ledger.get('certificate', certname);
    if (entry === undefined) return { decision: 'fallback' };
    if (entry.certificate.signing !== 'token') return { decision: 'refuse', reason: 'espm signs this certname itself (pre-signed)' };
    const answer = await this.perName.run(certname, async (): Promise<PolicyAnswer & { fingerprint?: string }> => {
      const current = this.tokenEntry(certname);
      if (current?.certificate.token === undefined) return { decision: 'refuse', reason: 'the token was withdrawn' };
      let csr;
      try {
        csr = await readCsr(csrPem);
      } catch (err) {
        if (err instanceof CsrError) return { decision: 'refuse', reason: err.message };
        throw err;
      }
      const verdict = judgeCsr(certname, csr, current.certificate.token, current.certificate.dns_alt_names, this.now());
      if (!verdict.sign) return { decision: 'refuse', reason: verdict.reason, fingerprint: csr.fingerprintSha256 };
      const token = { ...current.certificate.token, approved_public_key_sha256: csr.publicKeySha256, approved_at: new Date(this.now()).toISOString() };
      await this.ledger.commit('certificate', certname, { record: { ...current.certificate, token } });
      return { decision: 'sign' };
    });
    if (answer.decision === 'sign') {
      this.logger?.info({ certname }, 'token CSR approved: the master signs it');
      return { decision: 'sign' };
    }
    if (answer.decision === 'refuse') {
      this.logger?.warn({ certname, reason: answer.reason }, 'token CSR refused');
      const stillAwaiting = this.tokenEntry(certname)?.certificate.token?.approved_public_key_sha256 === undefined;
      if (answer.fingerprint !== undefined && stillAwaiting) this.refused.remove(certname, answer.fingerprint);
      if (this.expired(this.tokenEntry(certname)?.certificate.token)) await this.purgeExpired();
      return { decision: 'refuse', reason: answer.reason };
    }
    return answer;
  }

  /**
   * After a start: a CSR for a token name that arrived while espm was stopped was refused by
   * the policy executable and is still `requested` at the CA (puppetserver does not ask again).
   * Each such CSR is decided now as the policy would have: signed through the CA when it
   * matches its token, otherwise removed (as any refused CSR).
   *
   * @returns the certnames whose CSR was signed
   */
  async revisit(): Promise<string[]> {
    const signing = this.ca.policySigning;
    const signed: string[] = [];
    if (signing === undefined) return signed;
    for (const entry of this.ledger.list()) {
      const token = entry.kind === 'certificate' && entry.certificate.signing === 'token' ? entry.certificate.token : undefined;
      if (token === undefined || token.approved_public_key_sha256 !== undefined) continue;
      try {
        const csr = await signing.requestedCsr(entry.name);
        if (csr === undefined) continue;
        if ((await this.decide(entry.name, csr)).decision !== 'sign') continue;
        await signing.signRequest(entry.name);
        signed.push(entry.name);
        this.logger?.info({ certname: entry.name }, 'token CSR left by a stopped espm approved and signed');
      } catch (err) {
        this.logger?.warn({ certname: entry.name, error: (err as Error).message }, 'could not revisit a pending token CSR');
      }
    }
    return signed;
  }

  /**
   * A token certificate as GET shows it: `awaiting_csr`, or `signed` once the CA holds a
   * certificate with the approved public key (its fingerprint, serial and expiry are then
   * recorded).
   *
   * @throws {@link ServiceError} `certificate_not_found` (none, or an expired token),
   *   `backend_*` when the CA cannot be asked
   */
  async get(certname: string): Promise<TokenCertificateBody> {
    const entry = this.tokenEntry(certname);
    const token = entry?.certificate.token;
    if (entry === undefined || token === undefined || entry.state !== 'present' || this.expired(token)) {
      throw new ServiceError('certificate_not_found', `espm has no certificate for ${certname}`);
    }
    const extensions = Object.fromEntries(resolveExtensions(token.extensions).map((e) => [e.shortName ?? e.oid, e.value]));
    const base = { certname, signing: 'token' as const, dns_alt_names: entry.certificate.dns_alt_names, extensions, created_at: entry.created_at };
    if (token.approved_public_key_sha256 === undefined) return { ...base, state: 'awaiting_csr', expires_at: token.expires_at };
    let record = entry.certificate;
    if (record.fingerprint_sha256 === undefined) {
      const pem = await this.signedByApprovedKey(certname, token);
      if (pem === undefined) return { ...base, state: 'awaiting_csr', expires_at: token.expires_at };
      const info = certificateInfo(pem);
      record = { ...record, fingerprint_sha256: info.fingerprint_sha256, serial: info.serial, not_after: info.not_after };
      await this.ledger.commit('certificate', certname, { record });
    }
    return { ...base, state: 'signed', fingerprint_sha256: record.fingerprint_sha256!, serial: record.serial!, not_after: record.not_after! };
  }

  /** The CA's signed certificate for `certname` when it carries the approved public key. */
  private async signedByApprovedKey(certname: string, token: TokenRecord): Promise<string | undefined> {
    let pem: string | undefined;
    try {
      pem = await this.signing().signedCertificate(certname);
    } catch (err) {
      throw backendProblem(err, `reading the CA's certificate for ${certname}`);
    }
    if (pem === undefined) return undefined;
    if (normaliseFingerprint(publicKeySha256(pem)) !== normaliseFingerprint(token.approved_public_key_sha256 ?? '')) {
      throw new ServiceError(
        'ownership_uncertain',
        `the CA's certificate for ${certname} does not carry the public key espm approved; espm leaves it alone`,
      );
    }
    return pem;
  }

  /**
   * DELETE of a token certificate: while awaiting its CSR the token is withdrawn; after the
   * one use the CA's certificate is revoked, only when it carries the approved public key.
   *
   * @throws {@link ServiceError} `certificate_not_found`, `ownership_uncertain` (409: the CA's
   *   certificate has another key), `backend_*` (the entry stays; deleting again is safe),
   *   `puppetdb_failed` (502: revoked; the deactivation in PuppetDB stays owed, see src/service/puppetdb.ts)
   */
  async delete(certname: string): Promise<'withdrawn' | 'revoked' | 'absent'> {
    return this.perName.run(certname, async () => {
      const entry = this.tokenEntry(certname);
      const token = entry?.certificate.token;
      if (entry === undefined || token === undefined || this.expired(token)) {
        throw new ServiceError('certificate_not_found', `espm has no certificate for ${certname}`);
      }
      if (token.approved_public_key_sha256 === undefined) {
        await this.ledger.remove('certificate', certname);
        this.logger?.info({ certname }, 'signing token withdrawn');
        return 'withdrawn';
      }
      const pem = await this.signedByApprovedKey(certname, token);
      if (pem === undefined) {
        await this.ledger.remove('certificate', certname);
        this.logger?.info({ certname }, 'approved token CSR has no certificate at the CA; forgotten');
        return 'absent';
      }
      if (entry.state === 'present') await this.ledger.markDeleting('certificate', certname);
      let outcome: 'revoked' | 'absent';
      try {
        outcome = await this.ca.revoke(certname, entry.receipt);
      } catch (err) {
        throw backendProblem(err, `revoking the certificate for ${certname}`);
      }
      this.logger?.info({ certname, outcome }, 'token certificate revoked');
      if (this.options.puppetdb === undefined) await this.ledger.remove('certificate', certname);
      else await this.options.puppetdb.afterDeletion('certificate', certname);
      return outcome;
    });
  }

  /**
   * Removes every token that expired unused from the ledger.
   *
   * @returns the certnames purged
   */
  async purgeExpired(): Promise<string[]> {
    const purged: string[] = [];
    for (const entry of this.ledger.list()) {
      if (entry.kind !== 'certificate' || entry.certificate.signing !== 'token' || !this.expired(entry.certificate.token)) continue;
      await this.perName.run(entry.name, async () => {
        if (this.expired(this.tokenEntry(entry.name)?.certificate.token) && (await this.ledger.remove('certificate', entry.name))) purged.push(entry.name);
      });
    }
    if (purged.length > 0) this.logger?.info({ certnames: purged }, 'expired signing tokens purged');
    return purged;
  }
}
