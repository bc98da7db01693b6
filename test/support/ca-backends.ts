/**
 * Test support: the table of CertificateAuthority backends the CA contract suite
 * (test/ca/contract.test.ts) runs over, each with its real component or double, and a view
 * of the backend's state that the suite checks against (CRL, the operator's own commands,
 * files left on the master). A new CA backend joins the suite by adding ONE entry to
 * {@link CA_BACKEND_FIXTURES}. Source: docs/design.md ("Tests", "Adding a backend").
 */
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { CertificateAuthority } from '../../src/ca/authority.js';
import { createCertificateAuthority } from '../../src/ca/index.js';
import { SandboxCertificateAuthority } from '../../src/ca/sandbox.js';
import { parseConfig, type Config } from '../../src/config.js';
import { PuppetCertMaster, revokedSerials } from './ca.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from './puppetserver.js';
import { CountingRunner } from './runner.js';

/** What a fixture's `setup()` gives the contract suite. */
export interface CaBackendUnderTest {
  /** `[ca]` keys pointing espm at this backend (for `startEspm`). */
  ini: Record<string, string | number>;
  /** Parsed `[ca]` settings of those keys. */
  config: Config['ca'];
  /** The adapter (made with the factory, as the daemon makes it). */
  ca: CertificateAuthority;
  /** The runner the adapter spawns through (counts and times every command). */
  runner: CountingRunner;
  /** `[state] dir` given to the factory. */
  stateDir: string;
  /** Serials (upper-case hex, no leading zeros) the backend records as revoked: its CRL, or the sandbox's `revoked.json`. */
  revokedSerials(): Promise<string[]>;
  /** The backend's CRL (PEM) for `openssl verify -crl_check`, or undefined when it keeps none (sandbox). */
  crl(): Promise<string | undefined>;
  /** Signs a certificate for `certname` as an operator would, outside espm. */
  issueDirectly(certname: string): Promise<void>;
  /** Revokes and cleans `certname` as an operator would, outside espm (so that it can be re-issued). */
  cleanDirectly(certname: string): Promise<void>;
  /** Whether the master's ssldir still holds a private key for `certname` (it must not). */
  privateKeyOnMaster(certname: string): Promise<boolean>;
  /** The backend's words when it refuses an issue for a name it has. */
  existsWords: RegExp;
  /**
   * What revoking a name revoked before answers: `absent`, except `puppet cert clean` (2.7),
   * which revokes it again by the serial its inventory keeps (the service never asks: it
   * checks the CA's current certificate first).
   */
  secondRevoke: 'absent' | 'revoked';
  /**
   * Whether the backend's certificates carry trusted extensions (docs/design.md, "Certificates:
   * trusted extensions"): the contract checks them in the certificate, or the 422 refusal.
   */
  carriesExtensions: boolean;
}

/** One entry of the table. */
export interface CaBackendFixture {
  /** `[ca] backend`. */
  name: Config['ca']['backend'];
  /** What the backend needs to run here, for `describeWith`. */
  component: string;
  /** Undefined when the component is here; otherwise what is missing. */
  missing: string | undefined;
  /** Starts (or reuses) the backend and builds the adapter. */
  setup(): Promise<CaBackendUnderTest>;
  /** Releases what `setup()` made (a shared puppetserver stays up until {@link releaseSharedPuppetserver}). */
  teardown(): Promise<void>;
}

const SERVER = { cert: '/c.pem', key: '/k.pem', psk: 'p'.repeat(40) };

