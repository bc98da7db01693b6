/**
 * TokenService's rules with a real ledger, real CSRs (openssl) and a small in-memory CA that
 * stands in for puppetserver's certificate_status (the real one is in
 * test/e2e/token-signing.test.ts): one use under racing CSRs, durable before the answer;
 * only the SHA-256 of the challenge is stored; withdraw; revoke only the approved public key;
 * refused CSRs removed; expired tokens purged; pre-signed names refused; no CA support → 422;
 * with PuppetDB on, a revoked token certificate owes its deactivation as a pre-signed one does.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { ExecaCommandRunner } from '../../src/exec/command.js';
import { PuppetDb } from '../../src/puppetdb/puppetdb.js';
import { PuppetDbService } from '../../src/service/puppetdb.js';
import { makeTestPki, type TestPki } from '../support/ca-pki.js';
import { freePort } from '../support/net.js';
import type { CertificateAuthority, PolicySigning } from '../../src/ca/authority.js';
import { readCsr } from '../../src/ca/csr.js';
import { certificateRequestSchema } from '../../src/names.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { CertificateService } from '../../src/service/certificates.js';
import { ServiceError } from '../../src/service/errors.js';
import { TokenService } from '../../src/service/tokens.js';
import { makeCsr } from '../support/csr.js';
import { execa } from 'execa';

const NAME = 'web01.example.test';

/** What puppetserver's CA holds per name: a pending CSR's SHA-256, or a signed certificate. */
class MemoryCa implements CertificateAuthority {
  readonly backend = 'memory';
  readonly carriesExtensions = true;
  readonly requested = new Map<string, string>();
  readonly signed = new Map<string, string>();
  readonly revoked: string[] = [];
  /** Pending CSRs' PEM (for the revisit after a restart). */
  readonly requestedPem = new Map<string, string>();
  readonly signedRequests: string[] = [];
  readonly policySigning: PolicySigning = {
    caCertificate: async () => 'CA PEM',
    signedCertificate: async (n) => this.signed.get(n),
    requestedFingerprint: async (n) => this.requested.get(n),
    discardRequest: async (n, f) => this.requested.get(n) === f && this.requested.delete(n),
    requestedCsr: async (n) => this.requestedPem.get(n),
    signRequest: async (n) => {
      this.signedRequests.push(n);
    },
  };
  issue(): never {
    throw new Error('not used');
  }
  async revoke(certname: string): Promise<'revoked' | 'absent'> {
    this.revoked.push(certname);
    return this.signed.delete(certname) ? 'revoked' : 'absent';
  }
  async currentFingerprint(): Promise<string | undefined> {
    return undefined;
  }
}

/** A self-signed certificate for `key` (openssl), standing in for what the CA signs. */
async function certificateFor(key: string, dir: string): Promise<string> {
  const file = join(dir, 'node-key.pem');
  await writeFile(file, key, { mode: 0o600 });
  const { stdout } = await execa('openssl', ['req', '-x509', '-key', file, '-subj', `/CN=${NAME}`, '-days', '1']);
  await rm(file);
  return stdout;
}

let dir: string;
let ledger: Ledger;
let ca: MemoryCa;
let now: number;
let tokens: TokenService;
let certificates: CertificateService;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'espm-tokens-'));
  ledger = await Ledger.open(dir);
  ca = new MemoryCa();
  now = Date.parse('2026-01-01T00:00:00Z');
  tokens = new TokenService(ca, ledger, { ttlMs: 60_000, now: () => now, discardPollMs: 5 });
  certificates = new CertificateService(ca, ledger, { tokens });
});
afterEach(async () => {
  await tokens.settled();
  await ledger.close();
  await rm(dir, { recursive: true, force: true });
});

const order = (extra: Record<string, unknown> = {}) =>
  certificates.order(certificateRequestSchema.parse({ certname: NAME, signing: 'token', extensions: { pp_role: 'web' }, ...extra })) as ReturnType<TokenService['create']>;

