/**
 * Token signing on puppetserver's CA API (the {@link PolicySigning} of the puppetserver-api
 * adapter): `GET certificate/ca`, `GET certificate_status/NAME` (+ `GET certificate/NAME` when
 * signed), `DELETE certificate_status/NAME` for a pending CSR, `GET certificate_request/NAME`
 * and `PUT certificate_status/NAME` (sign) for a CSR espm approves after a restart. puppetserver's answers: see
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
  call(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: { text: string; type: string }): Promise<{ status: number; body: string }>;
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

  /** `GET certificate_request/NAME` (404: none). */
  async requestedCsr(certname: string): Promise<string | undefined> {
    const answer = await this.api.call('GET', `/certificate_request/${encodeURIComponent(certname)}`);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw new CaError('failed', `GET certificate_request/${certname} answered ${answer.status}`, answer.body.trim());
    return answer.body;
  }

  /** `PUT certificate_status/NAME {"desired_state":"signed"}`. */
  async signRequest(certname: string): Promise<void> {
    const answer = await this.api.call('PUT', `/certificate_status/${encodeURIComponent(certname)}`, { text: '{"desired_state":"signed"}', type: 'application/json' });
    if (answer.status < 200 || answer.status > 299) throw new CaError('failed', `PUT certificate_status/${certname} (sign) answered ${answer.status}`, answer.body.trim());
  }
}
