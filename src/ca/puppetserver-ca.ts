/**
 * CertificateAuthority adapter for `puppetserver ca`, Puppet ≥ 6.
 *
 * Source: puppetlabs/puppetserver-ca-cli 2.4.0 `lib/puppetserver/ca/action/{generate,clean,list}.rb`
 * and runs against a real puppetserver 7.9.5, as summarised in docs/reference/puppet-ca.md:
 * - `puppetserver ca generate --certname NAME [--subject-alt-names a,b] --config <puppet.conf>`
 *   needs the server running; it writes the key and certificate into the SERVER's ssldir
 *   (`private_keys/`, `public_keys/`, `certs/`); exit 0 is success even though stderr then
 *   shows `Error:` / `Signed certificate NAME could not be found on the CA`;
 * - exit 1 with `Existing file at '…'` or `already has a signed certificate` → exists;
 * - `clean` revokes and removes the CA's copy only: the `certs/`, `private_keys/`,
 *   `public_keys/` copies survive and block a later generate, so espm removes them;
 * - `list --certname NAME --format json` gives the CA's view with SHA-256 fingerprints.
 *
 * Token signing (`"signing": "token"`) needs what the CLI cannot give (a pending CSR's PEM, a
 * signed certificate's PEM, a CSR removed only while it is the one espm refused): it uses the
 * CA HTTP API `puppetserver ca` itself talks to, as the master (hostcert, hostprivkey and
 * localcacert from puppet.conf), through the puppetserver-api adapter's {@link PolicySigning}.
 *
 * @packageDocumentation
 */
import { rm } from 'node:fs/promises';
import type { CaConfig } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type CertificateOrder, type IssuedCertificate, type PolicySigning } from './authority.js';
import { PuppetserverApiAuthority } from './puppetserver-api.js';
import { withCsrAttributes } from './csr-attributes.js';
import { collectIssued, nodeFiles, runCaCommand, ssldirLookup, type CaOutput } from './ssldir.js';

/** Messages of `puppetserver ca` (puppetserver-ca-cli 2.x). */
export const PUPPETSERVER_CA_MESSAGES = {
  /** generate on a name whose files or certificate exist. */
  exists: /Existing file at|already has a signed certificate|already has a requested certificate/,
  /** clean/revoke success. */
  revoked: /Certificate for .* has been revoked/,
  /** clean of a name the CA does not know. */
  unknown: /Could not find files to clean for |Could not find certificate for /,
} as const;

/** One certificate of `puppetserver ca list --format json`. */
interface ListedCertificate {
  name: string;
  fingerprints?: { SHA256?: string };
}

/** The puppetserver-ca adapter. */
export class PuppetserverCaAuthority implements CertificateAuthority {
  readonly backend = 'puppetserver-ca';
  /** Through a per-call `csr_attributes` (docs/reference/modern-puppet.md). */
  readonly carriesExtensions = true;
  /** Token signing over the CA HTTP API, as the master (see the module comment). */
  readonly policySigning: PolicySigning;
  /** The CA HTTP API as the master: only its {@link PolicySigning} is used (no node keys, no pool). */
  private readonly api: PuppetserverApiAuthority;

  /**
   * @param config - `[ca]`: puppetserver, puppet, config, ssldir, timeout, keep_private_keys
   * @param runner - runs puppetserver / puppet (src/exec)
   * @param logger - outcomes at debug level; never keys
   */
  constructor(
    private readonly config: CaConfig<'puppetserver-ca'>,
    private readonly runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.resolveSsldir = ssldirLookup(config, runner, ['config', 'print', 'ssldir', '--section', 'server']);
    // Where and as whom: puppet's ca_server/ca_port, hostcert, hostprivkey, localcacert.
    this.api = new PuppetserverApiAuthority(
      { ...config, backend: 'puppetserver-api', keyPool: 0, apiUrl: undefined, apiCert: undefined, apiKey: undefined, apiCa: undefined },
      runner,
      logger,
    );
    this.policySigning = this.api.policySigning;
  }

  /** Closes the connections to the CA API (token signing). */
  close(): void {
    this.api.close();
  }

  private ca(args: string[], what: string, config = this.config.config): Promise<CaOutput> {
    return runCaCommand(
      this.runner,
      { file: this.config.puppetserver, args: ['ca', ...args, '--config', config], timeoutMs: this.config.timeoutMs },
      what,
    );
  }

  /** The master's ssldir: `[ca] ssldir`, else asked once with `puppet config print ssldir --section server`. */
  readonly resolveSsldir: () => Promise<string>;

  /** `puppetserver ca generate`; trusted extensions through a per-call puppet.conf and `csr_attributes` (src/ca/csr-attributes.ts). */
  async issue({ certname, dnsAltNames, extensions }: CertificateOrder): Promise<IssuedCertificate> {
    const ssldir = await this.resolveSsldir();
    const args = ['generate', '--certname', certname];
    if (dnsAltNames.length > 0) args.push('--subject-alt-names', dnsAltNames.join(','));
    const out = await withCsrAttributes(this.config.config, extensions, (config) =>
      this.ca(args, `puppetserver ca generate ${certname}`, config),
    );
    if (out.exitCode !== 0) {
      if (PUPPETSERVER_CA_MESSAGES.exists.test(out.text)) throw new CertificateExistsError(out.text);
      throw new CaError('failed', `puppetserver ca generate ${certname} exited ${out.exitCode}`, out.text);
    }
    this.logger?.debug({ certname }, 'puppetserver ca generate succeeded');
    return collectIssued(ssldir, certname, this.config.keepPrivateKeys);
  }

  /** `puppetserver ca clean` and the server-side copies removed. The receipt is not needed: the service checked the fingerprint. */
  async revoke(certname: string): Promise<'revoked' | 'absent'> {
    const ssldir = await this.resolveSsldir();
    const out = await this.ca(['clean', '--certname', certname], `puppetserver ca clean ${certname}`);
    let outcome: 'revoked' | 'absent';
    if (out.exitCode === 0 && PUPPETSERVER_CA_MESSAGES.revoked.test(out.text)) outcome = 'revoked';
    else if (PUPPETSERVER_CA_MESSAGES.unknown.test(out.text)) outcome = 'absent';
    else throw new CaError('failed', `puppetserver ca clean ${certname} exited ${out.exitCode}`, out.text);
    // clean leaves the copies generate wrote into the server's ssldir; they would block a
    // later generate of the same name.
    const files = nodeFiles(ssldir, certname);
    await Promise.all([files.certificate, files.privateKey, files.publicKey].map((path) => rm(path, { force: true })));
    return outcome;
  }

  async currentFingerprint(certname: string): Promise<string | undefined> {
    const out = await this.ca(['list', '--certname', certname, '--format', 'json'], `puppetserver ca list ${certname}`);
    const json = out.stdout.split('\n').find((line) => line.trimStart().startsWith('{'));
    if (json === undefined) {
      if (out.exitCode === 0) return undefined;
      throw new CaError('failed', `puppetserver ca list ${certname} exited ${out.exitCode}`, out.text);
    }
    let listed: { signed?: ListedCertificate[] };
    try {
      listed = JSON.parse(json) as { signed?: ListedCertificate[] };
    } catch {
      throw new CaError('failed', `puppetserver ca list ${certname} printed unreadable JSON`, out.text);
    }
    return listed.signed?.find((c) => c.name === certname)?.fingerprints?.SHA256;
  }
}