describe('TokenService', () => {
  it('hands out a token; the ledger keeps only its SHA-256; GET shows awaiting_csr', async () => {
    const body = await order();
    expect(body).toEqual(expect.objectContaining({ certname: NAME, signing: 'token', ca_certificate: 'CA PEM', expires_at: '2026-01-01T00:01:00.000Z' }));
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).not.toContain(body.challenge_password);
    expect(await certificates.describe(NAME)).toEqual(expect.objectContaining({ state: 'awaiting_csr', signing: 'token', extensions: { pp_role: 'web' } }));
    await expect(order()).rejects.toMatchObject({ code: 'certificate_exists' });
  });

  it('of 8 racing CSRs with the token exactly one is approved, durably before the answer', async () => {
    const { challenge_password: challenge } = await order();
    const csrs = await Promise.all(Array.from({ length: 8 }, () => makeCsr({ certname: NAME, challenge, extensions: { '1.3.6.1.4.1.34380.1.1.13': 'web' } })));
    const answers = await Promise.all(csrs.map((c) => tokens.decide(NAME, c.csr)));
    expect(answers.filter((a) => a.decision === 'sign')).toHaveLength(1);
    expect(answers.filter((a) => a.decision === 'refuse' && a.reason === 'the token was used already')).toHaveLength(7);
    const winner = csrs[answers.findIndex((a) => a.decision === 'sign')]!;
    const reopened = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as { entries: Array<{ certificate: { token: { approved_public_key_sha256: string } } }> };
    expect(reopened.entries[0]!.certificate.token.approved_public_key_sha256).toBe((await readCsr(winner.csr)).publicKeySha256);
    // The ledger file's schema takes the token record back.
    await tokens.settled();
    await ledger.close();
    ledger = await Ledger.open(dir);
    expect(ledger.get('certificate', NAME)?.certificate.token?.approved_public_key_sha256).toBe((await readCsr(winner.csr)).publicKeySha256);
  });

  it('revokes only the certificate carrying the approved public key; GET shows it signed', async () => {
    const { challenge_password: challenge } = await order({ extensions: {} });
    const node = await makeCsr({ certname: NAME, challenge });
    expect(await tokens.decide(NAME, node.csr)).toEqual({ decision: 'sign' });
    const other = await makeCsr({ certname: NAME });
    ca.signed.set(NAME, await certificateFor(other.key, dir));
    await expect(certificates.revoke(NAME)).rejects.toMatchObject({ code: 'ownership_uncertain' });
    expect(ca.revoked).toEqual([]);
    ca.signed.set(NAME, await certificateFor(node.key, dir));
    expect(await certificates.describe(NAME)).toEqual(expect.objectContaining({ state: 'signed', fingerprint_sha256: expect.stringMatching(/^[0-9A-F:]+$/) }));
    await certificates.revoke(NAME);
    expect(ca.revoked).toEqual([NAME]);
    expect(ledger.get('certificate', NAME)).toBeUndefined();
  });

  it('DELETE while awaiting withdraws the token; its CSR is then refused', async () => {
    const { challenge_password: challenge } = await order({ extensions: {} });
    await certificates.revoke(NAME);
    expect(ledger.get('certificate', NAME)).toBeUndefined();
    expect((await tokens.decide(NAME, (await makeCsr({ certname: NAME, challenge })).csr)).decision).toBe('fallback');
  });

  it('removes a refused CSR of a token name from the CA once the CA shows exactly it', async () => {
    await order({ extensions: {} });
    const wrong = await makeCsr({ certname: NAME, challenge: 'nope' });
    const fingerprint = (await readCsr(wrong.csr)).fingerprintSha256;
    ca.requested.set(NAME, fingerprint);
    expect(await tokens.decide(NAME, wrong.csr)).toEqual({ decision: 'refuse', reason: 'the challengePassword is not the token of this certname' });
    await tokens.settled();
    expect(ca.requested.has(NAME)).toBe(false);
  });

  it('after a restart, signs a pending CSR that matches its token and removes one that does not', async () => {
    const { challenge_password: challenge } = await order({ extensions: {} });
    const other = 'db01.example.test';
    await certificates.order(certificateRequestSchema.parse({ certname: other, signing: 'token' }));
    const good = (await makeCsr({ certname: NAME, challenge })).csr;
    const bad = (await makeCsr({ certname: other, challenge })).csr;
    ca.requestedPem.set(NAME, good);
    ca.requested.set(NAME, (await readCsr(good)).fingerprintSha256);
    ca.requestedPem.set(other, bad);
    ca.requested.set(other, (await readCsr(bad)).fingerprintSha256);
    expect(await tokens.revisit()).toEqual([NAME]);
    expect(ca.signedRequests).toEqual([NAME]);
    await tokens.settled();
    expect(ca.requested.has(other)).toBe(false);
    expect(ca.requested.has(NAME)).toBe(true);
  });

  it('refuses an expired token and purges it; purgeExpired drops only expired unused tokens', async () => {
    const { challenge_password: challenge } = await order({ extensions: {} });
    now += 61_000;
    const answer = await tokens.decide(NAME, (await makeCsr({ certname: NAME, challenge })).csr);
    expect(answer).toEqual({ decision: 'refuse', reason: 'the token expired at 2026-01-01T00:01:00.000Z' });
    expect(ledger.get('certificate', NAME)).toBeUndefined();
    await order({ extensions: {} });
    expect(await tokens.purgeExpired()).toEqual([]);
    now += 61_000;
    expect(await tokens.purgeExpired()).toEqual([NAME]);
    await expect(certificates.describe(NAME)).rejects.toMatchObject({ code: 'certificate_not_found' });
  });

  it('refuses a CSR for a name espm pre-signs, sends unknown names to the fallback, refuses what is no CSR', async () => {
    await ledger.begin('certificate', 'pre.example.test', { dns_alt_names: [] });
    expect(await tokens.decide('pre.example.test', 'x')).toEqual({ decision: 'refuse', reason: 'espm signs this certname itself (pre-signed)' });
    expect(await tokens.decide('other.example.test', 'x')).toEqual({ decision: 'fallback' });
    await order();
    expect(await tokens.decide(NAME, 'not a csr')).toEqual({ decision: 'refuse', reason: expect.stringMatching(/^not a PEM CSR/) });
  });

  it('a CA without policy-based autosigning → 422 unsupported_signing, nothing recorded', async () => {
    const plain = new CertificateService({ ...ca, backend: 'puppet-cert', policySigning: undefined, issue: ca.issue, revoke: ca.revoke, currentFingerprint: ca.currentFingerprint }, ledger);
    const error = await plain.order(certificateRequestSchema.parse({ certname: NAME, signing: 'token' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'unsupported_signing' });
    expect(ledger.list()).toEqual([]);
  });
});

