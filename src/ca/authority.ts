/**
 * The CertificateAuthority interface: what espm asks of the Puppet CA, whatever its tool.
 * Shaped by the job (issue a node's certificate, revoke it), not by any tool's steps: an
 * adapter's own multi-step work and its roll-back live in the adapter. Adapters know their
 * tool (invocation, messages, ssldir layout, HTTP API); they never decide ownership.
 *
 * Source of truth: docs/design.md ("Backend interfaces", "CertificateAuthority").
 *
 * @packageDocumentation
 */
import { BackendError } from '../backend.js';
import type { Receipt } from '../ownership/entries.js';
import type { TrustedExtension } from './trusted-extensions.js';

/**
 * What the platform orders: a certificate for `certname`. An object, so that trusted
 * extensions and token signing (docs/design.md, "Certificates: trusted extensions and token
 * signing") can be added without another signature change.
 */
export interface CertificateOrder {
  /** Validated certname: the certificate's subject CN. */
  certname: string;
  /** Extra DNS subject alt names (validated), possibly empty; `DNS:certname` is added by the CA when not empty. */
  dnsAltNames: readonly string[];
  /** Trusted extensions to carry into the certificate (validated, sorted by OID), possibly empty. */
  extensions: readonly TrustedExtension[];
}

/**
 * A CA receipt: what the CA signed, as the ledger keeps it and {@link CertificateAuthority.revoke}
 * gets it back. Built by `caReceipt` (src/ca/certificate-info.ts).
 */
export interface CaReceipt extends Receipt {
  /** SHA-256 of the DER certificate, colon-separated upper-case hex. */
  readonly fingerprint_sha256: string;
  /** SHA-256 of the certificate's SubjectPublicKeyInfo DER, colon-separated upper-case hex. */
  readonly public_key_sha256: string;
}

/** A certificate just issued for a node, PEM strings. */
export interface IssuedCertificate {
  certname: string;
  /** The node's signed certificate (PEM). */
  certificate: string;
  /** The node's private key (PEM). Secret: never logged, removed from the master's ssldir. */
  privateKey: string;
  /** The CA certificate (bundle) the node must trust (PEM). */
  caCertificate: string;
  /** What the ledger keeps to revoke exactly this certificate later. */
  receipt: CaReceipt;
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

/**
 * What a CA offers for token signing (docs/design.md, "Certificates: …a signing mode where the
 * key never leaves the node"): puppetserver signs the node's own CSR when the master's policy
 * executable says yes; espm reads the outcome and removes a CSR it refused. Only CAs with
 * policy-based autosigning (puppetserver ≥ 6) have it.
 */
export interface PolicySigning {
  /**
   * The CA certificate (bundle) a node must trust, PEM.
   *
   * @throws {@link CaError}
   */
  caCertificate(): Promise<string>;
  /**
   * The certificate the CA holds as signed for `certname` (PEM), or undefined when it holds
   * none (nothing, only a CSR, or a revoked one).
   *
   * @throws {@link CaError}
   */
  signedCertificate(certname: string): Promise<string | undefined>;
  /**
   * SHA-256 of the DER of the CSR the CA holds as `requested` for `certname` (colon hex), or
   * undefined when it holds no pending CSR.
   *
   * @throws {@link CaError}
   */
  requestedFingerprint(certname: string): Promise<string | undefined>;
  /**
   * Discards the CA's pending CSR for `certname`, only while it is the one with `fingerprint`
   * (the service decided it must go).
   *
   * @returns true when it was discarded, false when the CA holds no such CSR
   * @throws {@link CaError}
   */
  discardRequest(certname: string, fingerprint: string): Promise<boolean>;
  /**
   * The CSR the CA holds as `requested` for `certname` (PEM), or undefined when none.
   *
   * @throws {@link CaError}
   */
  requestedCsr(certname: string): Promise<string | undefined>;
  /**
   * Signs the CA's pending CSR for `certname` (the service approved exactly that CSR).
   *
   * @throws {@link CaError} (e.g. no CSR any more)
   */
  signRequest(certname: string): Promise<void>;
}

/** The Puppet CA espm issues node certificates from. */
export interface CertificateAuthority {
  /** The backend name of `[ca] backend`. */
  readonly backend: string;
  /**
   * Whether the certificates this CA signs can carry trusted extensions
   * ({@link CertificateOrder.extensions}). When false, the service refuses an order with
   * extensions (422 `unsupported_extension`) before calling {@link issue}.
   */
  readonly carriesExtensions: boolean;
  /**
   * Generates a key and a certificate signed by the CA for `certname`, reads them (and the
   * CA certificate), then removes the node's private key from the master's ssldir unless
   * `[ca] keep_private_keys` is set.
   *
   * @param order - certname and DNS alt names
   * @returns the PEM strings and the receipt
   * @throws {@link CertificateExistsError} when the CA has that name already (certificate,
   *   files or CSR); nothing was changed
   * @throws {@link CaError} `failed` (nothing of espm's left: refused, or rolled back),
   *   `timeout`/`interrupted` (something may be left), `unavailable` (nothing happened)
   */
  issue(order: CertificateOrder): Promise<IssuedCertificate>;
  /**
   * Revokes `certname`'s certificate and removes its files from the master. The service has
   * checked beforehand that the CA's certificate is the one espm issued.
   *
   * @param certname - validated certname
   * @param receipt - what {@link issue} returned (as the ledger kept it), or null for an
   *   entry without one (adopted, or written by a ledger of format 1)
   * @returns `revoked`, or `absent` when the CA has no certificate of that name
   * @throws {@link CaError}
   */
  revoke(certname: string, receipt: Receipt | null): Promise<'revoked' | 'absent'>;
  /**
   * SHA-256 fingerprint (colon-separated upper-case hex) of the certificate the CA holds as
   * signed for `certname`, or undefined when it holds none. Lets the service check that a
   * certificate is still the one espm issued before revoking it.
   *
   * @throws {@link CaError}
   */
  currentFingerprint(certname: string): Promise<string | undefined>;
  /** Present on CAs that sign a node's own CSR through policy-based autosigning (token signing). */
  readonly policySigning?: PolicySigning;
  /** Optional: background work to begin once espm listens (puppetserver-api: fill its node key pool). */
  start?(): void;
  /** Optional: releases what the adapter holds (connections, pre-generated keys) when espm stops. */
  close?(): void;
}