/** `[ca]` settings as the daemon parses them from these INI keys. */
export function caSettings(keys: Record<string, string | number>): Config['ca'] {
  return parseConfig({ server: SERVER, ca: keys }, '/test.ini').ca;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function which(binary: string): Promise<string | undefined> {
  const r = await execa('/bin/sh', ['-c', `command -v ${binary}`], { reject: false });
  return r.exitCode === 0 && r.stdout.startsWith('/') ? r.stdout.trim() : undefined;
}

// --- one puppetserver for both puppetserver backends

let shared: Promise<RealPuppetserver> | undefined;

/** The suite's one real puppetserver (CA with subject alt names allowed), started at first use. */
export function sharedPuppetserver(): Promise<RealPuppetserver> {
  shared ??= startPuppetserver({ allowSubjectAltNames: true, port: 0 });
  return shared;
}

/** Stops the shared puppetserver, if it was started (call in the suite's top-level `afterAll`). */
export async function releaseSharedPuppetserver(): Promise<void> {
  const started = shared;
  shared = undefined;
  if (started !== undefined) await (await started).stop();
}

function puppetserverFixture(name: 'puppetserver-ca' | 'puppetserver-api'): CaBackendFixture {
  const availability = puppetserverAvailable();
  let made: CaBackendUnderTest | undefined;
  return {
    name,
    component: 'a real puppetserver (Debian packages puppetserver, puppet-agent)',
    missing: availability.available ? undefined : availability.reason,
    async setup() {
      const server = await sharedPuppetserver();
      const ini: Record<string, string | number> = {
        backend: name,
        puppet: '/usr/bin/puppet',
        puppetserver: '/usr/bin/puppetserver',
        config: server.confPath,
        ssldir: '',
        ...(name === 'puppetserver-api' ? { key_bits: 2048 } : {}),
      };
      const config = caSettings(ini);
      const runner = new CountingRunner();
      const stateDir = await mkdtemp(join(tmpdir(), `espm-ca-${name}-`));
      const crl = () => readFile(join(server.cadir, 'ca_crl.pem'), 'utf8');
      const nodeFiles = (certname: string) => ['certs', 'private_keys', 'public_keys'].map((dir) => join(server.ssldir, dir, `${certname}.pem`));
      made = {
        ini,
        config,
        ca: createCertificateAuthority(config, runner, stateDir),
        runner,
        stateDir,
        crl,
        revokedSerials: async () => revokedSerials(await crl()),
        async issueDirectly(certname) {
          const r = await server.caCli(['generate', '--certname', certname]);
          if (r.exitCode !== 0) throw new Error(`puppetserver ca generate ${certname}: ${r.stdout}${r.stderr}`);
        },
        async cleanDirectly(certname) {
          await server.caCli(['clean', '--certname', certname]);
          // clean leaves generate's copies in the server's ssldir; they would block a generate.
          await Promise.all(nodeFiles(certname).map((path) => rm(path, { force: true })));
        },
        privateKeyOnMaster: (certname) => exists(join(server.ssldir, 'private_keys', `${certname}.pem`)),
        existsWords: name === 'puppetserver-ca' ? /Existing file at|already has a signed certificate/ : /already has a signed certificate/,
        secondRevoke: 'absent',
        carriesExtensions: true,
      };
      return made;
    },
    async teardown() {
      made?.ca.close?.();
      if (made !== undefined) await rm(made.stateDir, { recursive: true, force: true });
      made = undefined;
    },
  };
}

function puppetCertFixture(ruby: string | undefined): CaBackendFixture {
  let master: PuppetCertMaster | undefined;
  let made: CaBackendUnderTest | undefined;
  return {
    name: 'puppet-cert',
    component: 'ruby (Debian package ruby) for the puppet cert 2.7.12 double',
    missing: ruby === undefined ? 'ruby is not on PATH (apt-get install ruby)' : undefined,
    async setup() {
      const m = (master = await PuppetCertMaster.create());
      const ini = m.caConfig();
      const config = caSettings(ini);
      const runner = new CountingRunner();
      const crl = () => readFile(join(m.ssldir, 'ca', 'ca_crl.pem'), 'utf8');
      made = {
        ini,
        config,
        ca: createCertificateAuthority(config, runner, m.dir),
        runner,
        stateDir: m.dir,
        crl,
        revokedSerials: async () => revokedSerials(await crl()),
        async issueDirectly(certname) {
          const r = await m.puppet('cert', 'generate', certname);
          if (r.exitCode !== 0 || /err: /.test(r.stdout)) throw new Error(`puppet cert generate ${certname}: ${r.stdout}`);
        },
        async cleanDirectly(certname) {
          await m.puppet('cert', 'clean', certname);
        },
        privateKeyOnMaster: (certname) => exists(join(m.ssldir, 'private_keys', `${certname}.pem`)),
        existsWords: /A Certificate already exists for /,
        secondRevoke: 'revoked',
        // `puppet cert generate` (2.7) has no extension requests.
        carriesExtensions: false,
      };
      return made;
    },
    async teardown() {
      await master?.remove();
      master = undefined;
      made = undefined;
    },
  };
}

function sandboxFixture(): CaBackendFixture {
  let made: CaBackendUnderTest | undefined;
  return {
    name: 'sandbox',
    component: 'nothing (pure TypeScript)',
    missing: undefined,
    async setup() {
      const stateDir = await mkdtemp(join(tmpdir(), 'espm-ca-sandbox-'));
      const ini = { backend: 'sandbox' };
      const config = caSettings(ini);
      const runner = new CountingRunner();
      // The operator's hand: a second adapter on the same CA directory.
      const operator = new SandboxCertificateAuthority(stateDir);
      made = {
        ini,
        config,
        ca: createCertificateAuthority(config, runner, stateDir),
        runner,
        stateDir,
        crl: () => Promise.resolve(undefined),
        revokedSerials: async () => (await operator.revocations()).map((r) => r.serial.replace(/^0+(?=.)/, '')),
        async issueDirectly(certname) {
          await operator.issue({ certname, dnsAltNames: [], extensions: [] });
        },
        async cleanDirectly(certname) {
          await operator.revoke(certname);
        },
        privateKeyOnMaster: () => Promise.resolve(false),
        existsWords: /A Certificate already exists for /,
        secondRevoke: 'absent',
        carriesExtensions: true,
      };
      return made;
    },
    async teardown() {
      if (made !== undefined) await rm(made.stateDir, { recursive: true, force: true });
      made = undefined;
    },
  };
}

/** Every CA backend, each with its real component or double. Add a backend here. */
export const CA_BACKEND_FIXTURES: readonly CaBackendFixture[] = [
  puppetCertFixture(await which('ruby')),
  puppetserverFixture('puppetserver-ca'),
  puppetserverFixture('puppetserver-api'),
  sandboxFixture(),
];
