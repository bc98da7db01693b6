/**
 * CSRs made by the real `openssl req` for the token-signing tests: any subject CN,
 * challengePassword, DNS (or IP) alt names and extension requests, RSA or EC keys — the CSRs
 * a Puppet agent or a hostile client could send.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

/** What the CSR asks for. */
export interface CsrSpec {
  certname: string;
  challenge?: string;
  /** subjectAltName entries as openssl writes them: `DNS:x`, `IP:1.2.3.4`. */
  altNames?: string[];
  /** dotted OID → value (a UTF8String, as Puppet writes extension_requests). */
  extensions?: Record<string, string>;
  /** Other extension lines for the [ext] section, e.g. `keyUsage = digitalSignature`. */
  extraExtensions?: string[];
  /** `rsa` (2048 bits, default) or `ec` (P-256). */
  key?: 'rsa' | 'ec';
}

/** A CSR PEM and the private key it was made with (PEM). */
export interface MadeCsr {
  csr: string;
  key: string;
}

/**
 * Makes a CSR with `openssl req -new`.
 *
 * @throws when openssl fails
 */
export async function makeCsr(spec: CsrSpec): Promise<MadeCsr> {
  const dir = await mkdtemp(join(tmpdir(), 'espm-csr-'));
  try {
    const ext = [
      ...(spec.altNames === undefined || spec.altNames.length === 0 ? [] : [`subjectAltName = ${spec.altNames.join(',')}`]),
      ...Object.entries(spec.extensions ?? {}).map(([oid, value]) => `${oid} = ASN1:FORMAT:UTF8,UTF8String:${value}`),
      ...(spec.extraExtensions ?? []),
    ];
    const config = [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      ...(spec.challenge === undefined ? [] : ['attributes = attrs']),
      ...(ext.length === 0 ? [] : ['req_extensions = ext']),
      '[dn]',
      `CN = ${spec.certname}`,
      ...(spec.challenge === undefined ? [] : ['[attrs]', `challengePassword = ${spec.challenge}`]),
      ...(ext.length === 0 ? [] : ['[ext]', ...ext]),
      '',
    ].join('\n');
    await writeFile(join(dir, 'req.cnf'), config);
    const keyArgs = spec.key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
    await execa('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'csr.pem'), '-config', join(dir, 'req.cnf')], { timeout: 30_000 });
    return { csr: await readFile(join(dir, 'csr.pem'), 'utf8'), key: await readFile(join(dir, 'key.pem'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
