/**
 * `espm_setup`'s work: generate the PSK and TLS identity, render espm.ini, and write the
 * three files without ever replacing or following anything that exists.
 *
 * @packageDocumentation
 */
import { chmod, chown, lstat, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_FILE_NAME, DEFAULTS, TLS_CERT_FILE_NAME, TLS_KEY_FILE_NAME } from '../config.js';
import { autosignPlan, type AutosignPlan } from './autosign.js';
import { generateSelfSignedCertificate } from './certificate.js';
import type { BackendDetection } from './detect.js';
import { encPlan, SAMPLE_GROUPS_FILE } from './enc.js';
import { renderConfig, type IniValues } from './ini.js';
import { generatePsk } from './psk.js';

/** What the operator asked `espm_setup` for. Paths may be relative (resolved against cwd). */
export interface SetupOptions {
  /** Directory of espm.ini. */
  configDir: string;
  /** Directory of espm.crt / espm.key. */
  certDir: string;
  /** State directory written into `[state] dir`. */
  stateDir: string;
  /** `[server] host`. */
  host: string;
  /** `[server] port`. */
  port: number;
  /** Certificate CN and DNS SAN. */
  hostname: string;
  /** IP SANs. */
  ips: readonly string[];
  /** Absolute path of bin/espm, for the `external_nodes` line printed with the `enc` classifier. */
  espmBin?: string;
}

/** One file `espm_setup` creates. */
export interface PlannedFile {
  /** Absolute path. */
  path: string;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  /** Content. May be secret (key, config). */
  content: string;
}

/** Everything `espm_setup` will print and write. */
export interface SetupPlan {
  /** The new PSK. Secret. */
  psk: string;
  /** PEM of espm's self-signed certificate. */
  certificate: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprintSha256: string;
  /** Absolute paths: config, certificate, key. */
  configPath: string;
  certPath: string;
  keyPath: string;
  /** Directories created when missing (mode 0700). */
  directories: string[];
  /** Files, in the order they are written. */
  files: PlannedFile[];
  /** The text printed to stdout (PSK, certificate, fingerprint, instruction, destination). */
  announcement: string;
  /**
   * `enc` classifier: the directory of the classification file (made 0750, group
   * puppetserver's), and what the operator adds to puppet.conf and auth.conf (printed after
   * the announcement). Undefined for other classifiers.
   */
  enc?: { directory: string; instructions: string };
  /** puppetserver-api or puppetserver-ca CA: token signing's directory and policy executable (src/setup/autosign.ts). */
  autosign?: AutosignPlan;
}

/** The `enc` groups file's name and sample, from src/setup/enc.ts (where the `enc` part of a setup is planned). */
export { GROUPS_FILE_NAME, SAMPLE_GROUPS_FILE } from './enc.js';

/** Mode of directories `espm_setup` creates. */
export const SETUP_DIR_MODE = 0o700;

/**
 * Raised when a file `espm_setup` would write exists already (or is a symlink, dangling
 * or not). Nothing has been written or changed when it is thrown.
 */
export class SetupRefusedError extends Error {
  override readonly name = 'SetupRefusedError';
  /** @param existing - absolute paths that exist */
  constructor(readonly existing: readonly string[]) {
    super(
      `refusing to overwrite existing ${existing.length === 1 ? 'file' : 'files'}: ${existing.join(', ')} ` +
        `(move ${existing.length === 1 ? 'it' : 'them'} away first; nothing was written)`,
    );
  }
}

/**
 * Generates the PSK and TLS identity and renders the config (no file-system writes).
 *
 * @param options - what the operator asked for
 * @param detection - backend keys for espm.ini (see `detectBackends`)
 * @throws Error if an `ips` entry is not an IP address
 */
