/**
 * espm's own TLS identity: a self-signed certificate the platform pins.
 *
 * @packageDocumentation
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

/** RSA modulus size of espm's TLS key, bits. */
export const TLS_KEY_BITS = 2048;
/** Validity of espm's self-signed certificate, years. */
export const TLS_CERT_YEARS = 10;

/** Input of {@link generateSelfSignedCertificate}. */
export interface SelfSignedRequest {
  /** Certificate CN and first DNS subject alt name (lower-cased). */
  hostname: string;
  /** IP addresses (v4 or v6) added as IP subject alt names. */
  ips?: readonly string[];
  /** Start of validity; default now. */
  notBefore?: Date;
}

/** A generated certificate and key, PEM. */
export interface SelfSignedCertificate {
  /** PEM `CERTIFICATE`. */
  certificate: string;
  /** PEM `RSA PRIVATE KEY` (PKCS#1). Secret. */
  privateKey: string;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex (`AB:CD:…`). */
  fingerprintSha256: string;
}

/**
 * A random positive serial number: 16 bytes, hex, with the top bit cleared so the DER
 * INTEGER is positive (RFC 5280 §4.1.2.2) and the first byte non-zero.
 */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/**
 * Generates a 2048-bit RSA key and a self-signed SHA-256 server certificate with node-forge:
 * CN = hostname, SANs for the hostname and every IP, valid 10 years, random positive serial,
 * `serverAuth` extended key usage.
 *
 * @param request - hostname, IPs, start of validity
 * @returns the certificate, its key and its SHA-256 fingerprint
 * @throws Error if an entry of `ips` is not an IP address
 */
export function generateSelfSignedCertificate(request: SelfSignedRequest): SelfSignedCertificate {
  const hostname = request.hostname.toLowerCase();
  const ips = request.ips ?? [];
  for (const ip of ips) {
    if (isIP(ip) === 0) throw new Error(`not an IP address: ${ip}`);
  }
  const keys = forge.pki.rsa.generateKeyPair({ bits: TLS_KEY_BITS, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerialHex();
  const notBefore = request.notBefore ?? new Date();
  cert.validity.notBefore = notBefore;
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + TLS_CERT_YEARS);
  cert.validity.notAfter = notAfter;
  const subject = [{ name: 'commonName', value: hostname }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [{ type: 2, value: hostname }, ...ips.map((ip) => ({ type: 7, ip }))],
    },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  // node-forge ends PEM lines with CRLF; files and what operators paste use LF.
  const certificate = forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
  return {
    certificate,
    privateKey: forge.pki.privateKeyToPem(keys.privateKey).replace(/\r\n/g, '\n'),
    fingerprintSha256: new X509Certificate(certificate).fingerprint256,
  };
}
