/**
 * The CertificateAuthority contract: the same story for every CA backend (issue #13), run by
 * `describe.each` over test/support/ca-backends.ts — each backend with its real component
 * (a real puppetserver, shared by puppetserver-ca and puppetserver-api) or double (the
 * puppet cert 2.7.12 double under ruby; the sandbox).
 *
 * Through the adapter: the certificate verifies against the returned CA, the key matches,
 * CN/SAN are right, the receipt describes the certificate; revoking puts the serial in the
 * CRL, an absent name is `absent`, the name can be issued again. Through the service (with a
 * real ledger): 409 for espm's own name and for a name the CA has, revoke only what espm
 * issued and only while the CA still holds that very certificate, CA operations never
 * overlapping under concurrency. Through the daemon over HTTPS: the answers' shape.
 * Backend-specific behaviour lives in test/ca/<backend>.test.ts.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CertificateExistsError, type CertificateAuthority, type CertificateOrder } from '../../src/ca/authority.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { CertificateService } from '../../src/service/certificates.js';
import { ServiceError } from '../../src/service/errors.js';
import { TokenService } from '../../src/service/tokens.js';
import { certificateRequestSchema } from '../../src/names.js';
import { neverOverlapping, opensslChecks } from '../support/ca.js';
import { CA_BACKEND_FIXTURES, releaseSharedPuppetserver, type CaBackendFixture, type CaBackendUnderTest } from '../support/ca-backends.js';
import { describeWith } from '../support/components.js';
import { trustedExtensionValues } from '../support/trusted-extensions.js';
import { apiClient, startEspm } from '../support/espm.js';

afterAll(() => releaseSharedPuppetserver(), 60_000);

/** The adapter with every call's [start, end] recorded. */
function recording(ca: CertificateAuthority): { ca: CertificateAuthority; calls: Array<{ op: string; name: string; start: number; end: number }> } {
  const calls: Array<{ op: string; name: string; start: number; end: number }> = [];
  const timed = async <T>(op: string, name: string, run: () => Promise<T>): Promise<T> => {
    const start = Date.now();
    try {
      return await run();
    } finally {
      calls.push({ op, name, start, end: Date.now() });
    }
  };
  return {
    calls,
    ca: {
      backend: ca.backend,
      carriesExtensions: ca.carriesExtensions,
      issue: (order: CertificateOrder) => timed('issue', order.certname, () => ca.issue(order)),
      revoke: (certname, receipt) => timed('revoke', certname, () => ca.revoke(certname, receipt)),
      currentFingerprint: (certname) => timed('currentFingerprint', certname, () => ca.currentFingerprint(certname)),
    },
  };
}

/** openssl's SHA-256 of the certificate's DER and of its SubjectPublicKeyInfo DER, colon hex. */
async function opensslDigests(pem: string): Promise<{ fingerprint: string; publicKey: string }> {
  const fp = await execa('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem });
  const pub = await execa('openssl', ['x509', '-noout', '-pubkey'], { input: pem });
  const der = await execa('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub.stdout, encoding: 'buffer' });
  const digest = await execa('openssl', ['dgst', '-sha256', '-r'], { input: der.stdout });
  return {
    fingerprint: fp.stdout.split('=')[1]!.trim().toUpperCase(),
    publicKey: digest.stdout.split(' ')[0]!.toUpperCase().match(/../g)!.join(':'),
  };
}

async function serviceError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    return err as ServiceError;
  }
  throw new Error('no error');
}

