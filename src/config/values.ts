/**
 * zod schemas of single espm.ini values (paths, seconds, flags, address lists, HTTPS origins),
 * shared by the section schemas. Each refusal's message completes `[section] key: …`.
 *
 * @packageDocumentation
 */
import { isAbsolute } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';

/** An absolute path (trimmed, not empty). */
export const absolutePath = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .refine((p) => isAbsolute(p), 'must be an absolute path');

/** An absolute path, or empty; empty → `undefined` (the key's "unset" meaning, e.g. "ask puppet"). */
export function optionalAbsolutePath(emptyMeans: string) {
  return z
    .string()
    .trim()
    .refine((p) => p === '' || isAbsolute(p), `must be an absolute path (or empty: ${emptyMeans})`)
    .optional()
    .transform((p) => (p === '' ? undefined : p));
}

/**
 * A duration as written in the INI: a whole number of seconds, at least `min`.
 *
 * @param min - smallest accepted value, seconds
 */
export const seconds = (min: number) =>
  z.coerce.number().int(`must be a whole number of seconds`).min(min, `must be at least ${min} s`);

/** A count as written in the INI: a whole number in `[min, max]`, `unit` naming it in messages. */
export const count = (unit: string, min: number, max: number, minMessage: string) =>
  z.coerce.number().int(`must be a whole number of ${unit}`).min(min, minMessage).max(max, `must be at most ${max} ${unit}`);

/** A flag: `ini` turns `true`/`false` into booleans; also on/off/yes/no/1/0. */
export const flag = z.union([
  z.boolean(),
  z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(['true', 'false', 'on', 'off', 'yes', 'no', '1', '0']))
    .transform((v) => ['true', 'on', 'yes', '1'].includes(v)),
]);

/** One entry of `[server] allow`: an IPv4/IPv6 address, or a CIDR. */
function isAddressOrCidr(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

/** `[server] allow`: comma- or space-separated addresses and CIDRs → their list (empty = all). */
export const allowList = z
  .string()
  .transform((s): readonly string[] =>
    s
      .split(/[\s,]+/)
      .map((e) => e.trim())
      .filter((e) => e.length > 0),
  )
  .refine((entries) => entries.every(isAddressOrCidr), {
    message: 'must be a comma-separated list of IP addresses or CIDRs (e.g. 10.0.0.0/8, 192.0.2.7)',
  });

/** True for `https://HOST[:PORT]` with nothing else (no credentials, path, query or fragment). */
function isHttpsOrigin(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return url.protocol === 'https:' && url.hostname !== '' && url.username === '' && url.password === '' &&
    (url.pathname === '/' || url.pathname === '') && url.search === '' && url.hash === '';
}

/**
 * `https://HOST[:PORT]` or empty; → its origin (`https://host:port`, no trailing slash), or
 * `undefined` when empty or absent.
 *
 * @param emptyMeans - what an empty value means, for the message (e.g. `ask puppet`)
 */
export function optionalHttpsOrigin(emptyMeans: string) {
  return z
    .string()
    .trim()
    .refine(
      (u) => u === '' || isHttpsOrigin(u),
      `must be https://HOST or https://HOST:PORT (no path, query or credentials), or empty: ${emptyMeans}`,
    )
    .optional()
    .transform((u) => (u === undefined || u === '' ? undefined : new URL(u).origin));
}

/**
 * `https://HOST[:PORT][/path]` (a service's base URL, e.g. the Node Classifier's
 * `https://console:4433/classifier-api`): no credentials, query or fragment; → the URL without
 * a trailing slash.
 */
export const httpsBaseUrl = z
  .string()
  .trim()
  .refine((value) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return false;
    }
    return url.protocol === 'https:' && url.hostname !== '' && url.username === '' && url.password === '' && url.search === '' && url.hash === '';
  }, 'must be an https:// URL such as https://console.example.com:4433/classifier-api (no query or credentials)')
  .transform((value) => value.replace(/\/+$/, ''));
