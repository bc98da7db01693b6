/**
 * The policy decision of token signing (src/service/token-policy.ts judgeCsr), exhaustively,
 * on CSRs made by the real openssl: exactly the token's certname, challenge, DNS alt names and
 * trusted extensions are signed; everything else is refused with a reason that holds no secret.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { readCsr } from '../../src/ca/csr.js';
import type { TokenRecord } from '../../src/ownership/entries.js';
import { challengeDigest, challengeMatches, judgeCsr, newChallengePassword } from '../../src/service/token-policy.js';
import { makeCsr, type CsrSpec } from '../support/csr.js';

const PP_ROLE = '1.3.6.1.4.1.34380.1.1.13';
const PP_ENV = '1.3.6.1.4.1.34380.1.1.12';
const PRIVATE = '1.3.6.1.4.1.34380.1.2.1';
const NAME = 'web01.example.test';
const NOW = Date.parse('2026-01-01T00:00:00Z');
const password = newChallengePassword();

function token(over: Partial<TokenRecord> = {}): TokenRecord {
  return { challenge_sha256: challengeDigest(password), expires_at: '2026-01-01T01:00:00.000Z', extensions: { [PP_ROLE]: 'web', [PRIVATE]: 'x' }, ...over };
}

const good: CsrSpec = { certname: NAME, challenge: password, altNames: [`DNS:${NAME}`, 'DNS:www.example.test'], extensions: { [PP_ROLE]: 'web', [PRIVATE]: 'x' } };

async function judge(spec: Partial<CsrSpec>, record: TokenRecord = token(), altNames = ['www.example.test'], certname = NAME) {
  const csr = await readCsr((await makeCsr({ ...good, ...spec })).csr);
  return judgeCsr(certname, csr, record, altNames, NOW);
}

describe('judgeCsr', () => {
  let goodCsr: Awaited<ReturnType<typeof readCsr>>;
  beforeAll(async () => {
    goodCsr = await readCsr((await makeCsr(good)).csr);
  });

  it('signs a CSR with the token, the certname, exactly the alt names and extensions asked', () => {
    expect(judgeCsr(NAME, goodCsr, token(), ['www.example.test'], NOW)).toEqual({ sign: true });
    // The certname among the asked alt names, or in the CSR's, changes nothing.
    expect(judgeCsr(NAME, goodCsr, token(), [NAME, 'www.example.test'], NOW)).toEqual({ sign: true });
  });

  it('signs a CSR without alt names and extensions for a token that asks none (EC key too)', async () => {
    const verdict = await judge({ altNames: [], extensions: {}, key: 'ec' }, token({ extensions: {} }), []);
    expect(verdict).toEqual({ sign: true });
  });

  const refusals: Array<[string, Partial<CsrSpec>, RegExp, Partial<TokenRecord>?, string[]?, string?]> = [
    ['a wrong challenge', { challenge: newChallengePassword() }, /challengePassword is not the token/],
    ['no challenge', { challenge: undefined }, /no challengePassword/],
    ['the token of another certname (CN differs from the argument)', { certname: 'db01.example.test' }, /subject CN "db01.example.test" is not the certname/],
    ['another certname presenting this token', {}, /subject CN/, {}, ['www.example.test'], 'db01.example.test'],
    ['an alt name not asked for', { altNames: [`DNS:${NAME}`, 'DNS:www.example.test', 'DNS:evil.example.test'] }, /DNS alt names \[www.example.test, evil.example.test\]/],
    ['an alt name asked for but missing', { altNames: [`DNS:${NAME}`] }, /DNS alt names \[\], the token for \[www.example.test\]/],
    ['an IP alt name', { altNames: ['DNS:www.example.test', 'IP:10.1.1.1'] }, /other than DNS names/],
    ['an extension not asked for', { extensions: { [PP_ROLE]: 'web', [PRIVATE]: 'x', [PP_ENV]: 'production' } }, /extension 1.3.6.1.4.1.34380.1.1.12, which the token does not allow/],
    ['an extension asked for but missing', { extensions: { [PP_ROLE]: 'web' } }, /does not ask for extension 1.3.6.1.4.1.34380.1.2.1/],
    ['another value of an extension', { extensions: { [PP_ROLE]: 'db', [PRIVATE]: 'x' } }, /another value of extension 1.3.6.1.4.1.34380.1.1.13/],
    ['an authorization-arc extension', { extensions: { [PP_ROLE]: 'web', [PRIVATE]: 'x', '1.3.6.1.4.1.34380.1.3.39': 'true' } }, /1.3.6.1.4.1.34380.1.3.39, which the token does not allow/],
    ['an extension outside Puppet’s arc', { extraExtensions: ['basicConstraints = critical,CA:TRUE'] }, /2.5.29.19, which espm does not sign/],
    ['an expired token', {}, /token expired at 2025-12-31T23:59:59.000Z/, { expires_at: '2025-12-31T23:59:59.000Z' }],
    ['a used token', {}, /used already/, { approved_public_key_sha256: 'AB:CD' }],
  ];
  it.each(refusals)('refuses %s', async (_what, spec, reason, over = {}, altNames = ['www.example.test'], certname = NAME) => {
    const verdict = await judge(spec, token(over), altNames, certname);
    expect(verdict.sign).toBe(false);
    expect(verdict.sign === false && verdict.reason).toMatch(reason);
    expect(JSON.stringify(verdict)).not.toContain(password);
  });

  it('compares challenges through SHA-256 digests of equal length', () => {
    const digest = challengeDigest(password);
    expect(challengeMatches(password, digest)).toBe(true);
    expect(challengeMatches(`${password}x`, digest)).toBe(false);
    expect(challengeMatches('', digest)).toBe(false);
    expect(challengeMatches(password, '00')).toBe(false);
    expect(newChallengePassword()).toMatch(/^[0-9a-f]{48}$/);
  });
});
