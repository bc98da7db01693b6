/**
 * The errors of the service layer: each carries the contract's problem `code`; the HTTP layer
 * maps codes to statuses (src/http/routes/service-problems.ts).
 *
 * @packageDocumentation
 */

/** Problem codes the services raise (DESIGN.md, HTTP contract v1). */
export type ServiceErrorCode =
  | 'node_exists'
  | 'node_not_found'
  | 'unknown_group'
  | 'unknown_class'
  | 'unsupported_parameter'
  | 'ownership_uncertain'
  | 'certificate_exists'
  | 'certificate_not_found'
  | 'backend_failed'
  | 'backend_timeout'
  | 'backend_unavailable';

/** A refusal or failure of a service operation, with its contract code. */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  /**
   * @param code - the contract's problem code
   * @param detail - what happened, for a person (may carry the backend tool's words)
   * @param extensions - extra members of the problem body (e.g. `unknown_groups`)
   */
  constructor(
    readonly code: ServiceErrorCode,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}
