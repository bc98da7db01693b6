/**
 * Facts about a PEM certificate that espm answers with and records: SHA-256 fingerprint,
 * expiry, serial, names, public key. Read with Node's X509Certificate (never by matching
 * `openssl` text). Source of truth: docs/design.md ("CertificateAuthority").
 *
 * @packageDocumentation
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { CaReceipt } from './authority.js';

/** What espm records and answers about a certificate. */
export interface CertificateInfo {
  /** SHA-256 of the DER, colon-separated upper-case hex. */
  fingerprint_sha256: string;
  /** End of validity, ISO-8601 (UTC). */
  not_after: string;
  /** Serial number, upper-case hex. */
  serial: string;
  /** Subject CN. */
  subject_cn: string;
  /** DNS subject alt names, in certificate order (empty when the extension is absent). */
  dns_alt_names: string[];
}

/**
 * Reads a PEM certificate.
 *
 * @param pem - one PEM `CERTIFICATE` (the first one of a bundle is used)
 * @throws Error when it is not a certificate
 */
export function certificateInfo(pem: string): CertificateInfo {
  const x509 = new X509Certificate(pem);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1] ?? '';
  const dnsAltNames = (x509.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
  return {
    fingerprint_sha256: x509.fingerprint256,
    not_after: new Date(x509.validTo).toISOString(),
    serial: x509.serialNumber.toUpperCase(),
    subject_cn: cn,
    dns_alt_names: dnsAltNames,
  };
}

/** Normalises a fingerprint for comparison: hex digits only, upper case. */
export function normaliseFingerprint(fingerprint: string): string {
  return fingerprint.replace(/[^0-9a-fA-F]/g, '').toUpperCase();
}

/** Colon-separated upper-case hex of `bytes` (`AB:CD:…`), the way Puppet and Node print fingerprints. */
export function colonHex(bytes: Buffer): string {
  return bytes.toString('hex').toUpperCase().match(/../g)?.join(':') ?? '';
}

/**
 * SHA-256 of a certificate's SubjectPublicKeyInfo DER, colon-separated upper-case hex: the
 * same for a certificate and for the key pair it was made for.
 *
 * @param pem - one PEM `CERTIFICATE` (the first of a bundle)
 * @throws Error when it is not a certificate
 */
export function publicKeySha256(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return colonHex(createHash('sha256').update(spki).digest());
}

/**
 * The receipt of an issued certificate: its SHA-256 fingerprint and the SHA-256 of its
 * public key (docs/design.md, "CertificateAuthority").
 *
 * @param pem - the node's certificate, PEM
 * @throws Error when it is not a certificate
 */
export function caReceipt(pem: string): CaReceipt {
  return { fingerprint_sha256: new X509Certificate(pem).fingerprint256, public_key_sha256: publicKeySha256(pem) };
}
