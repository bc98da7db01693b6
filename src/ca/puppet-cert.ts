/**
 * CertificateAuthority adapter for `puppet cert`, Puppet 2.7 to 5.x (PE 2.5 = Puppet 2.7.12).
 *
 * Source: puppetlabs/puppet 2.7.12–5.5 `lib/puppet/application/cert.rb` and
 * `lib/puppet/ssl/certificate_authority*.rb`, as summarised in
 * docs/reference/puppet-ca.md:
 * - `puppet cert generate NAME [--dns_alt_names a,b] --color false`, `puppet cert clean NAME`;
 * - 2.7 writes every line to stdout as `notice: …`/`err: …` (colour unless `--color false`)
 *   and EXITS 0 ON ERRORS; 3.x+ prints `Error:` on stderr and exits 24. So success is judged
 *   from the error lines AND the files on disk, never from the exit status alone;
 * - the CA's signed copy is `$ssldir/ca/signed/NAME.pem`.
 * `clean` alone revokes and removes (a separate `revoke` first can lose a revocation in 2.7,
 * which refreshes the CRL from the stale `crl.pem` copy).
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaConfig } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type CertificateOrder, type IssuedCertificate } from './authority.js';
import { certificateInfo } from './certificate-info.js';
import { collectIssued, nodeFiles, runCaCommand, ssldirLookup, type CaOutput } from './ssldir.js';

/** Messages of `puppet cert` (2.7.12–5.x). */
export const PUPPET_CERT_MESSAGES = {
  /** A line reporting an error: 2.7 `err: …`, 3.x+ `Error: …`. */
  errorLine: /^(?:err|Error): (.*)$/gm,
  /** generate on a name the CA has. */
  exists: /A Certificate already exists for |already has a signed certificate/,
  /** clean: the revocation happened. */
  revoked: /Revoked certificate with serial \d+/,
  /** clean/revoke of a name never signed. */
  unknown: /Could not find a serial number for |Could not find a certificate for /,
} as const;

/** The error lines of an output (`err:`/`Error:` prefix removed). */
export function errorLines(text: string): string[] {
  return [...text.matchAll(PUPPET_CERT_MESSAGES.errorLine)].map((m) => m[1]!);
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

/** The puppet-cert adapter. */
export class PuppetCertAuthority implements CertificateAuthority {
  readonly backend = 'puppet-cert';
  /** `puppet cert generate` (2.7) takes no extension requests: orders with trusted extensions are refused (docs/reference/puppet-ca.md). */
  readonly carriesExtensions = false;

  /**
   * @param config - `[ca]`: puppet, config, ssldir, timeout, keep_private_keys
   * @param runner - runs puppet (src/exec)
   * @param logger - outcomes at debug level; never keys
   */
  constructor(
    private readonly config: CaConfig<'puppet-cert'>,
    private readonly runner: CommandRunner,
    private readonly logger?: Logger,
  ) {
    this.resolveSsldir = ssldirLookup(config, runner, ['master', '--configprint', 'ssldir']);
  }

  private puppet(args: string[], what: string): Promise<CaOutput> {
    return runCaCommand(
      this.runner,
      { file: this.config.puppet, args: [...args, '--config', this.config.config], timeoutMs: this.config.timeoutMs },
      what,
    );
  }

  /** The master's ssldir: `[ca] ssldir`, else asked once with `puppet master --configprint ssldir` (works on 2.7–5.x; `puppet cert --configprint` without an action prints help on 2.7.10+). */
  readonly resolveSsldir: () => Promise<string>;

  async issue({ certname, dnsAltNames }: CertificateOrder): Promise<IssuedCertificate> {
    const ssldir = await this.resolveSsldir();
    const files = nodeFiles(ssldir, certname);
    const signedBefore = await exists(join(ssldir, 'ca', 'signed', `${certname}.pem`));
    const args = ['cert', 'generate', certname];
    if (dnsAltNames.length > 0) args.push('--dns_alt_names', dnsAltNames.join(','));
    args.push('--color', 'false');
    const out = await this.puppet(args, `puppet cert generate ${certname}`);
    const errors = errorLines(out.text);
    if (signedBefore || PUPPET_CERT_MESSAGES.exists.test(out.text)) throw new CertificateExistsError(errors.join('\n') || out.text);
    const written = (await exists(files.certificate)) && (await exists(files.privateKey));
    if (!written) {
      throw new CaError('failed', `puppet cert generate ${certname} left no certificate (exit ${out.exitCode})`, out.text);
    }
    if (errors.length > 0) {
      // e.g. a matching autosign.conf: the certificate was signed on submission and
      // generate's own sign step then fails. The files are there and checked below.
      this.logger?.warn({ certname, errors }, 'puppet cert generate reported errors but wrote the certificate');
    }
    const issued = await collectIssued(ssldir, certname, this.config.keepPrivateKeys);
    if (certificateInfo(issued.certificate).subject_cn !== certname) {
      throw new CaError('failed', `${files.certificate} is not a certificate for ${certname}`, out.text);
    }
    return issued;
  }

  /** `puppet cert clean NAME` (revokes and removes). The receipt is not needed: the service checked the fingerprint. */
  async revoke(certname: string): Promise<'revoked' | 'absent'> {
    const out = await this.puppet(['cert', 'clean', certname, '--color', 'false'], `puppet cert clean ${certname}`);
    if (PUPPET_CERT_MESSAGES.revoked.test(out.text)) return 'revoked';
    if (PUPPET_CERT_MESSAGES.unknown.test(out.text)) return 'absent';
    throw new CaError('failed', `puppet cert clean ${certname} did not revoke (exit ${out.exitCode})`, out.text);
  }

  async currentFingerprint(certname: string): Promise<string | undefined> {
    const ssldir = await this.resolveSsldir();
    let pem: string;
    try {
      pem = await readFile(join(ssldir, 'ca', 'signed', `${certname}.pem`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CaError('failed', `cannot read the CA's certificate for ${certname}: ${(err as Error).message}`);
    }
    return certificateInfo(pem).fingerprint_sha256;
  }
}
