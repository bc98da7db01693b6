/**
 * The sandbox CA (`[ca] backend = sandbox`): a certificate authority in pure TypeScript
 * (node-forge, with Node's crypto generating the RSA keys) for platform engineers who
 * integrate against espm without a Puppet master. Not for production (espm warns at
 * start-up). No process is ever spawned.
 *
 * State, under `<state_dir>/sandbox/ca/` (directory 0700; every file rewritten atomically
 * with write-file-atomic: temp file, fsync, rename):
 *
 * | file | what |
 * |---|---|
 * | `ca_key.pem` | the CA's private key (PKCS#1 PEM, 0600); made with the CA on first use |
 * | `ca_crt.pem` | the self-signed CA certificate (CN `Puppet CA: espm sandbox`, 15 years, serial 1) |
 * | `serial` | the next serial number, upper-case hex (Puppet's format, e.g. `0003`); advanced before a certificate is signed, so a serial is never reused |
 * | `inventory.txt` | one line per certificate ever signed, Puppet's format: `0x0002 <not before> <not after> /CN=<certname>` |
 * | `signed/NAME.pem` | the certificate the CA holds as signed for NAME (removed by a revocation) |
 * | `revoked.json` | every revocation: `{"format":1,"revoked":[{"serial","certname","fingerprint_sha256","revoked_at"}]}` |
 *
 * `revoked.json` is the revocation record: there is no CRL, because node-forge cannot build
 * one. Node private keys are never stored: `issue` returns the key once.
 *
 * Node certificates: CN = certname; subject alt names DNS:certname then the requested DNS
 * alt names; key usage digitalSignature + keyEncipherment, extended key usage serverAuth +
 * clientAuth; the order's trusted extensions (src/ca/extension-encoding.ts); valid from one day back (clock skew, as Puppet does) to five years ahead;
 * SHA-256 signatures; PEM with LF line endings.
 *
 * @packageDocumentation
 */
import { KeyedMutex } from '../keyed-mutex.js';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type ForgeTypes from 'node-forge';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import type { Logger } from '../logger.js';
import { isCertname } from '../names.js';
import type { Receipt } from '../ownership/entries.js';
import { CaError, CertificateExistsError, type CertificateAuthority, type CertificateOrder, type IssuedCertificate } from './authority.js';
import { caReceipt, certificateInfo } from './certificate-info.js';
import { forgeExtensions } from './extension-encoding.js';

/** Directory of the sandbox CA inside `[state] dir`. */
export const SANDBOX_CA_DIR = join('sandbox', 'ca');
/** Default RSA modulus size of the CA's and the nodes' keys, bits. */
export const SANDBOX_KEY_BITS = 2048;
/** Validity of a node certificate, years. */
export const SANDBOX_CERT_YEARS = 5;
/** Validity of the CA certificate, years (longer than any certificate it signs). */
export const SANDBOX_CA_YEARS = 15;
/** How far back a certificate's validity starts, ms (one day, for clock skew; as Puppet). */
export const SANDBOX_BACKDATE_MS = 24 * 60 * 60 * 1000;
/** Subject CN of the sandbox CA's certificate. */
export const SANDBOX_CA_NAME = 'Puppet CA: espm sandbox';
/** Version of `revoked.json`. */
export const SANDBOX_REVOKED_FORMAT = 1;

/** One revocation of `revoked.json`. */
export interface SandboxRevocation {
  /** Serial of the revoked certificate, upper-case hex as Node's X509Certificate prints it (e.g. `02`). */
  serial: string;
  /** The certname (CN) of the revoked certificate. */
  certname: string;
  /** SHA-256 of the revoked certificate (colon-separated upper-case hex). */
  fingerprint_sha256: string;
  /** When it was revoked, ISO-8601 (UTC). */
  revoked_at: string;
}

const revocationSchema = z.object({ serial: z.string(), certname: z.string(), fingerprint_sha256: z.string(), revoked_at: z.string() });
const revokedSchema = z.object({ format: z.literal(SANDBOX_REVOKED_FORMAT), revoked: z.array(revocationSchema) });

/** Paths of the sandbox CA's files. */
export interface SandboxCaFiles {
  /** `<state_dir>/sandbox/ca` */
  dir: string;
  /** `ca_key.pem`: the CA's private key. Secret. */
  caKey: string;
  /** `ca_crt.pem`: the CA certificate. */
  caCertificate: string;
  /** `serial`: the next serial, hex. */
  serial: string;
  /** `inventory.txt`: every certificate signed. */
  inventory: string;
  /** `revoked.json`: every revocation. */
  revoked: string;
  /** `signed/`: the certificates the CA holds as signed. */
  signedDir: string;
  /** `signed/NAME.pem` of a certname. */
  signed(certname: string): string;
}

