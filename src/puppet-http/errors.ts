/**
 * The one error of the Puppet HTTPS client: which service, which request, and which way it
 * failed, typed as a {@link BackendError} so that an adapter maps it to its own error
 * without reading messages. Source of truth: docs/design.md ("One Puppet HTTPS client").
 *
 * @packageDocumentation
 */
import { BackendError, type BackendFailure } from '../backend.js';

/**
 * A request to a Puppet service failed.
 *
 * `failure`: `unavailable` — the service could not be reached (refused, unknown host, TLS
 * handshake or certificate verification failed); `timeout` — no whole answer within the request timeout, or the
 * connection broke after a changing request was sent (its outcome is unknown); `failed` —
 * anything else (an answer over the size cap, an unreadable identity file).
 * The message always starts with the service's name and the method + path.
 */
export class PuppetHttpError extends BackendError {
  override readonly name = 'PuppetHttpError';
  /**
   * @param failure - which way it failed
   * @param service - the service's name, e.g. `Puppet Server CA`
   * @param request - `METHOD /path` (the path as sent, base path included), or what was being
   *   prepared (`reading the client key`)
   * @param detail - what happened
   * @param output - the service's own words, if any
   */
  constructor(
    failure: BackendFailure,
    readonly service: string,
    readonly request: string,
    detail: string,
    output = '',
  ) {
    super(failure, `${service}: ${request}: ${detail}`, output);
  }
}
