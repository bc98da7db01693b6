/**
 * The policy decision of token signing, without I/O: does this CSR, presented for this
 * certname, match this signing token exactly? Pure, so that every case is unit-tested without
 * puppetserver (test/service/token-policy.test.ts).
 *
 * Source of truth: docs/design.md ("Certificates: trusted extensions, and a signing mode where
 * the key never leaves the node"); a Puppet agent's CSR: docs/reference/modern-puppet.md.
 *
 * @packageDocumentation
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CsrRequest } from '../ca/csr.js';
import { PUPPET_CERT_EXT_ARC } from '../ca/trusted-extensions.js';
import type { TokenRecord } from '../ownership/entries.js';

/** Bytes of randomness in a challenge password (hex-encoded: 48 characters, a PrintableString). */
export const CHALLENGE_BYTES = 24;

/** A new challenge password: {@link CHALLENGE_BYTES} random bytes, lower-case hex. Secret. */
export function newChallengePassword(): string {
  return randomBytes(CHALLENGE_BYTES).toString('hex');
}

/** SHA-256 of a challenge password, lower-case hex: what the ledger keeps instead of it. */
export function challengeDigest(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('hex');
}

/**
 * Whether `presented` is the password whose digest is `digestHex`, in constant time: both
 * sides are SHA-256 digests (same length whatever was presented), compared with
 * `crypto.timingSafeEqual`.
 */
export function challengeMatches(presented: string, digestHex: string): boolean {
  const expected = Buffer.from(digestHex, 'hex');
  const actual = createHash('sha256').update(presented, 'utf8').digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** The outcome for one CSR: sign it, or refuse it and why (the reason never holds a secret). */
export type TokenVerdict = { sign: true } | { sign: false; reason: string };

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((v) => y.has(v));
}

/**
 * Judges a CSR against the token espm holds for `certname`. Signs only when all hold:
 * the token is unused and unexpired; the CSR's subject CN is `certname`; its challengePassword
 * is the token's (constant time); its DNS alt names, apart from `certname` itself, are exactly
 * `dnsAltNames`, and it asks for no other kind of alt name; its extension requests in Puppet's
 * arc (1.3.6.1.4.1.34380.1) are exactly the token's, value for value; it asks for no other
 * extension.
 *
 * @param certname - the certname puppetserver passed (the policy executable's argument)
 * @param csr - what the CSR asks for ({@link readCsr} of src/ca/csr.ts)
 * @param token - the token record of the ledger
 * @param dnsAltNames - the DNS alt names the platform asked for
 * @param nowMs - the current time, ms since the epoch
 */
export function judgeCsr(certname: string, csr: CsrRequest, token: TokenRecord, dnsAltNames: readonly string[], nowMs: number): TokenVerdict {
  if (token.approved_public_key_sha256 !== undefined) return { sign: false, reason: 'the token was used already' };
  if (Date.parse(token.expires_at) <= nowMs) return { sign: false, reason: `the token expired at ${token.expires_at}` };
  if (csr.commonName !== certname) return { sign: false, reason: `the CSR's subject CN ${JSON.stringify(csr.commonName.slice(0, 80))} is not the certname` };
  if (csr.challengePassword === undefined) return { sign: false, reason: 'the CSR carries no challengePassword' };
  if (!challengeMatches(csr.challengePassword, token.challenge_sha256)) return { sign: false, reason: 'the challengePassword is not the token of this certname' };
  if (csr.otherAltNames) return { sign: false, reason: 'the CSR asks for alt names other than DNS names' };
  const asked = dnsAltNames.filter((n) => n !== certname);
  const requested = csr.dnsAltNames.filter((n) => n !== certname);
  if (!sameSet(requested, asked)) {
    return { sign: false, reason: `the CSR asks for DNS alt names [${requested.join(', ')}], the token for [${asked.join(', ')}]` };
  }
  const puppetArc = `${PUPPET_CERT_EXT_ARC}.`;
  for (const oid of csr.extensions.keys()) {
    if (!oid.startsWith(puppetArc)) return { sign: false, reason: `the CSR asks for extension ${oid}, which espm does not sign` };
    if (!Object.hasOwn(token.extensions, oid)) return { sign: false, reason: `the CSR asks for extension ${oid}, which the token does not allow` };
  }
  for (const [oid, value] of Object.entries(token.extensions)) {
    const requestedValue = csr.extensions.get(oid);
    if (requestedValue === undefined) return { sign: false, reason: `the CSR does not ask for extension ${oid}, which the token requires` };
    if (requestedValue !== value) return { sign: false, reason: `the CSR asks for another value of extension ${oid} than the token` };
  }
  return { sign: true };
}
