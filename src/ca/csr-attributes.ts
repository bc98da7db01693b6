/**
 * A per-call `csr_attributes` for `puppetserver ca generate` (puppetserver-ca adapter): ca-cli
 * 2.4.0 has no flag for it and reads the `csr_attributes` setting from the puppet.conf given
 * by `--config` (sections merged agent < main < master < server; `$confdir` is NOT taken from
 * that file's directory), so espm writes, per call, a private copy of the master's puppet.conf
 * with `[server] csr_attributes = <its own file>` appended, and that file's
 * `extension_requests`. Never the master's own puppet.conf: `puppetserver ca setup` would read
 * it too. Source of truth: docs/reference/modern-puppet.md ("`puppetserver ca generate` with
 * extensions") and puppetserver-ca-cli 2.4.0 `lib/puppetserver/ca/config/puppet.rb`,
 * `lib/puppetserver/ca/host.rb` (values become DER UTF8String, as espm's own encoding).
 *
 * @packageDocumentation
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { TrustedExtension } from './trusted-extensions.js';

/**
 * The `csr_attributes.yaml` text asking for `extensions` (`extension_requests`, keyed by OID).
 *
 * @param extensions - resolved trusted extensions
 */
export function csrAttributesYaml(extensions: readonly TrustedExtension[]): string {
  return stringify({ extension_requests: Object.fromEntries(extensions.map((e) => [e.oid, e.value])) });
}

/**
 * Runs `task` with the path of a puppet.conf that is the master's plus a per-call
 * `csr_attributes` asking for `extensions`; both files live in a fresh 0700 temporary
 * directory, removed afterwards whatever `task` did. With no extensions, `task` gets
 * `configPath` itself and nothing is written.
 *
 * @param configPath - the master's puppet.conf (`[ca] config`); a missing file reads as empty
 * @param extensions - resolved trusted extensions
 * @param task - gets the puppet.conf path to pass as `--config`
 * @throws what reading or writing the files throws (nothing was run), or what `task` throws
 */
export async function withCsrAttributes<T>(
  configPath: string,
  extensions: readonly TrustedExtension[],
  task: (configPath: string) => Promise<T>,
): Promise<T> {
  if (extensions.length === 0) return task(configPath);
  const master = await readFile(configPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const dir = await mkdtemp(join(tmpdir(), 'espm-csr-attributes-'));
  try {
    const attributes = join(dir, 'csr_attributes.yaml');
    const conf = join(dir, 'puppet.conf');
    await writeFile(attributes, csrAttributesYaml(extensions), { mode: 0o600 });
    await writeFile(conf, `${master.endsWith('\n') || master === '' ? master : `${master}\n`}[server]\ncsr_attributes = ${attributes}\n`, { mode: 0o600 });
    return await task(conf);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