export function planSetup(options: SetupOptions, detection: BackendDetection): SetupPlan {
  const configDir = resolve(options.configDir);
  const certDir = resolve(options.certDir);
  const stateDir = resolve(options.stateDir);
  const configPath = join(configDir, CONFIG_FILE_NAME);
  const certPath = join(certDir, TLS_CERT_FILE_NAME);
  const keyPath = join(certDir, TLS_KEY_FILE_NAME);
  const psk = generatePsk();
  const tls = generateSelfSignedCertificate({ hostname: options.hostname, ips: options.ips });
  const enc = detection.classifier.backend === 'enc' ? encPlan(detection.classifier, configDir, stateDir, options.espmBin ?? '/usr/bin/espm', options.hostname) : undefined;
  const autosign =
    detection.ca.backend === 'puppetserver-api' || detection.ca.backend === 'puppetserver-ca'
      ? autosignPlan(join(dirname(stateDir), 'autosign'), detection.ca.config, options.espmBin ?? '/usr/bin/espm')
      : undefined;
  const values: IniValues = {
    server: { host: options.host, port: options.port, cert: certPath, key: keyPath, psk, allow: '' },
    classifier: enc?.classifier ?? detection.classifier,
    ca: detection.ca,
    ...(detection.puppetdb === undefined ? {} : { puppetdb: detection.puppetdb }),
    ...(autosign === undefined ? {} : { autosign: autosign.values }),
    state: { dir: stateDir },
    log: { level: DEFAULTS.log.level, format: DEFAULTS.log.format },
  };
  const announcement = [
    'Preshared Key:',
    psk,
    '',
    'Certificate:',
    tls.certificate.trimEnd(),
    'SHA-256 Fingerprint:',
    tls.fingerprintSha256,
    '',
    "Paste the preshared key and the certificate above into the platform's Puppet account for this",
    'master; the platform pins this certificate. Keep the key secret: it is also in the config file.',
    '',
    `Writing config to: ${configPath}`,
    '',
  ].join('\n');
  return {
    psk,
    certificate: tls.certificate,
    fingerprintSha256: tls.fingerprintSha256,
    configPath,
    certPath,
    keyPath,
    directories: [...new Set([configDir, certDir, stateDir])],
    files: [
      { path: keyPath, mode: 0o600, content: tls.privateKey },
      { path: certPath, mode: 0o644, content: tls.certificate },
      { path: configPath, mode: 0o600, content: renderConfig(values) },
      ...(enc === undefined ? [] : [{ path: enc.classifier.groups_file!, mode: 0o644, content: SAMPLE_GROUPS_FILE }]),
      ...(autosign === undefined ? [] : [{ path: autosign.policy.path, mode: 0o755, content: autosign.policy.content }]),
    ],
    announcement,
    ...(enc === undefined ? {} : { enc: { directory: dirname(enc.classifier.classification_file!), instructions: enc.instructions } }),
    ...(autosign === undefined ? {} : { autosign }),
  };
}

/** Group of puppetserver's user (Debian's and Puppet's packages): it reads the classification file. */
export const PUPPETSERVER_GROUP = 'puppet';

/** The gid of `group` in /etc/group, or undefined. */
async function groupId(group: string): Promise<number | undefined> {
  const text = await readFile('/etc/group', 'utf8').catch(() => '');
  const line = text.split('\n').find((l) => l.startsWith(`${group}:`));
  const gid = line === undefined ? NaN : Number(line.split(':')[2]);
  return Number.isInteger(gid) ? gid : undefined;
}

/**
 * Makes a directory puppetserver's user reaches: 0750, group puppetserver's (when that group
 * exists and espm_setup runs as root) — the classification file's (`espm enc` reads it) and
 * the autosign directory (the policy executable, the daemon's socket).
 */
async function makeGroupDirectory(directory: string): Promise<void> {
  await mkdir(directory, { recursive: true, mode: 0o750 });
  await chmod(directory, 0o750);
  const gid = process.getuid?.() === 0 ? await groupId(PUPPETSERVER_GROUP) : undefined;
  if (gid !== undefined) await chown(directory, 0, gid);
}

/** True when something (file, directory, symlink — even a dangling one) is at `path`. */
async function occupied(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Checks that none of the plan's files exists.
 *
 * @throws {@link SetupRefusedError} naming every file that exists
 */
export async function assertNothingExists(plan: SetupPlan): Promise<void> {
  const existing: string[] = [];
  for (const file of plan.files) {
    if (await occupied(file.path)) existing.push(file.path);
  }
  if (existing.length > 0) throw new SetupRefusedError(existing);
}

/**
 * Writes the plan: creates missing directories (0700), then each file with `O_CREAT|O_EXCL`
 * (never replacing or following an existing file or symlink), its mode set explicitly
 * (umask-independent) and fsync'd. If any write fails, the files written so far are removed.
 *
 * @throws {@link SetupRefusedError} if a file exists (checked first, and again by O_EXCL)
 * @throws the file-system error of a failed write, after cleaning up
 */
export async function writeSetup(plan: SetupPlan): Promise<void> {
  await assertNothingExists(plan);
  for (const dir of plan.directories) await mkdir(dir, { recursive: true, mode: SETUP_DIR_MODE });
  if (plan.enc !== undefined) await makeGroupDirectory(plan.enc.directory);
  if (plan.autosign !== undefined) await makeGroupDirectory(plan.autosign.directory);
  const written: string[] = [];
  try {
    for (const file of plan.files) {
      await mkdir(dirname(file.path), { recursive: true, mode: SETUP_DIR_MODE });
      let handle;
      try {
        handle = await open(file.path, 'wx', file.mode);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SetupRefusedError([file.path]);
        throw err;
      }
      written.push(file.path);
      try {
        await handle.chmod(file.mode);
        await handle.writeFile(file.content, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  } catch (err) {
    await Promise.all(written.map((path) => unlink(path).catch(() => undefined)));
    throw err;
  }
}
