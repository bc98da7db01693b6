/**
 * Token signing on puppetserver's CA API (the {@link PolicySigning} of the puppetserver-api
 * adapter): `GET certificate/ca`, `GET certificate_status/NAME` (+ `GET certificate/NAME` when
 * signed), `DELETE certificate_status/NAME` for a pending CSR. puppetserver's answers: see
 * src/ca/puppetserver-api.ts (for `requested`, `certificate_status` shows the SHA-256 of the
 * CSR's DER).
 *
 * @packageDocumentation
 */
import { CaError, type PolicySigning } from './authority.js';
import { normaliseFingerprint } from './certificate-info.js';

/** What the adapter lends: its look-ups and its one request function (errors already {@link CaError}s). */
export interface ApiCalls {
  /** `GET certificate_status/NAME`, undefined on 404. */
  status(certname: string): Promise<{ state?: string; fingerprint?: string; fingerprints?: { SHA256?: string } } | undefined>;
  /** `GET certificate/NAME` → PEM (`ca`: the CA bundle). */
  fetchPem(name: string): Promise<string>;
  /** One request below `/puppet-ca/v1`. */
  call(method: 'DELETE', path: string): Promise<{ status: number; body: string }>;
}

/** {@link PolicySigning} over puppetserver's CA API. */
export class ApiPolicySigning implements PolicySigning {
  /** @param api - the adapter's calls */
  constructor(private readonly api: ApiCalls) {}

  /** `GET certificate/ca`. */
  caCertificate(): Promise<string> {
    return this.api.fetchPem('ca');
  }

  /** `GET certificate/NAME` when `certificate_status` says `signed`. */
  async signedCertificate(certname: string): Promise<string | undefined> {
    const status = await this.api.status(certname);
    return status?.state === 'signed' ? this.api.fetchPem(certname) : undefined;
  }

  /** The CSR's SHA-256 when `certificate_status` says `requested`. */
  async requestedFingerprint(certname: string): Promise<string | undefined> {
    const status = await this.api.status(certname);
    return status?.state === 'requested' ? (status.fingerprints?.SHA256 ?? status.fingerprint) : undefined;
  }

  /** `DELETE certificate_status/NAME`, only while the pending CSR is the one with `fingerprint` (checked just before). */
  async discardRequest(certname: string, fingerprint: string): Promise<boolean> {
    const current = await this.requestedFingerprint(certname);
    if (current === undefined || normaliseFingerprint(current) !== normaliseFingerprint(fingerprint)) return false;
    const answer = await this.api.call('DELETE', `/certificate_status/${encodeURIComponent(certname)}`);
    if (answer.status < 200 || answer.status > 299) throw new CaError('failed', `DELETE certificate_status/${certname} answered ${answer.status}`, answer.body.trim());
    return true;
  }
}
