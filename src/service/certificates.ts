/**
 * The rules of certificates: issue a node's certificate and record it as espm's; revoke only
 * a certificate espm issued — and only while the CA still holds that very certificate
 * (same SHA-256 fingerprint). CA operations run one at a time across the daemon. An outcome
 * that is unknown (timeout, interrupted) is treated as the node service treats it.
 *
 * With PuppetDB on, a revoked certificate's certname is then deactivated in PuppetDB
 * (src/service/puppetdb.ts), as for a deleted node.
 *
 * Source of truth: docs/design.md ("Ownership", "HTTP contract, v1", "PuppetDB at termination").
 *
 * @packageDocumentation
 */
import { Mutex } from 'async-mutex';
import { outcomeUnknown } from '../backend.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type IssuedCertificate } from '../ca/authority.js';
import { certificateInfo, normaliseFingerprint } from '../ca/certificate-info.js';
import { resolveExtensions } from '../ca/trusted-extensions.js';
import type { Logger } from '../logger.js';
import type { CertificateRequest } from '../names.js';
import type { Ledger } from '../ownership/ledger.js';
import { backendProblem, ServiceError } from './errors.js';
import { KeyedMutex } from '../keyed-mutex.js';
import type { PuppetDbService, PuppetDbView } from './puppetdb.js';
import type { TokenBody, TokenCertificateBody, TokenService } from './tokens.js';

/** What `POST /v1/certificates` answers: PEM strings and metadata. */
export interface IssuedCertificateBody {
  certname: string;
  certificate: string;
  /** Secret: the node's private key. Never logged, never stored by espm. */
  private_key: string;
  ca_certificate: string;
  fingerprint_sha256: string;
  /** ISO-8601. */
  not_after: string;
}

/** What `GET /v1/certificates/{certname}` answers: metadata of an owned certificate, never the key. */
export interface OwnedCertificate {
  certname: string;
  fingerprint_sha256: string;
  not_after: string;
  serial: string;
  dns_alt_names: string[];
  /** Trusted extensions the certificate carries, as asked (short name or OID → value); `{}` when none. */
  extensions: Record<string, string>;
  /** When espm issued it (ISO-8601). */
  created_at: string;
}

/** An owned certificate with PuppetDB's view of its certname when PuppetDB is on (null: PuppetDB could not be asked). */
export interface DescribedCertificate extends OwnedCertificate {
  puppetdb?: PuppetDbView | null;
}

/** Options of {@link CertificateService}. */
export interface CertificateServiceOptions {
  /** Outcomes (names, fingerprints and serials only; never keys). */
  logger?: Logger;
  /**
   * Called after every successful CA call that changes a certificate, before the ledger
   * records the outcome (crash-consistency tests widen that window with it). Default none.
   */
  afterBackend?: () => Promise<void>;
  /** PuppetDB at termination; undefined = `[puppetdb] url` empty (off). */
  puppetdb?: PuppetDbService;
  /** Token signing (`"signing": "token"`): certificates of that kind are its (src/service/tokens.ts). */
  tokens?: TokenService;
}

/** The certificate service. */
export class CertificateService {
  /** One CA operation at a time, across the daemon. */
  private readonly caMutex = new Mutex();
  private readonly perName = new KeyedMutex();
  private readonly logger: Logger | undefined;
  private readonly afterBackend: (() => Promise<void>) | undefined;
  private readonly puppetdb: PuppetDbService | undefined;
  private readonly tokens: TokenService | undefined;

