/**
 * Limits of the HTTP layer that are not operator settings (not in espm.ini).
 * Source: `docs/design.md` ("HTTP contract", "Config").
 *
 * @packageDocumentation
 */

/** Limits of the HTTP layer that are not operator settings. */
export const HTTP_LIMITS = {
  /** Largest accepted JSON body, bytes (64 KiB, `docs/design.md`). */
  bodyLimitBytes: 64 * 1024,
  /** Failed authentications per client address per window before 429. */
  authFailuresPerWindow: 10,
  /** Window of the authentication throttle, ms. */
  authFailureWindowMs: 60_000,
  /** Lowest TLS version the server accepts. */
  minTlsVersion: 'TLSv1.2',
} as const;
