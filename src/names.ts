/**
 * What a certname, node group, class or parameter may be (docs/design.md, "Names"). Everything a
 * caller sends is checked here before any process runs; anything else is a 400.
 *
 * @packageDocumentation
 */
import { z } from 'zod';
import { trustedExtensionsSchema } from './ca/trusted-extensions.js';

/** Longest certname, characters (a DNS name). */
export const CERTNAME_MAX = 253;
/** Longest group, class or parameter name, characters (the console's VARCHAR(255)). */
export const NAME_MAX = 255;
/** Longest parameter value, characters. */
export const PARAMETER_VALUE_MAX = 4096;
/** Most groups, classes, parameters or DNS alt names in one request. */
export const LIST_MAX = 100;

/**
 * A certname (also the console node's name): lower-case letters, digits, `.`, `_`, `-`;
 * starting and ending with a letter or digit; no `..`; 1–253 characters.
 */
export const CERTNAME_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,251}[a-z0-9])?$/;

/**
 * A Puppet class name. Source: puppet-dashboard `app/models/node_class.rb` validation and
 * Puppet's own class name rule: `/\A([a-z0-9][-\w]*)(::[a-z0-9][-\w]*)*\Z/`.
 */
export const CLASS_PATTERN = /^(?:[a-z0-9][-\w]*)(?:::[a-z0-9][-\w]*)*$/;

/** A parameter (top-scope variable) name. */
export const PARAMETER_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True for a valid certname. */
export function isCertname(value: string): boolean {
  return CERTNAME_PATTERN.test(value) && !value.includes('..');
}

/** zod schema of a certname (and node name). */
export const certnameSchema = z
  .string()
  .max(CERTNAME_MAX, `must be at most ${CERTNAME_MAX} characters`)
  .refine(isCertname, {
    message:
      'must be a certname: lower-case letters, digits, ".", "_" and "-", starting and ending with a letter or digit, no ".."',
  });

/**
 * zod schema of a node group name: printable (no control characters), no comma (the console
 * splits `groups=` on commas), no leading or trailing space (the console's MySQL look-ups
 * ignore trailing spaces), 1–255 characters. Spaces inside are allowed (`no mcollective`).
 */
export const groupNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(NAME_MAX, `must be at most ${NAME_MAX} characters`)
  .refine((v) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(v), 'must be printable (no control characters)')
  .refine((v) => !v.includes(','), 'must not contain a comma (the console cannot carry one)')
  .refine((v) => v.trim() === v, 'must not start or end with a space');

/** zod schema of a class name ({@link CLASS_PATTERN}). */
export const classNameSchema = z
  .string()
  .max(NAME_MAX, `must be at most ${NAME_MAX} characters`)
  .regex(CLASS_PATTERN, 'must be a Puppet class name such as "ntp" or "apache::vhost"');

/** zod schema of a parameter name ({@link PARAMETER_KEY_PATTERN}). */
export const parameterKeySchema = z
  .string()
  .max(NAME_MAX, `must be at most ${NAME_MAX} characters`)
  .regex(PARAMETER_KEY_PATTERN, 'must be a parameter name: a letter or "_", then letters, digits or "_"')
  .refine((k) => !Object.hasOwn(Object.prototype, k), 'is reserved');

/**
 * zod schema of a parameter value: a non-empty string without line breaks or control
 * characters (rake truncates at a newline; the console refuses an empty value). Whether a
 * comma can be carried depends on the console version: the classifier decides that.
 */
export const parameterValueSchema = z
  .string()
  .min(1, 'must not be empty (the console cannot store an empty value)')
  .max(PARAMETER_VALUE_MAX, `must be at most ${PARAMETER_VALUE_MAX} characters`)
  .refine((v) => !/[\p{Cc}\p{Zl}\p{Zp}]/u.test(v), 'must not contain line breaks or control characters');

/** Body of `POST /v1/nodes`. Unknown members are refused. */
export const nodeRequestSchema = z.strictObject({
  name: certnameSchema,
  groups: z.array(groupNameSchema).max(LIST_MAX, `at most ${LIST_MAX} groups`).default([]),
  classes: z.array(classNameSchema).max(LIST_MAX, `at most ${LIST_MAX} classes`).default([]),
  parameters: z
    .record(parameterKeySchema, parameterValueSchema)
    .refine((p) => Object.keys(p).length <= LIST_MAX, `at most ${LIST_MAX} parameters`)
    .default({}),
});

/** A validated node request: name, groups, classes, parameters (key → value). */
export type NodeRequest = z.infer<typeof nodeRequestSchema>;

/**
 * Describes zod issues for a problem `detail`: `name: must be a certname…; groups[1]: …`.
 *
 * @param error - the failed parse
 */
export function describeValidationError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path
        .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
        .join('');
      if (issue.code === 'unrecognized_keys') {
        return `${path === '' ? '' : `${path}: `}unknown member${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
      }
      if (issue.code === 'invalid_type' && issue.input === undefined) return `${path || 'body'}: missing`;
      return `${path || 'body'}: ${issue.message}`;
    })
    .join('; ');
}

/** A DNS subject alt name: a lower-case DNS name (letters, digits, `-`, `.`), no `..`. */
export const DNS_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;

/** zod schema of a DNS subject alt name ({@link DNS_NAME_PATTERN}). */
export const dnsAltNameSchema = z
  .string()
  .max(CERTNAME_MAX, `must be at most ${CERTNAME_MAX} characters`)
  .refine((v) => DNS_NAME_PATTERN.test(v) && !v.includes('..'), 'must be a lower-case DNS name');

/** Body of `POST /v1/certificates`. Unknown members are refused. */
export const certificateRequestSchema = z.strictObject({
  certname: certnameSchema,
  dns_alt_names: z
    .array(dnsAltNameSchema)
    .max(LIST_MAX, `at most ${LIST_MAX} DNS alt names`)
    .refine((names) => new Set(names).size === names.length, 'must not repeat a name')
    .default([]),
  extensions: trustedExtensionsSchema.default({}),
  /** `presigned`: espm makes the key and certificate; `token`: the node signs its own CSR with a one-time challenge. */
  signing: z.enum(['presigned', 'token']).default('presigned'),
});

/** A validated certificate request. */
export type CertificateRequest = z.infer<typeof certificateRequestSchema>;