describe('TokenService with PuppetDB on', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makeTestPki();
  }, 60_000);
  afterAll(() => pki.remove());

  it('a revoked token certificate owes its PuppetDB deactivation like a pre-signed one (PuppetDB unreachable → 502, step kept)', async () => {
    const puppetdbAdapter = new PuppetDb(
      { url: `https://localhost:${await freePort()}`, timeoutMs: 2_000, puppet: '/nonexistent/puppet', puppetConfig: '/nonexistent/puppet.conf', cert: pki.clientCertPath, key: pki.clientKeyPath, ca: pki.caPath },
      new ExecaCommandRunner(),
    );
    try {
      const puppetdb = new PuppetDbService(puppetdbAdapter, ledger);
      tokens = new TokenService(ca, ledger, { ttlMs: 60_000, now: () => now, discardPollMs: 5, puppetdb });
      certificates = new CertificateService(ca, ledger, { tokens, puppetdb });
      const { challenge_password: challenge } = await order({ extensions: {} });
      const node = await makeCsr({ certname: NAME, challenge });
      expect(await tokens.decide(NAME, node.csr)).toEqual({ decision: 'sign' });
      ca.signed.set(NAME, await certificateFor(node.key, dir));
      await expect(certificates.revoke(NAME)).rejects.toMatchObject({ code: 'puppetdb_failed' });
      expect(ca.revoked).toEqual([NAME]);
      expect(ledger.get('certificate', NAME)).toMatchObject({ state: 'deleted', pending_steps: ['puppetdb_deactivation'] });
      // The next DELETE only settles the owed step: the CA is not asked again.
      await expect(certificates.revoke(NAME)).rejects.toMatchObject({ code: 'puppetdb_failed' });
      expect(ca.revoked).toEqual([NAME]);
      await expect(order()).rejects.toMatchObject({ code: 'certificate_exists' });
    } finally {
      await puppetdbAdapter.close();
    }
  });
});
