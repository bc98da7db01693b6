/**
 * Test support for certificate tests: the puppet cert 2.7 double's directory, and openssl
 * checks of what espm hands out.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** The puppet cert 2.7.12 double. */
export const PUPPET_CERT_DOUBLE = fileURLToPath(new URL('../fixtures/puppet-cert/puppet', import.meta.url));

/** A master's confdir for the double: puppet.conf with an ssldir, knobs, invocation log. */
export class PuppetCertMaster {
  private constructor(readonly dir: string) {}

  static async create(): Promise<PuppetCertMaster> {
    const dir = await mkdtemp(join(tmpdir(), 'espm-puppet-cert-'));
    await writeFile(join(dir, 'puppet.conf'), `[main]\nssldir = ${join(dir, 'ssl')}\ncertname = master.example.test\n`);
    return new PuppetCertMaster(dir);
  }

  get confPath(): string {
    return join(this.dir, 'puppet.conf');
  }

  get ssldir(): string {
    return join(this.dir, 'ssl');
  }

  /** `[ca]` keys pointing espm at this master (ssldir left to `--configprint`). */
  caConfig(): Record<string, string> {
    return { backend: 'puppet-cert', puppet: PUPPET_CERT_DOUBLE, config: this.confPath, ssldir: '' };
  }

  /** Replaces double.json. */
  async setKnobs(knobs: Record<string, unknown>): Promise<void> {
    await writeFile(join(this.dir, 'double.json'), JSON.stringify(knobs));
  }

  /** Runs the double directly, as an operator would. */
  async puppet(...args: string[]): Promise<{ exitCode: number; stdout: string }> {
    const r = await execa(PUPPET_CERT_DOUBLE, [...args, '--color', 'false', '--config', this.confPath], { reject: false });
    return { exitCode: r.exitCode ?? -1, stdout: r.stdout };
  }

  /** Process intervals from the invocation log: [start, end] ms per process. */
  async processIntervals(): Promise<Array<{ action: string; start: number; end: number }>> {
    const text = await readFile(join(this.dir, 'invocations.log'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { event: string; action: string; start_ms: number; end_ms: number })
      .filter((e) => e.event === 'end')
      .map((e) => ({ action: e.action, start: e.start_ms, end: e.end_ms }));
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** True when no two intervals intersect. */
export function neverOverlapping(intervals: ReadonlyArray<{ start: number; end: number }>): boolean {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  return sorted.every((iv, i) => i === 0 || sorted[i - 1]!.end <= iv.start);
}

/** openssl's verdicts on an issued certificate. */
export async function opensslChecks(
  issued: { certificate: string; private_key: string; ca_certificate: string },
  crl?: string,
): Promise<{ verify: string; keyMatches: boolean; text: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'espm-openssl-'));
  try {
    await writeFile(join(dir, 'cert.pem'), issued.certificate);
    await writeFile(join(dir, 'key.pem'), issued.private_key);
    await writeFile(join(dir, 'ca.pem'), issued.ca_certificate);
    const args = ['verify', '-CAfile', join(dir, 'ca.pem')];
    if (crl !== undefined) {
      await writeFile(join(dir, 'crl.pem'), crl);
      args.push('-crl_check', '-CRLfile', join(dir, 'crl.pem'));
    }
    const verify = await execa('openssl', [...args, join(dir, 'cert.pem')], { reject: false, all: true });
    const certKey = await execa('openssl', ['x509', '-noout', '-pubkey', '-in', join(dir, 'cert.pem')]);
    const keyKey = await execa('openssl', ['pkey', '-pubout', '-in', join(dir, 'key.pem')]);
    const text = await execa('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'cert.pem')]);
    return { verify: verify.all ?? '', keyMatches: certKey.stdout === keyKey.stdout, text: text.stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Serial numbers (upper-case hex) listed in a PEM CRL. */
export async function revokedSerials(crlPem: string): Promise<string[]> {
  const r = await execa('openssl', ['crl', '-noout', '-text'], { input: crlPem });
  return [...r.stdout.matchAll(/Serial Number: ([0-9A-Fa-f]+)/g)].map((m) => m[1]!.toUpperCase().replace(/^0+(?=.)/, ''));
}
