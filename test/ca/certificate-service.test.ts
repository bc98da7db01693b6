/**
 * The certificate service's ownership rules with a scripted CA double and a real ledger:
 * an outcome that is unknown (timeout AND interrupted) leaves the name `uncertain` after an
 * issue and `deleting` after a revoke, as the node service does; a clean failure leaves
 * nothing (issue) or the entry as it was (revoke); the receipt goes to the ledger and back
 * to the adapter's revoke.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendFailure } from '../../src/backend.js';
import { CaError, type CertificateAuthority, type CertificateOrder, type IssuedCertificate } from '../../src/ca/authority.js';
import type { Receipt } from '../../src/ownership/entries.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { CertificateService } from '../../src/service/certificates.js';
import { ServiceError } from '../../src/service/errors.js';
import { SandboxCertificateAuthority } from '../../src/ca/sandbox.js';
import { trustedExtensionValues } from '../support/trusted-extensions.js';

/** A real (sandbox) CA whose next issue or revoke can be made to fail a given way. */
class ScriptedCa implements CertificateAuthority {
  readonly backend = 'scripted';
  carriesExtensions = true;
  issueCalls = 0;
  failIssue: BackendFailure | undefined;
  failRevoke: BackendFailure | undefined;
  readonly revokedWith: Array<Receipt | null> = [];
  constructor(private readonly real: SandboxCertificateAuthority) {}
  async issue(order: CertificateOrder): Promise<IssuedCertificate> {
    this.issueCalls += 1;
    if (this.failIssue !== undefined) throw new CaError(this.failIssue, `issue ${order.certname}: ${this.failIssue}`);
    return this.real.issue(order);
  }
  async revoke(certname: string, receipt: Receipt | null): Promise<'revoked' | 'absent'> {
    this.revokedWith.push(receipt);
    if (this.failRevoke !== undefined) throw new CaError(this.failRevoke, `revoke ${certname}: ${this.failRevoke}`);
    return this.real.revoke(certname);
  }
  currentFingerprint(certname: string): Promise<string | undefined> {
    return this.real.currentFingerprint(certname);
  }
}

let dir: string;
let ledger: Ledger;
let ca: ScriptedCa;
let service: CertificateService;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'espm-cert-service-'));
  ledger = await Ledger.open(join(dir, 'state'));
  ca = new ScriptedCa(new SandboxCertificateAuthority(join(dir, 'ca')));
  service = new CertificateService(ca, ledger, {});
});
afterEach(async () => {
  await ledger.close();
  await rm(dir, { recursive: true, force: true });
});

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    return (err as ServiceError).code;
  }
  throw new Error('no error');
}

describe('CertificateService', () => {
  it.each([
    ['timeout', 'backend_timeout'],
    ['interrupted', 'backend_failed'],
  ] as const)('issue whose outcome is unknown (%s) → %s, the name uncertain, revoke refused 409', async (failure, problem) => {
    ca.failIssue = failure;
    expect(await code(service.issue({ certname: 'u.example.test', dns_alt_names: [], extensions: {} }))).toBe(problem);
    expect(ledger.get('certificate', 'u.example.test')?.state).toBe('uncertain');
    expect(await code(service.revoke('u.example.test'))).toBe('ownership_uncertain');
  });

  it.each([
    ['failed', 'backend_failed'],
    ['unavailable', 'backend_unavailable'],
  ] as const)('issue that cleanly failed (%s) → %s, nothing recorded', async (failure, problem) => {
    ca.failIssue = failure;
    expect(await code(service.issue({ certname: 'f.example.test', dns_alt_names: [], extensions: {} }))).toBe(problem);
    expect(ledger.get('certificate', 'f.example.test')).toBeUndefined();
  });

  it.each([
    ['timeout', 'deleting'],
    ['interrupted', 'deleting'],
    ['failed', 'present'],
    ['unavailable', 'present'],
  ] as const)('revoke failing (%s) leaves the entry %s; revoking again succeeds with the recorded receipt', async (failure, state) => {
    const issued = await service.issue({ certname: 'r.example.test', dns_alt_names: [], extensions: {} });
    const receipt = ledger.get('certificate', 'r.example.test')?.receipt;
    expect(receipt).toMatchObject({ fingerprint_sha256: issued.fingerprint_sha256 });
    ca.failRevoke = failure;
    await expect(service.revoke('r.example.test')).rejects.toBeInstanceOf(ServiceError);
    expect(ledger.get('certificate', 'r.example.test')?.state).toBe(state);
    ca.failRevoke = undefined;
    await service.revoke('r.example.test');
    expect(ledger.get('certificate', 'r.example.test')).toBeUndefined();
    expect(ca.revokedWith).toEqual([receipt, receipt]);
  });

  it('extensions asked of a CA that cannot carry them → unsupported_extension, the CA not called, nothing recorded', async () => {
    ca.carriesExtensions = false;
    const err = await service.issue({ certname: 'x.example.test', dns_alt_names: [], extensions: { pp_role: 'web' } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unsupported_extension', extensions: { unsupported_extensions: ['pp_role'] } });
    expect(ca.issueCalls).toBe(0);
    expect(ledger.get('certificate', 'x.example.test')).toBeUndefined();
    // Without extensions the same CA issues as before.
    await service.issue({ certname: 'x.example.test', dns_alt_names: [], extensions: {} });
    expect(ca.issueCalls).toBe(1);
  });

  it('issues with trusted extensions (DER UTF8String values, as Puppet) and GET lists them as asked', async () => {
    const extensions = { pp_role: 'web', '1.3.6.1.4.1.34380.1.2.7': 'café' };
    const issued = await service.issue({ certname: 'e.example.test', dns_alt_names: [], extensions });
    expect(trustedExtensionValues(issued.certificate)).toEqual({ '1.3.6.1.4.1.34380.1.1.13': 'web', '1.3.6.1.4.1.34380.1.2.7': 'café' });
    expect(service.get('e.example.test').extensions).toEqual(extensions);
    await service.issue({ certname: 'plain.example.test', dns_alt_names: [], extensions: {} });
    expect(service.get('plain.example.test').extensions).toEqual({});
  });
});
