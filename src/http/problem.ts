/**
 * RFC 9457 problem details (`application/problem+json`), the shape of every error answer:
 * `{"type","title","status","detail","code"}`. Clients key on `code` (docs/design.md, HTTP
 * contract v1).
 *
 * @packageDocumentation
 */
import type { Response } from 'express';

/** Media type of every error answer. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Titles of the problem codes espm answers with; `code` → human title. */
export const PROBLEM_TITLES = {
  invalid_request: 'Invalid request',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  method_not_allowed: 'Method not allowed',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  too_many_requests: 'Too many requests',
  internal_error: 'Internal error',
} as const satisfies Record<string, string>;

/** A problem code known to {@link PROBLEM_TITLES}; later layers may add their own. */
export type ProblemCode = keyof typeof PROBLEM_TITLES | (string & {});

/** The JSON body of a problem answer. Extra members (e.g. `unknown`) may follow. */
export interface ProblemBody {
  /** `urn:espm:problem:<code>`. */
  type: string;
  title: string;
  /** The HTTP status, repeated. */
  status: number;
  /** What went wrong, for a person; may carry a backend tool's message. */
  detail: string;
  /** Stable, machine-readable: clients key on this. */
  code: ProblemCode;
  [extension: string]: unknown;
}

/**
 * An error that the HTTP layer answers as problem+json. Services and adapters throw
 * errors of their own; the routes map those to an `HttpProblem`.
 */
export class HttpProblem extends Error {
  override readonly name = 'HttpProblem';
  /**
   * @param status - HTTP status (4xx/5xx)
   * @param code - stable problem code
   * @param detail - what went wrong, for a person
   * @param extensions - extra members of the body (e.g. `{ unknown: [...] }`)
   * @param headers - extra response headers (e.g. `Retry-After`)
   */
  constructor(
    readonly status: number,
    readonly code: ProblemCode,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

/**
 * Builds the body of a problem answer.
 *
 * @param status - HTTP status
 * @param code - problem code; its title comes from {@link PROBLEM_TITLES} when known
 * @param detail - human explanation
 * @param extensions - extra members
 */
export function problemBody(
  status: number,
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
): ProblemBody {
  const title = (PROBLEM_TITLES as Record<string, string>)[code] ?? code.replace(/_/g, ' ');
  return { type: `urn:espm:problem:${code}`, title, status, detail, code, ...extensions };
}

/**
 * Sends a problem+json answer.
 *
 * @param res - the express response (headers not yet sent)
 * @param problem - what to send
 */
export function sendProblem(res: Response, problem: HttpProblem): void {
  for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value);
  res
    .status(problem.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problemBody(problem.status, problem.code, problem.detail, problem.extensions)));
}
