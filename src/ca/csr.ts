/**
 * What a node's own CSR asks for, read with node-forge's ASN.1 decoder (never by matching
 * `openssl req -text`): the subject CN, the PKCS#9 challengePassword, the DNS alt names and
 * the other extension requests, the SHA-256 of its DER and of its public key; its signature is
 * verified with Node's crypto. The one module that parses CSRs for the token flow
 * (docs/design.md, "Certificates: trusted extensions, and a signing mode where the key never
 * leaves the node").
 *
 * Source of truth: RFC 2986 (PKCS #10), RFC 2985 §5.4.1 (challengePassword) and §5.4.2
 * (extensionRequest), RFC 5280 §4.2.1.6 (subjectAltName); what a Puppet agent's CSR carries:
 * docs/reference/modern-puppet.md ("Policy-based autosigning": `openssl asn1parse` of a CSR
 * made from `csr_attributes.yaml`).
 *
 * @packageDocumentation
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import type ForgeTypes from 'node-forge';
import { colonHex } from './certificate-info.js';

/** PKCS#9 challengePassword. */
export const CHALLENGE_PASSWORD_OID = '1.2.840.113549.1.9.7';
/** PKCS#9 extensionRequest. */
export const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14';
/** X.509 subjectAltName. */
export const SUBJECT_ALT_NAME_OID = '2.5.29.17';
/** X.520 commonName. */
const COMMON_NAME_OID = '2.5.4.3';