/**
 * The files of the sandbox CA of a state directory.
 *
 * @param stateDir - `[state] dir`
 */
export function sandboxCaFiles(stateDir: string): SandboxCaFiles {
  const dir = join(stateDir, SANDBOX_CA_DIR);
  const signedDir = join(dir, 'signed');
  return {
    dir,
    caKey: join(dir, 'ca_key.pem'),
    caCertificate: join(dir, 'ca_crt.pem'),
    serial: join(dir, 'serial'),
    inventory: join(dir, 'inventory.txt'),
    revoked: join(dir, 'revoked.json'),
    signedDir,
    signed: (certname) => join(signedDir, `${certname}.pem`),
  };
}

/**
 * A serial number as node-forge wants it: hex of the minimal positive DER INTEGER (even
 * length; a leading `00` when the top bit would be set).
 *
 * @param serial - a positive integer
 */
export function serialHex(serial: bigint): string {
  let hex = serial.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (/^[89a-f]/.test(hex)) hex = `00${hex}`;
  return hex;
}

/** node-forge writes PEM with CRLF line endings; files and answers use LF. */
function lf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

/** Puppet's inventory time format: `2024-05-01T10:00:00UTC`. */
function inventoryTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}UTC`;
}

/** An RSA key pair, generated by Node's crypto off the event loop (node-forge's native path). */
function generateKeyPair(bits: number): Promise<ForgeTypes.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits, e: 0x10001 }, (err, keys) => (err ? reject(err) : resolve(keys)));
  });
}

async function readIfExists(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

/**
 * node-forge, loaded by the first CA operation ({@link loadForge}), so that a daemon whose
 * sandbox CA is never asked anything does not hold it (≈ 10 MB RSS). Every use of it is
 * inside an operation, after the load.
 */
let forge: typeof ForgeTypes;

/** Loads node-forge once (see {@link forge}). */
async function loadForge(): Promise<void> {
  forge ??= (await import('node-forge')).default;
}

/** One mutex per CA directory, shared by every instance in this process. */
const caLocks = new KeyedMutex();

/** The CA's own key and certificate, loaded. */
interface LoadedCa {
  key: ForgeTypes.pki.rsa.PrivateKey;
  certificate: ForgeTypes.pki.Certificate;
  pem: string;
}

/** Options of {@link SandboxCertificateAuthority}. */
export interface SandboxCaOptions {
  /** RSA modulus size of the CA's key (when it is made) and of node keys, bits; default {@link SANDBOX_KEY_BITS}. */
  keyBits?: number;
  /** Outcomes at debug level (names and serials; never keys). */
  logger?: Logger;
  /** Clock, ms since the epoch; default `Date.now`. */
  now?: () => number;
}

/** The sandbox CA: node-forge, files under `<state_dir>/sandbox/ca/`. */
export class SandboxCertificateAuthority implements CertificateAuthority {
  /** `[ca] backend = sandbox`. */
  readonly backend = 'sandbox';
  /** Its own CA signs what it is given. */
  readonly carriesExtensions = true;
  /** Paths of the CA's files. */
  readonly files: SandboxCaFiles;
  private readonly keyBits: number;

  /**
   * Nothing is read or written until the first call; the CA is made on first use.
   *
   * @param stateDir - `[state] dir` (absolute)
   * @param options - key size, logger, clock
   * @throws Error when `options.keyBits` is not an integer between 1024 and 16384
   */
  constructor(
    readonly stateDir: string,
    private readonly options: SandboxCaOptions = {},
  ) {
    this.files = sandboxCaFiles(stateDir);
    this.keyBits = options.keyBits ?? SANDBOX_KEY_BITS;
    if (!Number.isInteger(this.keyBits) || this.keyBits < 1024 || this.keyBits > 16384) {
      throw new Error(`sandbox CA: keyBits must be an integer between 1024 and 16384, not ${this.keyBits}`);
    }
  }

  private now(): Date {
    return new Date((this.options.now ?? Date.now)());
  }

  /** Runs `task` with this CA directory's lock held; other failures become {@link CaError} `failed`. */
  private exclusive<T>(what: string, task: () => Promise<T>): Promise<T> {
    return caLocks.run(this.files.dir, async () => {
      try {
        await loadForge();
        return await task();
      } catch (err) {
        if (err instanceof CaError || err instanceof CertificateExistsError) throw err;
        throw new CaError('failed', `sandbox CA: ${what}: ${(err as Error).message}`);
      }
    });
  }

  private write(path: string, content: string, mode = 0o600): Promise<void> {
    return writeFileAtomic(path, content, { mode, fsync: true });
  }

  /** Refuses a name that is not a certname (it becomes a file name). */
  private checkCertname(certname: string): void {
    if (!isCertname(certname)) throw new CaError('failed', `sandbox CA: not a certname: ${JSON.stringify(certname)}`);
  }

  /** Loads the CA, making it first (key, self-signed certificate, serial file) when absent. Lock held. */
  private async loadCa(): Promise<LoadedCa> {
    const keyPem = await readIfExists(this.files.caKey);
    const certPem = await readIfExists(this.files.caCertificate);
    if (keyPem !== undefined && certPem !== undefined) {
      return { key: forge.pki.privateKeyFromPem(keyPem) as ForgeTypes.pki.rsa.PrivateKey, certificate: forge.pki.certificateFromPem(certPem), pem: certPem };
    }
    if (keyPem !== undefined || certPem !== undefined) {
      throw new CaError('failed', `sandbox CA: ${this.files.dir} holds only one of ca_key.pem and ca_crt.pem; remove the directory to start a new CA`);
    }
    await mkdir(this.files.signedDir, { recursive: true, mode: 0o700 });
    const keys = await generateKeyPair(this.keyBits);
    const cert = forge.pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serialHex(1n);
    const now = this.now();
    cert.validity.notBefore = new Date(now.getTime() - SANDBOX_BACKDATE_MS);
    const notAfter = new Date(now);
    notAfter.setUTCFullYear(notAfter.getUTCFullYear() + SANDBOX_CA_YEARS);
    cert.validity.notAfter = notAfter;
    const subject = [{ name: 'commonName', value: SANDBOX_CA_NAME }];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    cert.sign(keys.privateKey, forge.md.sha256.create());
    const pem = lf(forge.pki.certificateToPem(cert));
    await this.write(this.files.caKey, lf(forge.pki.privateKeyToPem(keys.privateKey)), 0o600);
    await this.write(this.files.serial, '0002\n', 0o644);
    await this.write(this.files.caCertificate, pem, 0o644);
    this.options.logger?.info({ dir: this.files.dir }, 'sandbox CA created');
    return { key: keys.privateKey, certificate: cert, pem };
  }

  /** Reads the next serial and records its successor (durably, before it is used). Lock held. */
  private async takeSerial(): Promise<bigint> {
    const text = (await readIfExists(this.files.serial))?.trim() ?? '2';
    if (!/^[0-9A-Fa-f]+$/.test(text)) throw new CaError('failed', `sandbox CA: ${this.files.serial} is not a hex serial: ${JSON.stringify(text)}`);
    const serial = BigInt(`0x${text}`);
    await this.write(this.files.serial, `${(serial + 1n).toString(16).toUpperCase().padStart(4, '0')}\n`, 0o644);
    return serial;
  }

  private async readRevoked(): Promise<SandboxRevocation[]> {
    const text = await readIfExists(this.files.revoked);
    if (text === undefined) return [];
    try {
      return revokedSchema.parse(JSON.parse(text)).revoked;
    } catch (err) {
      throw new CaError('failed', `sandbox CA: ${this.files.revoked} is not a revocation record (${(err as Error).message.split('\n')[0]})`);
    }
  }

  /**
   * The CA certificate (PEM), making the CA first when it does not exist yet.
   *
   * @throws {@link CaError} `failed` when the CA's files are unusable
   */
  caCertificate(): Promise<string> {
    return this.exclusive('loading the CA', async () => (await this.loadCa()).pem);
  }

  /**
   * Generates a key pair (`keyBits`) and a certificate for `certname` signed by the CA (made
   * first when absent); keeps the certificate as `signed/NAME.pem` and a line in
   * `inventory.txt`; never stores the private key.
   *
   * @param order - certname (the CN), extra DNS subject alt names after DNS:certname
   *   (duplicates once), trusted extensions
   * @returns certificate, private key (PKCS#1 PEM) and CA certificate, LF line endings; the receipt
   * @throws {@link CertificateExistsError} when `signed/NAME.pem` exists
   * @throws {@link CaError} `failed` when `certname` is not a certname or a file cannot be
   *   read or written
   */
  async issue({ certname, dnsAltNames, extensions }: CertificateOrder): Promise<IssuedCertificate> {
    this.checkCertname(certname);
    return this.exclusive(`issuing a certificate for ${certname}`, async () => {
      const ca = await this.loadCa();
      if ((await readIfExists(this.files.signed(certname))) !== undefined) {
        throw new CertificateExistsError(`A Certificate already exists for ${certname}`);
      }
      const serial = await this.takeSerial();
      const keys = await generateKeyPair(this.keyBits);
      const cert = forge.pki.createCertificate();
      cert.publicKey = keys.publicKey;
      cert.serialNumber = serialHex(serial);
      const now = this.now();
      cert.validity.notBefore = new Date(now.getTime() - SANDBOX_BACKDATE_MS);
      const notAfter = new Date(now);
      notAfter.setUTCFullYear(notAfter.getUTCFullYear() + SANDBOX_CERT_YEARS);
      cert.validity.notAfter = notAfter;
      cert.setSubject([{ name: 'commonName', value: certname }]);
      cert.setIssuer(ca.certificate.subject.attributes);
      const altNames = [...new Set([certname, ...dnsAltNames])];
      cert.setExtensions([
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        { name: 'subjectAltName', altNames: altNames.map((value) => ({ type: 2, value })) },
        { name: 'subjectKeyIdentifier' },
        { name: 'authorityKeyIdentifier', keyIdentifier: ca.certificate.generateSubjectKeyIdentifier().getBytes() },
        ...forgeExtensions(forge, extensions),
      ]);
      cert.sign(ca.key, forge.md.sha256.create());
      const certificate = lf(forge.pki.certificateToPem(cert));
      await this.write(this.files.signed(certname), certificate, 0o644);
      const inventory = (await readIfExists(this.files.inventory)) ?? '';
      const line = `0x${serial.toString(16).toUpperCase().padStart(4, '0')} ${inventoryTime(cert.validity.notBefore)} ${inventoryTime(notAfter)} /CN=${certname}\n`;
      await this.write(this.files.inventory, inventory + line, 0o644);
      this.options.logger?.debug({ certname, serial: serial.toString(16).toUpperCase() }, 'sandbox CA: certificate signed');
      return { certname, certificate, privateKey: lf(forge.pki.privateKeyToPem(keys.privateKey)), caCertificate: ca.pem, receipt: caReceipt(certificate) };
    });
  }

  /**
   * Revokes `certname`'s certificate: records it in `revoked.json` (serial, fingerprint,
   * time), then removes `signed/NAME.pem`.
   *
   * @param certname - the certname
   * @param _receipt - not needed: the service checked the fingerprint before
   * @returns `revoked`, or `absent` when the CA holds no certificate of that name
   * @throws {@link CaError} `failed` when `certname` is not a certname or a file cannot be
   *   read or written
   */
  async revoke(certname: string, _receipt: Receipt | null = null): Promise<'revoked' | 'absent'> {
    this.checkCertname(certname);
    return this.exclusive(`revoking the certificate of ${certname}`, async () => {
      const pem = await readIfExists(this.files.signed(certname));
      if (pem === undefined) return 'absent';
      const info = certificateInfo(pem);
      const revoked = await this.readRevoked();
      revoked.push({ serial: info.serial, certname, fingerprint_sha256: info.fingerprint_sha256, revoked_at: this.now().toISOString() });
      await this.write(this.files.revoked, `${JSON.stringify({ format: SANDBOX_REVOKED_FORMAT, revoked }, null, 2)}\n`, 0o644);
      await rm(this.files.signed(certname), { force: true });
      this.options.logger?.debug({ certname, serial: info.serial }, 'sandbox CA: certificate revoked');
      return 'revoked';
    });
  }

  /**
   * SHA-256 fingerprint of `signed/NAME.pem`, or undefined when there is none.
   *
   * @throws {@link CaError} `failed` when `certname` is not a certname or the file is unreadable
   */
  async currentFingerprint(certname: string): Promise<string | undefined> {
    this.checkCertname(certname);
    return this.exclusive(`reading the certificate of ${certname}`, async () => {
      const pem = await readIfExists(this.files.signed(certname));
      return pem === undefined ? undefined : certificateInfo(pem).fingerprint_sha256;
    });
  }

  /**
   * Every revocation recorded, oldest first.
   *
   * @throws {@link CaError} `failed` when `revoked.json` is unreadable
   */
  revocations(): Promise<SandboxRevocation[]> {
    return this.exclusive('reading the revocations', () => this.readRevoked());
  }
}
