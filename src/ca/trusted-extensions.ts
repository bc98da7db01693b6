/**
 * Trusted certificate extensions the platform may ask for (`"extensions"` of
 * `POST /v1/certificates`): Puppet's registered short names and private-arc OIDs, never the
 * authorization arc. One place for what a valid extension is; the CA adapters only carry the
 * resolved list into the certificate (docs/design.md, "Certificates: trusted extensions").
 *
 * Source of truth: Puppet's `lib/puppet/ssl/oids.rb` (puppet-agent 7, Debian 12:
 * `/usr/lib/ruby/vendor_ruby/puppet/ssl/oids.rb`) and Puppet's "CSR attributes and certificate
 * extensions" page (docs/reference/modern-puppet.md).
 *
 * @packageDocumentation
 */
import { z } from 'zod';

/** Puppet's certificate extension arc `ppCertExt`. */
export const PUPPET_CERT_EXT_ARC = '1.3.6.1.4.1.34380.1';
/** `ppRegCertExt`: registered extensions, with short names ({@link REGISTERED_EXTENSIONS}). */
export const REGISTERED_ARC = `${PUPPET_CERT_EXT_ARC}.1`;
/** `ppPrivCertExt`: the site's own extensions, dotted OIDs below it. */
export const PRIVATE_ARC = `${PUPPET_CERT_EXT_ARC}.2`;
/** `ppAuthCertExt`: authorization extensions (grant API access on the master): never set by espm. */
export const AUTHORIZATION_ARC = `${PUPPET_CERT_EXT_ARC}.3`;

/** Short name → OID of Puppet's registered extensions (`pp_uuid` … `pp_owner`), as in oids.rb. */
export const REGISTERED_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(
    [
      'pp_uuid', 'pp_instance_id', 'pp_image_name', 'pp_preshared_key', 'pp_cost_center', 'pp_product',
      'pp_project', 'pp_application', 'pp_service', 'pp_employee', 'pp_created_by', 'pp_environment',
      'pp_role', 'pp_software_version', 'pp_department', 'pp_cluster', 'pp_provisioner', 'pp_region',
      'pp_datacenter', 'pp_zone', 'pp_network', 'pp_securitypolicy', 'pp_cloudplatform', 'pp_apptier',
      'pp_hostname', 'pp_owner',
    ].map((name, i) => [name, `${REGISTERED_ARC}.${i + 1}`]),
  ),
);

/** Short names of the authorization arc (oids.rb; `pp_cli_auth` is …34380.1.3.39). */
export const AUTHORIZATION_SHORT_NAMES: readonly string[] = ['pp_authorization', 'pp_auth_role', 'pp_cli_auth'];

/** Most extensions in one request. */
export const EXTENSIONS_MAX = 32;
/** Longest extension value, characters. */
export const EXTENSION_VALUE_MAX = 255;

/** A dotted OID: arcs of digits without leading zeros. */
const DOTTED_OID = /^(?:0|[1-9]\d{0,9})(?:\.(?:0|[1-9]\d{0,9})){1,30}$/;
/** Printable: no control characters (C0, DEL, C1); any other Unicode is kept (UTF8String). */
const PRINTABLE = /^[^\p{Cc}]+$/u;

/** One extension to put in a certificate: its OID, Puppet's short name when it has one, and value. */
export interface TrustedExtension {
  /** Dotted OID, e.g. `1.3.6.1.4.1.34380.1.1.13`. */
  readonly oid: string;
  /** Puppet's short name (`pp_role`), or undefined for a private-arc OID. */
  readonly shortName: string | undefined;
  /** The value, a printable string of 1–255 characters (UTF8String in the certificate). */
  readonly value: string;
}

/**
 * Why `key` cannot be a trusted extension espm puts in a certificate, or undefined when it can.
 *
 * @param key - a member name of `"extensions"`: a short name or a dotted OID
 */
export function extensionKeyProblem(key: string): string | undefined {
  if (Object.hasOwn(REGISTERED_EXTENSIONS, key)) return undefined;
  if (AUTHORIZATION_SHORT_NAMES.includes(key) || key === AUTHORIZATION_ARC || key.startsWith(`${AUTHORIZATION_ARC}.`)) {
    return `is in Puppet's authorization arc ${AUTHORIZATION_ARC}: espm never grants authorization extensions`;
  }
  if (DOTTED_OID.test(key)) {
    if (key.startsWith(`${PRIVATE_ARC}.`)) return undefined;
    const name = Object.entries(REGISTERED_EXTENSIONS).find(([, oid]) => oid === key)?.[0];
    if (name !== undefined) return undefined;
    return `must be below Puppet's private arc ${PRIVATE_ARC} or a registered extension`;
  }
  return `must be one of Puppet's registered short names (pp_role, pp_environment, …) or a dotted OID below ${PRIVATE_ARC}`;
}

/** zod schema of `"extensions"`: `{ <short name or private OID>: <printable string ≤ 255> }`, ≤ 32 members. */
export const trustedExtensionsSchema = z
  .record(
    z.string().superRefine((key, ctx) => {
      const problem = extensionKeyProblem(key);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(key)} ${problem}` });
    }),
    z
      .string()
      .min(1, 'must not be empty')
      .max(EXTENSION_VALUE_MAX, `must be at most ${EXTENSION_VALUE_MAX} characters`)
      .regex(PRINTABLE, 'must be printable (no control characters)'),
  )
  .refine((record) => Object.keys(record).length <= EXTENSIONS_MAX, `at most ${EXTENSIONS_MAX} extensions`)
  .refine(
    (record) => new Set(Object.keys(record).map(oidOf)).size === Object.keys(record).length,
    'must not name one extension twice (short name and OID)',
  );

/**
 * The OID of a validated extension key.
 *
 * @param key - a short name of {@link REGISTERED_EXTENSIONS} or a dotted OID
 */
export function oidOf(key: string): string {
  return REGISTERED_EXTENSIONS[key] ?? key;
}

/**
 * The extensions of a validated request as the CA adapters take them, sorted by OID (so the
 * same request gives the same certificate and the same `csr_attributes`).
 *
 * @param extensions - output of {@link trustedExtensionsSchema}
 */
export function resolveExtensions(extensions: Readonly<Record<string, string>>): TrustedExtension[] {
  const byOid = new Map(Object.entries(REGISTERED_EXTENSIONS).map(([name, oid]) => [oid, name]));
  return Object.entries(extensions)
    .map(([key, value]) => {
      const oid = oidOf(key);
      return { oid, shortName: byOid.get(oid), value };
    })
    .sort((a, b) => compareOids(a.oid, b.oid));
}

/**
 * Orders dotted OIDs arc by arc, numerically.
 *
 * @returns negative, 0 or positive as `a` sorts before, with or after `b`
 */
export function compareOids(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}