/** Signature algorithms of a CSR espm can verify: OID → Node's digest name. */
const SIGNATURE_DIGESTS: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption (Puppet's default)
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256 (Puppet's key_type = ec)
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/** Largest CSR PEM espm reads, bytes (a 4096-bit RSA CSR with extensions is about 2 KiB). */
export const CSR_MAX_BYTES = 64 * 1024;

/** What a CSR asks for. */
export interface CsrRequest {
  /** Subject commonName ('' when absent). */
  commonName: string;
  /** The challengePassword attribute, or undefined when absent. Secret. */
  challengePassword: string | undefined;
  /** DNS names of the subjectAltName extension request, in CSR order (empty when absent). */
  dnsAltNames: string[];
  /** True when the subjectAltName request holds anything other than DNS names (IP, URI, …). */
  otherAltNames: boolean;
  /** Every other extension request: dotted OID → its value as text (a string type's content, else hex of the DER). */
  extensions: Map<string, string>;
  /** SHA-256 of the CSR's DER, colon-separated upper-case hex (what puppetserver's `certificate_status` shows for a CSR). */
  fingerprintSha256: string;
  /** SHA-256 of its SubjectPublicKeyInfo DER, colon-separated upper-case hex (as `publicKeySha256` of certificate-info.ts). */
  publicKeySha256: string;
}

/** The CSR cannot be read, or its signature does not verify. */
export class CsrError extends Error {
  override readonly name = 'CsrError';
}

type Asn1 = ForgeTypes.asn1.Asn1;

/** node-forge, loaded by the first {@link readCsr} (the daemon holds it only once a token CSR arrives). */
let forge: typeof ForgeTypes;

function children(node: Asn1 | undefined, what: string): Asn1[] {
  if (node === undefined || !Array.isArray(node.value)) throw new CsrError(`${what} is not a constructed ASN.1 value`);
  return node.value as Asn1[];
}

function oidOf(node: Asn1 | undefined, what: string): string {
  if (node?.type !== forge.asn1.Type.OID || typeof node.value !== 'string') throw new CsrError(`${what} is not an OID`);
  return forge.asn1.derToOid(node.value);
}

/** Strict DER decoding of all the bytes, BIT STRINGs left as bytes (node-forge's options; its typings lag behind). */
function fromDer(bytes: string): Asn1 {
  const decode = forge.asn1.fromDer as unknown as (bytes: string, options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean }) => Asn1;
  return decode(bytes, { strict: true, parseAllBytes: true, decodeBitStrings: false });
}

function derOf(node: Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary');
}

/** A string type's content (UTF8String decoded), or hex of the DER for anything else. */
function textOf(node: Asn1): string {
  const { Type } = forge.asn1;
  const stringTypes: number[] = [Type.UTF8, Type.PRINTABLESTRING, Type.IA5STRING, Type.BMPSTRING, 20 /* T61String */];
  if (node.tagClass === forge.asn1.Class.UNIVERSAL && stringTypes.includes(node.type) && typeof node.value === 'string') {
    if (node.type === Type.UTF8) return forge.util.decodeUtf8(node.value);
    if (node.type === Type.BMPSTRING) return Buffer.from(node.value, 'binary').swap16().toString('utf16le');
    return node.value;
  }
  return derOf(node).toString('hex');
}

/** The value of an extension's OCTET STRING, decoded as ASN.1 (a Puppet extension is a UTF8String inside). */
function extensionValue(octets: string): Asn1 {
  try {
    return fromDer(octets);
  } catch (err) {
    throw new CsrError(`an extension request's value is not DER: ${(err as Error).message}`);
  }
}

function readExtensions(values: Asn1[], into: CsrRequest): void {
  for (const set of values) {
    for (const extension of children(set, 'extensionRequest')) {
      const parts = children(extension, 'an extension');
      const oid = oidOf(parts[0], 'an extension id');
      const octets = parts[parts.length - 1];
      if (octets?.type !== forge.asn1.Type.OCTETSTRING || typeof octets.value !== 'string') throw new CsrError(`extension ${oid} has no value`);
      if (oid === SUBJECT_ALT_NAME_OID) {
        for (const name of children(extensionValue(octets.value), 'subjectAltName')) {
          if (name.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && name.type === 2 && typeof name.value === 'string') into.dnsAltNames.push(name.value);
          else into.otherAltNames = true;
        }
      } else if (into.extensions.has(oid)) {
        throw new CsrError(`extension ${oid} is requested twice`);
      } else {
        into.extensions.set(oid, textOf(extensionValue(octets.value)));
      }
    }
  }
}

/**
 * Reads a CSR and verifies its signature (node-forge is loaded at the first call).
 *
 * @param pem - one PEM `CERTIFICATE REQUEST` (at most {@link CSR_MAX_BYTES})
 * @returns what it asks for
 * @throws {@link CsrError} when it is not a PKCS #10 CSR, has an attribute espm cannot read,
 *   is signed with an algorithm espm does not know, or its signature does not verify
 */
export async function readCsr(pem: string): Promise<CsrRequest> {
  forge ??= (await import('node-forge')).default;
  if (pem.length > CSR_MAX_BYTES) throw new CsrError(`the CSR is larger than ${CSR_MAX_BYTES} bytes`);
  let root: Asn1;
  let der: Buffer;
  try {
    const [block] = forge.pem.decode(pem).filter((b) => b.type === 'CERTIFICATE REQUEST' || b.type === 'NEW CERTIFICATE REQUEST');
    if (block === undefined) throw new Error('no CERTIFICATE REQUEST block');
    der = Buffer.from(block.body, 'binary');
    root = fromDer(block.body);
  } catch (err) {
    throw new CsrError(`not a PEM CSR: ${(err as Error).message}`);
  }
  const [info, algorithm, signature] = children(root, 'the CSR');
  const [, subject, spki, attributes] = children(info, 'certificationRequestInfo');
  if (spki === undefined || signature === undefined || typeof signature.value !== 'string') throw new CsrError('the CSR is incomplete');
  const spkiDer = derOf(spki);
  const request: CsrRequest = {
    commonName: '',
    challengePassword: undefined,
    dnsAltNames: [],
    otherAltNames: false,
    extensions: new Map(),
    fingerprintSha256: colonHex(createHash('sha256').update(der).digest()),
    publicKeySha256: '',
  };
  verifySignature(info!, oidOf(children(algorithm, 'signatureAlgorithm')[0], 'the signature algorithm'), signature.value, spkiDer);
  request.publicKeySha256 = colonHex(createHash('sha256').update(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' })).digest());
  for (const rdn of children(subject, 'the subject')) {
    for (const pair of children(rdn, 'a subject RDN')) {
      const [type, value] = children(pair, 'a subject attribute');
      if (oidOf(type, 'a subject attribute type') === COMMON_NAME_OID && value !== undefined) request.commonName = textOf(value);
    }
  }
  for (const attribute of attributes === undefined ? [] : children(attributes, 'the attributes')) {
    const [type, values] = children(attribute, 'an attribute');
    const oid = oidOf(type, 'an attribute type');
    const members = children(values, `attribute ${oid}`);
    if (oid === CHALLENGE_PASSWORD_OID) {
      if (members.length !== 1 || request.challengePassword !== undefined) throw new CsrError('the challengePassword must have exactly one value');
      request.challengePassword = textOf(members[0]!);
    } else if (oid === EXTENSION_REQUEST_OID) {
      readExtensions(members, request);
    }
  }
  return request;
}

function verifySignature(info: Asn1, algorithmOid: string, bitString: string, spkiDer: Buffer): void {
  const digest = SIGNATURE_DIGESTS[algorithmOid];
  if (digest === undefined) throw new CsrError(`the CSR is signed with ${algorithmOid}, which espm does not verify`);
  // A BIT STRING's first byte counts the unused bits (0 for a signature).
  const signature = Buffer.from(bitString, 'binary').subarray(1);
  let good: boolean;
  try {
    good = verify(digest, derOf(info), createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }), signature);
  } catch (err) {
    throw new CsrError(`the CSR's signature cannot be checked: ${(err as Error).message}`);
  }
  if (!good) throw new CsrError("the CSR's signature does not verify");
}