  /**
   * @param ca - the CA adapter
   * @param ledger - the ownership ledger (shared with the node service)
   * @param options - logger, after-backend hook
   */
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly ledger: Ledger,
    options: CertificateServiceOptions = {},
  ) {
    this.logger = options.logger;
    this.afterBackend = options.afterBackend;
    this.puppetdb = options.puppetdb;
    this.tokens = options.tokens;
  }

  /** The token service for `"signing": "token"`; 422 `unsupported_signing` without one. */
  private tokenService(): TokenService {
    if (this.tokens === undefined) {
      throw new ServiceError('unsupported_signing', `the CA backend ${this.ca.backend} cannot sign a node's own CSR; use "signing": "presigned"`);
    }
    return this.tokens;
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.caMutex.runExclusive(task);
  }

  /**
   * Issues a certificate and records it as espm's.
   *
   * @throws {@link ServiceError} `unsupported_extension` (422: extensions asked of a CA that
   *   cannot carry them; nothing done), `certificate_exists` (409: espm's, or the CA has the name),
   *   `backend_failed` (502), `backend_timeout` (504), `backend_unavailable` (503); after a
   *   timeout or an interruption the name is `uncertain`
   */
  async issue(request: Pick<CertificateRequest, 'certname' | 'dns_alt_names'> & Partial<CertificateRequest>): Promise<IssuedCertificateBody> {
    const { certname } = request;
    const requested = request.extensions ?? {};
    const extensions = resolveExtensions(requested);
    if (extensions.length > 0 && !this.ca.carriesExtensions) {
      throw new ServiceError(
        'unsupported_extension',
        `the CA backend ${this.ca.backend} cannot put trusted extensions into a certificate; ask without "extensions"`,
        { unsupported_extensions: Object.keys(requested) },
      );
    }
    const asked = extensions.length > 0 ? { extensions: requested } : {};
    return this.perName.run(certname, async () => {
      const existing = this.ledger.get('certificate', certname);
      if (existing?.state === 'deleted') {
        throw new ServiceError('certificate_exists', `the certificate for ${certname} was revoked but its deactivation in PuppetDB is still pending; DELETE it again first`);
      }
      if (existing !== undefined) {
        throw new ServiceError('certificate_exists', `a certificate for ${certname} exists (issued by espm)`);
      }
      await this.ledger.begin('certificate', certname, { dns_alt_names: request.dns_alt_names, ...asked });
      let issued: IssuedCertificate;
      try {
        issued = await this.exclusive(() => this.ca.issue({ certname, dnsAltNames: request.dns_alt_names, extensions }));
        await this.afterBackend?.();
      } catch (err) {
        if (err instanceof CertificateExistsError) {
          await this.ledger.remove('certificate', certname);
          throw new ServiceError('certificate_exists', `the CA already has a certificate for ${certname}: ${err.output}`);
        }
        if (err instanceof CaError && outcomeUnknown(err.failure)) {
          await this.ledger.markUncertain('certificate', certname);
          this.logger?.warn({ certname, failure: err.failure }, 'certificate generation did not finish: ownership uncertain');
        } else {
          await this.ledger.remove('certificate', certname);
        }
        throw backendProblem(err, `issuing a certificate for ${certname}`);
      }
      const info = certificateInfo(issued.certificate);
      await this.ledger.commit('certificate', certname, {
        record: {
          dns_alt_names: info.dns_alt_names.filter((n) => n !== certname),
          ...asked,
          fingerprint_sha256: info.fingerprint_sha256,
          serial: info.serial,
          not_after: info.not_after,
        },
        receipt: issued.receipt,
      });
      this.logger?.info({ certname, fingerprint_sha256: info.fingerprint_sha256, serial: info.serial }, 'certificate issued');
      return {
        certname,
        certificate: issued.certificate,
        private_key: issued.privateKey,
        ca_certificate: issued.caCertificate,
        fingerprint_sha256: info.fingerprint_sha256,
        not_after: info.not_after,
      };
    });
  }

  /**
   * `POST /v1/certificates`: a pre-signed certificate ({@link issue}) or, for
   * `"signing": "token"`, a signing token (src/service/tokens.ts).
   *
   * @throws {@link ServiceError} as {@link issue} and `TokenService.create`; `unsupported_signing`
   *   (422) for `"signing": "token"` on a CA without policy-based autosigning
   */
  async order(request: CertificateRequest): Promise<IssuedCertificateBody | TokenBody> {
    return request.signing === 'token' ? this.tokenService().create(request) : this.issue(request);
  }

  /**
   * Metadata of a certificate espm issued.
   *
   * @throws {@link ServiceError} `certificate_not_found` for any certificate espm did not issue
   */
  get(certname: string): OwnedCertificate {
    const entry = this.ledger.get('certificate', certname);
    if (entry?.state !== 'present') {
      throw new ServiceError('certificate_not_found', `espm has no certificate for ${certname}`);
    }
    const record = entry.certificate;
    // An adopted entry (an interrupted issue an operator resolved) has no fingerprint, serial
    // or expiry: the keys are then left out of the answer, as before ledger format 2.
    return {
      certname,
      fingerprint_sha256: record.fingerprint_sha256 as string,
      not_after: record.not_after as string,
      serial: record.serial as string,
      dns_alt_names: record.dns_alt_names,
      extensions: record.extensions ?? {},
      created_at: entry.created_at,
    };
  }

  /**
   * `GET /v1/certificates/{certname}`: {@link get}, or a token certificate's state, with
   * PuppetDB's view of the certname when PuppetDB is on.
   *
   * @throws {@link ServiceError} `certificate_not_found`, and `backend_*` for a token certificate
   */
  async describe(certname: string): Promise<DescribedCertificate | (TokenCertificateBody & Pick<DescribedCertificate, 'puppetdb'>)> {
    const owned = this.tokens?.tokenEntry(certname) !== undefined && this.ledger.get('certificate', certname)?.state !== 'deleted'
      ? await this.tokens.get(certname)
      : this.get(certname);
    return this.puppetdb === undefined ? owned : { ...owned, puppetdb: await this.puppetdb.view(certname) };
  }

  /**
   * Revokes and cleans a certificate espm issued. A certificate already gone from the CA is
   * forgotten. One the CA holds under that name but with another fingerprint is not espm's
   * (re-issued by someone else): it is left alone, 409.
   *
   * @throws {@link ServiceError} `certificate_not_found`, `ownership_uncertain` (409),
   *   `backend_failed`/`backend_timeout`/`backend_unavailable` (the entry stays — `deleting`
   *   after a timeout or an interruption — and revoking again is safe), `puppetdb_failed`
   *   (502: revoked, the deactivation in PuppetDB stays owed; the next DELETE settles it)
   */
  async revoke(certname: string): Promise<void> {
    const owed = this.ledger.get('certificate', certname);
    if (this.tokens?.tokenEntry(certname) !== undefined && owed?.state !== 'deleted') {
      await this.tokens.delete(certname);
      return;
    }
    await this.perName.run(certname, async () => {
      const entry = this.ledger.get('certificate', certname);
      // `deleted`: the certificate is gone, only follow-ups are owed: settle them.
      if (entry?.state === 'deleted' && this.puppetdb?.owes('certificate', certname) === true) {
        await this.puppetdb.settle(certname);
        return;
      }
      if (entry === undefined || entry.state === 'pending' || entry.state === 'deleted') {
        throw new ServiceError('certificate_not_found', `espm has no certificate for ${certname}`);
      }
      if (entry.state === 'uncertain') {
        throw new ServiceError(
          'ownership_uncertain',
          `espm cannot tell whether it issued the certificate for ${certname} (an issue was interrupted); ` +
            'an operator must resolve it with `espm ledger adopt certificate NAME` or `espm ledger forget certificate NAME`',
        );
      }
      const recorded = entry.certificate.fingerprint_sha256 ?? '';
      const outcome = await this.exclusive(async () => {
        let current: string | undefined;
        try {
          current = await this.ca.currentFingerprint(certname);
        } catch (err) {
          throw backendProblem(err, `checking the CA's certificate for ${certname}`);
        }
        if (current === undefined) return 'absent' as const;
        if (normaliseFingerprint(current) !== normaliseFingerprint(recorded)) {
          throw new ServiceError(
            'ownership_uncertain',
            `the CA's certificate for ${certname} (SHA-256 ${current}) is not the one espm issued (${recorded}); ` +
              'espm leaves it alone. If espm\'s certificate is gone, `espm ledger forget certificate NAME`',
          );
        }
        // Write-ahead: a crash from here on leaves `deleting`, which is safe to revoke again.
        if (entry.state === 'present') await this.ledger.markDeleting('certificate', certname);
        try {
          const revoked = await this.ca.revoke(certname, entry.receipt);
          await this.afterBackend?.();
          return revoked;
        } catch (err) {
          // A clean refusal leaves the certificate as it was; a timeout or an interruption
          // leaves it `deleting` (it may be revoked): either way revoking again is safe.
          if (!(err instanceof CaError && outcomeUnknown(err.failure))) await this.ledger.commit('certificate', certname);
          throw backendProblem(err, `revoking the certificate for ${certname}`);
        }
      });
      this.logger?.info({ certname, outcome }, outcome === 'revoked' ? 'certificate revoked' : 'certificate was already gone; forgotten');
      if (this.puppetdb === undefined) await this.ledger.remove('certificate', certname);
      else await this.puppetdb.afterDeletion('certificate', certname);
    });
  }
}