describe.each(CA_BACKEND_FIXTURES.map((f) => [f.name, f] as const))('CertificateAuthority contract: %s', (name: string, fixture: CaBackendFixture) => {
  describeWith(fixture.component, fixture.missing)(`${name}`, () => {
    let backend: CaBackendUnderTest;
    let ledgerDir: string;
    let ledger: Ledger;
    let service: CertificateService;
    let recorded: ReturnType<typeof recording>;
    /** Certnames unique to this backend (the puppetserver is shared). */
    const n = (host: string) => `${host}.${name}.example.test`;

    beforeAll(async () => {
      backend = await fixture.setup();
      ledgerDir = await mkdtemp(join(tmpdir(), 'espm-ca-contract-'));
      ledger = await Ledger.open(ledgerDir);
      recorded = recording(backend.ca);
      service = new CertificateService(recorded.ca, ledger, {});
    }, 240_000);
    afterAll(async () => {
      await ledger?.close();
      if (ledgerDir !== undefined) await rm(ledgerDir, { recursive: true, force: true });
      await fixture.teardown();
    }, 60_000);

    it('issue: openssl verifies it against the returned CA, the key matches, CN and SAN are right, the receipt describes it, no key on the master', async () => {
      const issued = await backend.ca.issue({ certname: n('web01'), dnsAltNames: ['www.example.test'], extensions: [] });
      const checks = await opensslChecks({ certificate: issued.certificate, private_key: issued.privateKey, ca_certificate: issued.caCertificate });
      expect(checks.verify).toContain('OK');
      expect(checks.keyMatches).toBe(true);
      expect(checks.text).toMatch(new RegExp(`Subject: CN ?= ?${n('web01').replace(/\./g, '\\.')}`));
      expect(new X509Certificate(issued.certificate).subjectAltName).toBe(`DNS:${n('web01')}, DNS:www.example.test`);
      const digests = await opensslDigests(issued.certificate);
      expect(issued.receipt).toEqual({ fingerprint_sha256: digests.fingerprint, public_key_sha256: digests.publicKey });
      expect(await backend.ca.currentFingerprint(n('web01'))).toBe(issued.receipt.fingerprint_sha256);
      expect(await backend.privateKeyOnMaster(n('web01'))).toBe(false);

      const plain = await backend.ca.issue({ certname: n('plain'), dnsAltNames: [], extensions: [] });
      // Without alt names asked: no SAN, or (sandbox) the certname alone.
      expect([undefined, `DNS:${n('plain')}`]).toContain(new X509Certificate(plain.certificate).subjectAltName);
    }, 60_000);

    it('token signing: a CA with policy-based autosigning hands out a token (its CA certificate, nothing at the CA) that DELETE withdraws; any other → 422, nothing recorded', async () => {
      const certname = n('token');
      const signing = backend.ca.policySigning;
      const tokens = signing === undefined ? undefined : new TokenService(backend.ca, ledger, { ttlMs: 60_000 });
      const withTokens = new CertificateService(backend.ca, ledger, tokens === undefined ? {} : { tokens });
      const order = withTokens.order(certificateRequestSchema.parse({ certname, signing: 'token', extensions: { pp_role: 'web' } }));
      if (signing === undefined) {
        expect((await serviceError(order)).code).toBe('unsupported_signing');
        expect(ledger.get('certificate', certname)).toBeUndefined();
        return;
      }
      const body = (await order) as { ca_certificate: string; csr_attributes: string };
      expect(new X509Certificate(body.ca_certificate).subject).toMatch(/CN=/);
      expect(await signing.requestedFingerprint(certname)).toBeUndefined();
      expect(await signing.signedCertificate(certname)).toBeUndefined();
      expect(await withTokens.describe(certname)).toEqual(expect.objectContaining({ state: 'awaiting_csr' }));
      await withTokens.revoke(certname);
      expect(ledger.get('certificate', certname)).toBeUndefined();
      const issued = await backend.ca.issue({ certname, dnsAltNames: [], extensions: [] });
      expect(await signing.signedCertificate(certname)).toBe(issued.certificate);
      expect((await serviceError(withTokens.order(certificateRequestSchema.parse({ certname: n('token'), signing: 'token' })))).code).toBe('certificate_exists');
    }, 60_000);

    it('issue of a name the CA has → CertificateExistsError with the backend\'s words; the CA\'s certificate untouched', async () => {
      const before = await backend.ca.currentFingerprint(n('web01'));
      const err = await backend.ca.issue({ certname: n('web01'), dnsAltNames: [], extensions: [] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CertificateExistsError);
      expect((err as CertificateExistsError).output).toMatch(backend.existsWords);
      expect(await backend.ca.currentFingerprint(n('web01'))).toBe(before);
    }, 60_000);

    it('revoke → revoked: the serial is in the CRL (openssl says revoked where there is one), the CA holds none; a name never issued → absent; the name can be issued anew', async () => {
      const first = await backend.ca.issue({ certname: n('again'), dnsAltNames: [], extensions: [] });
      const serial = new X509Certificate(first.certificate).serialNumber.toUpperCase().replace(/^0+(?=.)/, '');
      expect(await backend.ca.revoke(n('again'), first.receipt)).toBe('revoked');
      expect(await backend.revokedSerials()).toContain(serial);
      const crl = await backend.crl();
      if (crl !== undefined) {
        const verdict = await opensslChecks({ certificate: first.certificate, private_key: first.privateKey, ca_certificate: first.caCertificate }, crl);
        expect(verdict.verify).toMatch(/certificate revoked/);
      }
      expect(await backend.ca.currentFingerprint(n('again'))).toBeUndefined();
      expect(await backend.ca.revoke(n('again'), first.receipt)).toBe(backend.secondRevoke);
      expect(await backend.ca.revoke(n('never'), null)).toBe('absent');
      const second = await backend.ca.issue({ certname: n('again'), dnsAltNames: [], extensions: [] });
      expect(second.receipt.fingerprint_sha256).not.toBe(first.receipt.fingerprint_sha256);
      expect(second.receipt.public_key_sha256).not.toBe(first.receipt.public_key_sha256);
      expect(await backend.ca.revoke(n('again'), second.receipt)).toBe('revoked');
    }, 60_000);

    it('service: issue records the certificate and its receipt; a second issue → certificate_exists without a CA call; a name the CA has → certificate_exists', async () => {
      const body = await service.issue({ certname: n('svc'), dns_alt_names: ['alias.example.test'], extensions: {} });
      const entry = ledger.get('certificate', n('svc'));
      expect(entry).toMatchObject({ state: 'present', certificate: { dns_alt_names: ['alias.example.test'], fingerprint_sha256: body.fingerprint_sha256 } });
      expect(entry?.receipt).toEqual({ fingerprint_sha256: body.fingerprint_sha256, public_key_sha256: (await opensslDigests(body.certificate)).publicKey });
      expect(service.get(n('svc'))).toMatchObject({ certname: n('svc'), fingerprint_sha256: body.fingerprint_sha256, dns_alt_names: ['alias.example.test'], extensions: {} });

      const calls = recorded.calls.length;
      expect((await serviceError(service.issue({ certname: n('svc'), dns_alt_names: [], extensions: {} }))).code).toBe('certificate_exists');
      expect(recorded.calls.length).toBe(calls);

      await backend.issueDirectly(n('theirs'));
      const theirs = await serviceError(service.issue({ certname: n('theirs'), dns_alt_names: [], extensions: {} }));
      expect(theirs.code).toBe('certificate_exists');
      expect(theirs.message).toMatch(backend.existsWords);
      expect(ledger.get('certificate', n('theirs'))).toBeUndefined();
    }, 60_000);

    it('service: trusted extensions are carried into the certificate (DER UTF8String, openssl shows `..web`) and GET lists them — or 422 unsupported_extension with nothing run', async () => {
      const extensions = { pp_role: 'web', pp_environment: 'production', '1.3.6.1.4.1.34380.1.2.1': 'site' };
      const commands = backend.runner.count;
      const calls = recorded.calls.length;
      const outcome = await service.issue({ certname: n('ext'), dns_alt_names: [], extensions }).catch((e: unknown) => e);
      if (!backend.carriesExtensions) {
        expect(outcome).toBeInstanceOf(ServiceError);
        expect((outcome as ServiceError).code).toBe('unsupported_extension');
        expect([backend.runner.count, recorded.calls.length]).toEqual([commands, calls]);
        expect(ledger.get('certificate', n('ext'))).toBeUndefined();
        expect(await backend.ca.currentFingerprint(n('ext'))).toBeUndefined();
        return;
      }
      const body = outcome as Awaited<ReturnType<CertificateService['issue']>>;
      expect(trustedExtensionValues(body.certificate)).toEqual({
        '1.3.6.1.4.1.34380.1.1.12': 'production',
        '1.3.6.1.4.1.34380.1.1.13': 'web',
        '1.3.6.1.4.1.34380.1.2.1': 'site',
      });
      const checks = await opensslChecks({ certificate: body.certificate, private_key: body.private_key, ca_certificate: body.ca_certificate });
      expect(checks.verify).toContain('OK');
      expect(checks.text).toMatch(/1\.3\.6\.1\.4\.1\.34380\.1\.1\.13:\s*\n\s*\.\.web\n/);
      expect(service.get(n('ext')).extensions).toEqual(extensions);
      await service.revoke(n('ext'));
    }, 60_000);

    it('service: never revokes what espm did not issue (not found), nor a certificate re-issued under espm\'s name (409, left alone); revokes its own', async () => {
      await backend.issueDirectly(n('operator'));
      expect((await serviceError(service.revoke(n('operator')))).code).toBe('certificate_not_found');
      expect(await backend.ca.currentFingerprint(n('operator'))).toBeDefined();

      await service.issue({ certname: n('reissued'), dns_alt_names: [], extensions: {} });
      await backend.cleanDirectly(n('reissued'));
      await backend.issueDirectly(n('reissued'));
      const theirs = await backend.ca.currentFingerprint(n('reissued'));
      expect((await serviceError(service.revoke(n('reissued')))).code).toBe('ownership_uncertain');
      expect(await backend.ca.currentFingerprint(n('reissued'))).toBe(theirs);
      expect(ledger.get('certificate', n('reissued'))?.state).toBe('present');

      await service.issue({ certname: n('own'), dns_alt_names: [], extensions: {} });
      await service.revoke(n('own'));
      expect(ledger.get('certificate', n('own'))).toBeUndefined();
      expect(await backend.ca.currentFingerprint(n('own'))).toBeUndefined();
      expect((await serviceError(service.revoke(n('own')))).code).toBe('certificate_not_found');
    }, 120_000);

    it('service: 20 concurrent issues of distinct names all succeed and verify, CA operations never overlapping', async () => {
      const from = recorded.calls.length;
      const names = Array.from({ length: 20 }, (_, i) => n(`burst${i}`));
      const issued = await Promise.all(names.map((certname) => service.issue({ certname, dns_alt_names: [], extensions: {} })));
      const calls = recorded.calls.slice(from);
      expect(calls.filter((c) => c.op === 'issue').map((c) => c.name).sort()).toEqual([...names].sort());
      expect(neverOverlapping(calls)).toBe(true);
      for (const body of issued) expect((await opensslChecks(body)).verify).toContain('OK');
      const spawned = backend.runner.intervals.filter((i) => i.start >= (calls[0]?.start ?? 0));
      expect(neverOverlapping(spawned)).toBe(true);
    }, 300_000);

    it('over HTTPS: POST → 201 with the certificate, GET → metadata without the key, DELETE → 204, then 404', async () => {
      const espm = await startEspm({ ca: backend.ini });
      try {
        const api = apiClient(espm);
        const res = await api.post('/v1/certificates', { certname: n('http'), dns_alt_names: ['www.example.test'], extensions: {} });
        expect(res.status).toBe(201);
        expect(res.headers['location']).toBe(`/v1/certificates/${n('http')}`);
        expect(res.headers['cache-control']).toBe('no-store');
        expect(Object.keys(res.body).sort()).toEqual(['ca_certificate', 'certificate', 'certname', 'fingerprint_sha256', 'not_after', 'private_key']);
        expect(res.body.fingerprint_sha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
        expect(res.body.not_after).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        const meta = await api.get(`/v1/certificates/${n('http')}`);
        expect(meta.body).toEqual({
          certname: n('http'),
          fingerprint_sha256: res.body.fingerprint_sha256,
          not_after: res.body.not_after,
          serial: expect.stringMatching(/^[0-9A-F]+$/),
          dns_alt_names: ['www.example.test'],
          extensions: {},
          created_at: expect.any(String),
        });
        expect((await api.post('/v1/certificates', { certname: n('http') })).status).toBe(409);
        expect((await api.delete(`/v1/certificates/${n('http')}`)).status).toBe(204);
        expect((await api.get(`/v1/certificates/${n('http')}`)).status).toBe(404);
        expect((await api.delete(`/v1/certificates/${n('http')}`)).status).toBe(404);
        const keyBody = (res.body.private_key as string).split('\n')[1]!;
        expect(espm.logs.text()).not.toContain(keyBody);
      } finally {
        await espm.stop();
      }
    }, 120_000);
  });
});
