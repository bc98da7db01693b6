/**
 * The pre-shared key callers present as `Authorization: Bearer <PSK>`.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';

/** Random bytes in a PSK: 36 bytes = 288 bits, 48 URL-safe base64 characters. */
export const PSK_BYTES = 36;

/**
 * Generates a PSK from the operating system's CSPRNG.
 *
 * @returns 48 characters of URL-safe base64 (`A–Z a–z 0–9 - _`, no padding)
 */
export function generatePsk(): string {
  return randomBytes(PSK_BYTES).toString('base64url');
}
