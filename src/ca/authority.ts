/**
 * The CertificateAuthority interface: what espm asks of the Puppet CA, whatever its tool.
 * Adapters know their tool (invocation, messages, ssldir layout); they never decide
 * ownership.
 *
 * @packageDocumentation
 */
import { BackendError } from '../backend.js';

/** A certificate just issued for a node, PEM strings. */
export interface IssuedCertificate {
  certname: string;
  /** The node's signed certificate (PEM). */
  certificate: string;
  /** The node's private key (PEM). Secret: never logged, removed from the master's ssldir. */
  privateKey: string;
  /** The CA certificate (bundle) the node must trust (PEM). */
  caCertificate: string;
}

/** A CA call failed (see {@link BackendError}: `failed`, `timeout`, `unavailable`). */
export class CaError extends BackendError {
  override readonly name = 'CaError';
}

/** `issue`: the CA already has a certificate (or its files, or a request) for that name. */
export class CertificateExistsError extends Error {
  override readonly name = 'CertificateExistsError';
  /** @param output - the tool's words, e.g. `A Certificate already exists for foo` */
  constructor(readonly output: string) {
    super(output);
  }
}

/** The Puppet CA espm issues node certificates from. */
export interface CertificateAuthority {
  /** The backend name of `[ca] backend`. */
  readonly backend: string;
  /**
   * Generates a key and a certificate signed by the CA for `certname`, reads them (and the
   * CA certificate), then removes the node's private key from the master's ssldir unless
   * `[ca] keep_private_keys` is set.
   *
   * @param certname - validated certname (the CN)
   * @param dnsAltNames - extra DNS subject alt names (validated), possibly empty
   * @throws {@link CertificateExistsError} when the CA has that name already
   * @throws {@link CaError}
   */
  issue(certname: string, dnsAltNames: readonly string[]): Promise<IssuedCertificate>;
  /**
   * Revokes `certname`'s certificate and removes its files from the master.
   *
   * @returns `revoked`, or `absent` when the CA has no certificate of that name
   * @throws {@link CaError}
   */
  revoke(certname: string): Promise<'revoked' | 'absent'>;
  /**
   * SHA-256 fingerprint (colon-separated upper-case hex) of the certificate the CA holds as
   * signed for `certname`, or undefined when it holds none. Lets the service check that a
   * certificate is still the one espm issued before revoking it.
   *
   * @throws {@link CaError}
   */
  currentFingerprint(certname: string): Promise<string | undefined>;
  /** Optional: background work to begin once espm listens (puppetserver-api: fill its node key pool). */
  start?(): void;
  /** Optional: releases what the adapter holds (connections, pre-generated keys) when espm stops. */
  close?(): void;
}
