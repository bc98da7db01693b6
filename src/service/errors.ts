/**
 * The errors of the service layer: each carries the contract's problem `code`; the HTTP layer
 * maps codes to statuses (src/http/routes/service-problems.ts).
 *
 * @packageDocumentation
 */
import { BackendError } from '../backend.js';

/** Problem codes the services raise (docs/design.md, "HTTP contract v1"). */
export type ServiceErrorCode =
  | 'node_exists'
  | 'node_not_found'
  | 'unknown_group'
  | 'unknown_class'
  | 'unsupported_parameter'
  | 'unsupported_signing'
  | 'ownership_uncertain'
  | 'certificate_exists'
  | 'certificate_not_found'
  | 'unsupported_extension'
  | 'backend_failed'
  | 'backend_timeout'
  | 'backend_unavailable'
  | 'puppetdb_failed';

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

/** The problem code of each way a backend call fails (docs/design.md, "Errors"). */
const FAILURE_CODES = {
  failed: 'backend_failed',
  interrupted: 'backend_failed',
  timeout: 'backend_timeout',
  unavailable: 'backend_unavailable',
} as const satisfies Record<BackendError['failure'], ServiceErrorCode>;

/**
 * Maps a backend failure to the contract: `timeout` → `backend_timeout` (504); `unavailable`
 * (the tool's binary is missing, or the service cannot be reached) → `backend_unavailable`
 * (503); anything else → `backend_failed` (502). The tool's words go into the detail.
 *
 * @param err - what the adapter threw
 * @param doing - what espm was doing, e.g. `creating node web01`
 */
export function backendProblem(err: unknown, doing: string): ServiceError {
  if (err instanceof BackendError) {
    const output = err.output === '' ? '' : `: ${err.output}`;
    return new ServiceError(FAILURE_CODES[err.failure], `${doing}: ${err.message}${output}`);
  }
  return new ServiceError('backend_failed', `${doing}: ${(err as Error).message}`);
}
