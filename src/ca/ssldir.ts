/**
 * What both CLI CA adapters share: running the tool (errors mapped to {@link CaError}),
 * colour stripping, and the files a generate leaves in the master's ssldir
 * (`certs/NAME.pem`, `private_keys/NAME.pem`, `public_keys/NAME.pem`, `certs/ca.pem`).
 * Source: docs/reference/puppet-ca.md (ssldir layout of Puppet 2.7–8).
 *
 * @packageDocumentation
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { onceUntilFailure, runBackendCommand } from '../backend.js';
import type { CaConfig } from '../config.js';
import type { CommandRunner, CommandSpec } from '../exec/command.js';
import { CaError, type IssuedCertificate } from './authority.js';
import { caReceipt } from './certificate-info.js';

/** ANSI SGR sequences (`\e[0;36m`), which Puppet 2.7 prints unless `--color false`. */
const ANSI_SGR = /\u001b\[[0-9;]*m/g;

/** Removes ANSI colour from a tool's output. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI_SGR, '');
}

/** A CA tool's output: exit status, colour-free stdout and stderr, and both joined, trimmed. */
export interface CaOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout then stderr, colour removed, trimmed: for messages and problem details. */
  text: string;
}

/**
 * Runs a CA command.
 *
 * @param runner - src/exec runner
 * @param spec - the command
 * @param what - what it does, for messages (`puppet cert generate web01`)
 * @throws {@link CaError} `timeout` or `unavailable`
 */
export async function runCaCommand(runner: CommandRunner, spec: CommandSpec, what: string): Promise<CaOutput> {
  const result = await runBackendCommand(
    runner,
    spec,
    what,
    (failure, message, output) => new CaError(failure, message, stripAnsi(output ?? '')),
  );
  const stdout = stripAnsi(result.stdout);
  const stderr = stripAnsi(result.stderr);
  return { exitCode: result.exitCode, stdout, stderr, text: `${stdout}\n${stderr}`.trim() };
}

/** Paths of a node's files in an ssldir. */
export function nodeFiles(ssldir: string, certname: string): { certificate: string; privateKey: string; publicKey: string; caCertificate: string } {
  return {
    certificate: join(ssldir, 'certs', `${certname}.pem`),
    privateKey: join(ssldir, 'private_keys', `${certname}.pem`),
    publicKey: join(ssldir, 'public_keys', `${certname}.pem`),
    caCertificate: join(ssldir, 'certs', 'ca.pem'),
  };
}

/**
 * Reads what a generate left in the ssldir (and makes the receipt from the certificate),
 * then removes the node's private key unless `keepPrivateKey` (the master never needs it).
 *
 * @throws {@link CaError} `failed` when a file is missing or unreadable, or the certificate
 *   is not one
 */
export async function collectIssued(ssldir: string, certname: string, keepPrivateKey: boolean): Promise<IssuedCertificate> {
  const files = nodeFiles(ssldir, certname);
  const read = async (path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new CaError('failed', `the CA reported success but ${path} cannot be read: ${(err as Error).message}`);
    }
  };
  const certificate = await read(files.certificate);
  let receipt;
  try {
    receipt = caReceipt(certificate);
  } catch (err) {
    throw new CaError('failed', `the CA reported success but ${files.certificate} is not a certificate: ${(err as Error).message}`);
  }
  const issued = {
    certname,
    certificate,
    privateKey: await read(files.privateKey),
    caCertificate: await read(files.caCertificate),
    receipt,
  };
  if (!keepPrivateKey) await rm(files.privateKey, { force: true });
  return issued;
}

/**
 * Parses `key = value` lines of `puppet config print a b` (or a single bare value).
 *
 * @param stdout - puppet's output
 * @param key - the setting wanted
 */
export function parseConfigPrint(stdout: string, key: string): string | undefined {
  const lines = stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  for (const line of lines) {
    const match = /^(\w+) = (.*)$/.exec(line);
    if (match?.[1] === key) return match[2];
  }
  return lines.length === 1 && lines[0]!.startsWith('/') ? lines[0] : undefined;
}

/**
 * The master's ssldir: `[ca] ssldir` when set, else what puppet prints for `args` (asked
 * once; a failed look-up is retried on the next call).
 *
 * @param config - `[ca]`: ssldir, puppet, config, timeout
 * @param runner - src/exec runner
 * @param args - puppet's arguments printing the ssldir (without `--config`), e.g.
 *   `['master', '--configprint', 'ssldir']` (2.7–5.x) or
 *   `['config', 'print', 'ssldir', '--section', 'server']` (6+)
 * @returns a function giving the ssldir
 * @throws {@link CaError} (from the returned function) when puppet cannot tell
 */
export function ssldirLookup(config: Pick<CaConfig<'puppet-cert' | 'puppetserver-ca'>, 'ssldir' | 'puppet' | 'config' | 'timeoutMs'>, runner: CommandRunner, args: readonly string[]): () => Promise<string> {
  const configured = config.ssldir;
  if (configured !== undefined) return () => Promise.resolve(configured);
  const what = `puppet ${args.join(' ')}`;
  return onceUntilFailure(async () => {
    const out = await runCaCommand(runner, { file: config.puppet, args: [...args, '--config', config.config], timeoutMs: config.timeoutMs }, what);
    const ssldir = parseConfigPrint(out.stdout, 'ssldir');
    if (out.exitCode !== 0 || ssldir === undefined) {
      throw new CaError('failed', `cannot find the master's ssldir with ${what}; set [ca] ssldir`, out.text);
    }
    return ssldir;
  });
}
