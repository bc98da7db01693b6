/**
 * The hand-off between the master's policy executable (`espm autosign`, run by puppetserver's
 * user) and the daemon (root, the ledger's only writer): one request and one answer, each a
 * single line of JSON, over a Unix socket in a directory only root and puppetserver's group can
 * reach (docs/design.md, "Certificates: …token signing", "The hand-off").
 *
 * The request carries only what puppetserver gave the policy (certname, CSR PEM); the answer
 * carries a decision and, for `fallback`, the site's previous policy executable and its
 * timeout — nothing secret travels from the daemon to puppetserver's user.
 *
 * No imports: both sides load it (the CLI must stay small).
 *
 * @packageDocumentation
 */

/** Largest request line, bytes (a certname and a CSR PEM of at most 64 KiB, JSON-escaped). */
export const AUTOSIGN_REQUEST_MAX_BYTES = 160 * 1024;
/** Largest answer line, bytes. */
export const AUTOSIGN_ANSWER_MAX_BYTES = 16 * 1024;
/** How long either side waits for the other, ms (the daemon answers in milliseconds; puppetserver has no timeout of its own). */
export const AUTOSIGN_TIMEOUT_MS = 20_000;

/** What `espm autosign` sends: puppetserver's argument and stdin. */
export interface AutosignRequest {
  certname: string;
  /** The CSR PEM (at most 64 KiB). */
  csr: string;
}

/** What the daemon answers. */
export type AutosignAnswer =
  /** espm holds a token this CSR matches: exit 0, puppetserver signs it. */
  | { decision: 'sign' }
  /** refused: exit 1 with `reason` on stderr (puppetserver logs it; never secret). */
  | { decision: 'refuse'; reason: string }
  /** espm holds nothing for this certname: run the site's previous policy with the certname and the CSR on stdin. */
  | { decision: 'fallback'; fallback: string; timeout_ms: number };

/** The JSON object on `line`, or undefined when it holds anything else. */
function jsonObject(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads an answer line.
 *
 * @returns the answer, or undefined when `line` is not one (the caller refuses)
 */
export function parseAutosignAnswer(line: string): AutosignAnswer | undefined {
  const answer = jsonObject(line);
  if (answer === undefined) return undefined;
  if (answer['decision'] === 'sign') return { decision: 'sign' };
  if (answer['decision'] === 'refuse') return { decision: 'refuse', reason: typeof answer['reason'] === 'string' ? answer['reason'] : 'refused' };
  if (answer['decision'] === 'fallback' && typeof answer['fallback'] === 'string' && answer['fallback'].startsWith('/') && typeof answer['timeout_ms'] === 'number') {
    return { decision: 'fallback', fallback: answer['fallback'], timeout_ms: answer['timeout_ms'] };
  }
  return undefined;
}

/**
 * Reads a request line.
 *
 * @returns the request, or undefined when `line` is not one (the daemon refuses)
 */
export function parseAutosignRequest(line: string): AutosignRequest | undefined {
  const request = jsonObject(line);
  if (request === undefined) return undefined;
  const { certname, csr } = request;
  return typeof certname === 'string' && typeof csr === 'string' ? { certname, csr } : undefined;
}
