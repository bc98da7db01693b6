/**
 * A node's key and CSR made in memory, for CAs espm asks over HTTP (puppetserver-api): the
 * CSR built with node-forge (ASN.1) and signed with Node's `crypto.sign`. Source of truth:
 * docs/reference/puppet-ca.md (what Puppet's own CSRs carry).
 *
 * @packageDocumentation
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type ForgeTypes from 'node-forge';
import { colonHex } from './certificate-info.js';
import { forgeExtensions } from './extension-encoding.js';
import { generateNodeKey, type NodeKeyPair } from './node-key-pool.js';
import type { TrustedExtension } from './trusted-extensions.js';

/** A node key and its CSR, made in memory by {@link buildNodeRequest}. */
export interface NodeRequest {
  /** The node's RSA private key, PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`). Secret. */
  privateKeyPem: string;
  /** Its public key. */
  publicKey: KeyObject;
  /** The CSR, PEM: CN = certname, SHA-256 with RSA, and an extensionRequest with the alt names and trusted extensions asked. */
  csrPem: string;
  /** SHA-256 of the CSR's DER, colon-separated upper-case hex (what `certificate_status` shows for a CSR). */
  csrFingerprint: string;
}

const signAsync = promisify(sign);

/**
 * Builds the CSR of a node whose key is `key`: subject CN = `certname` (UTF8String, as
 * Puppet's own CSRs), and an extensionRequest (only when there is something to ask) with
 * subjectAltName `DNS:certname` followed by the alt names (duplicates dropped; only when
 * `dnsAltNames` is not empty) and the trusted extensions, encoded as Puppet encodes
 * `csr_attributes.yaml` `extension_requests` (src/ca/extension-encoding.ts); signed SHA-256
 * with RSA (Node's `crypto.sign`, in the thread pool). node-forge is loaded at the first call,
 * so daemons on other backends do not hold it.
 *
 * @param certname - validated certname
 * @param dnsAltNames - validated DNS alt names, possibly empty
 * @param key - the node's key pair (from the node key pool or {@link generateNodeKey})
 * @param extensions - trusted extensions to request (validated, sorted), default none
 */
export async function buildNodeRequest(
  certname: string,
  dnsAltNames: readonly string[],
  key: NodeKeyPair,
  extensions: readonly TrustedExtension[] = [],
): Promise<NodeRequest> {
  const { default: forge } = await import('node-forge');
  const { privateKey, publicKey } = key;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: certname, valueTagClass: forge.asn1.Type.UTF8 as unknown as ForgeTypes.asn1.Class }]);
  const requested: object[] = [];
  if (dnsAltNames.length > 0) {
    const names = [...new Set([certname, ...dnsAltNames])];
    requested.push({ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) });
  }
  requested.push(...forgeExtensions(forge, extensions));
  if (requested.length > 0) csr.setAttributes([{ name: 'extensionRequest', extensions: requested }]);
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
    csrFingerprint: colonHex(createHash('sha256').update(der).digest()),
  };
}

/**
 * Generates a fresh node RSA key ({@link generateNodeKey}) and its CSR ({@link buildNodeRequest}).
 *
 * @param certname - validated certname
 * @param dnsAltNames - validated DNS alt names, possibly empty
 * @param keyBits - RSA modulus size, bits (`[ca] key_bits`)
 * @param extensions - trusted extensions to request, default none
 */
export async function generateNodeRequest(
  certname: string,
  dnsAltNames: readonly string[],
  keyBits: number,
  extensions: readonly TrustedExtension[] = [],
): Promise<NodeRequest> {
  return buildNodeRequest(certname, dnsAltNames, await generateNodeKey(keyBits), extensions);
}
