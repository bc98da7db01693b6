/**
 * The HTTP status of each service error code (docs/design.md, "HTTP contract v1"), and the one
 * place where service errors become problem+json.
 *
 * @packageDocumentation
 */
import type { ZodType } from 'zod';
import { describeValidationError } from '../../names.js';
import type { ServiceError, ServiceErrorCode } from '../../service/errors.js';
import { HttpProblem } from '../problem.js';

/** Status of every service error code. */
export const SERVICE_ERROR_STATUS: Record<ServiceErrorCode, number> = {
  node_exists: 409,
  node_not_found: 404,
  unknown_group: 422,
  unknown_class: 422,
  unsupported_parameter: 422,
  unsupported_signing: 422,
  ownership_uncertain: 409,
  certificate_exists: 409,
  certificate_not_found: 404,
  unsupported_extension: 422,
  backend_failed: 502,
  backend_timeout: 504,
  backend_unavailable: 503,
  puppetdb_failed: 502,
};

/**
 * Turns a service error into a problem: the status of its code, its detail and extensions.
 *
 * @param err - what a service threw
 */
export function serviceProblem(err: ServiceError): HttpProblem {
  return new HttpProblem(SERVICE_ERROR_STATUS[err.code], err.code, err.detail, err.extensions);
}

/**
 * Validates a value (body, path parameter) with a zod schema.
 *
 * @returns the parsed value
 * @throws {@link HttpProblem} 400 `invalid_request` describing every issue
 */
export function validate<T>(schema: ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (!result.success) {
    throw new HttpProblem(400, 'invalid_request', `invalid ${what}: ${describeValidationError(result.error)}`);
  }
  return result.data;
}

/**
 * Refuses a body that is not JSON (415) or absent (400). Call before validating a body.
 *
 * @throws {@link HttpProblem}
 */
export function requireJsonBody(req: { is(type: string): string | false | null; body: unknown }): void {
  if (req.is('application/json') === false) {
    throw new HttpProblem(415, 'unsupported_media_type', 'send the body as Content-Type: application/json');
  }
  if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
    throw new HttpProblem(400, 'invalid_request', 'the body must be a JSON object');
  }
}
