/**
 * The express application: helmet, request logging, allow-list, JSON bodies, `/healthz`,
 * the PSK-protected `/v1` routes, and problem+json for every error.
 *
 * The app knows HTTP only: it calls the services it is given and never spawns a process.
 * Service errors become problem+json here, by their contract code.
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import { HTTP_LIMITS } from './limits.js';
import type { Logger } from '../logger.js';
import {
  allowListGuard,
  authFailureThrottle,
  checkPsk,
  clientAddress,
  requirePsk,
  type AccessSettings,
} from './access.js';
import { verifyJsonMembers } from './json-body.js';
import { HttpProblem, sendProblem } from './problem.js';
import { ServiceError } from '../service/errors.js';
import type { CertificateService } from '../service/certificates.js';
import type { NodeService } from '../service/nodes.js';
import { certificatesRouter } from './routes/certificates.js';
import { classificationRouter } from './routes/classification.js';
import { serviceProblem } from './routes/service-problems.js';
import { statusRouter, type StatusBody } from './routes/status.js';

/** What {@link createApp} needs. */
export interface AppDependencies {
  /** The daemon's logger; one line per request is written to it. */
  logger: Logger;
  /** Current PSK digest and allow-list; read on every request (swapped on SIGHUP). */
  access: () => AccessSettings;
  /** Produces the body of `GET /v1/status`. */
  status: () => StatusBody;
  /** The classification service behind `/v1/groups`, `/v1/classes`, `/v1/nodes`. */
  nodes: NodeService;
  /** The certificate service behind `/v1/certificates`. */
  certificates: CertificateService;
  /** True once SIGTERM/SIGINT began draining: answers then carry `Connection: close`. */
  draining?: () => boolean;
}

/** `res.locals` key marking an answer as an expected backend failure (logged as a warning). */
const EXPECTED_FAILURE = 'espmExpectedFailure';

/** Whether the error handler marked this answer as an expected backend failure. */
function isExpectedFailure(res: ServerResponse): boolean {
  return (res as express.Response).locals?.[EXPECTED_FAILURE] === true;
}

/** The path of a request without its query string (never logged: it is the caller's). */
function pathOf(url: string | undefined): string {
  return (url ?? '/').split('?', 1)[0] ?? '/';
}

/**
 * The fields of a request's log line: method, path (no query), status, duration in ms and
 * client address. Never headers or bodies: they carry the PSK and private keys.
 */
function requestLogFields(
  req: IncomingMessage,
  res: ServerResponse,
  value: Record<string, unknown>,
): Record<string, unknown> {
  return {
    method: req.method,
    path: pathOf((req as express.Request).originalUrl ?? req.url),
    status: res.statusCode,
    ms: value['ms'],
    remote: clientAddress(req as express.Request),
  };
}

/** A short detail for a client error raised while reading the request. */
function clientErrorDetail(e: { message?: string; code?: string }): string {
  if (e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR') return 'the body does not match its Content-Encoding';
  if (e.message?.startsWith('Failed to decode param')) return 'the path holds an invalid %-escape';
  return e.message ?? 'invalid request';
}

/** Maps errors raised by express/body-parser to problems; anything else is a 500. */
function toProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof ServiceError) return serviceProblem(err);
  const e = err as { type?: string; status?: number; message?: string; code?: string };
  switch (e.type) {
    case 'entity.parse.failed':
      return new HttpProblem(400, 'invalid_request', 'malformed JSON body');
    case 'entity.too.large':
      return new HttpProblem(413, 'payload_too_large', `request body exceeds ${HTTP_LIMITS.bodyLimitBytes} bytes`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpProblem(415, 'unsupported_media_type', e.message ?? 'unsupported body encoding');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new HttpProblem(400, 'invalid_request', e.message ?? 'invalid request body');
    default:
      // Other client errors raised while reading the request (an undecodable %-escape in the
      // path, a corrupt Content-Encoding, a problem thrown by the body's verify hook).
      if (e.status !== undefined && e.status >= 400 && e.status < 500) {
        return new HttpProblem(e.status === 413 ? 413 : 400, e.status === 413 ? 'payload_too_large' : 'invalid_request', clientErrorDetail(e));
      }
      return new HttpProblem(500, 'internal_error', 'internal error; see the espm log');
  }
}

/**
 * Builds espm's express application.
 *
 * @param deps - logger, access settings, status provider
 * @returns the app, to be served by an `https.Server` (see `src/server.ts`)
 */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use(
    pinoHttp({
      logger: deps.logger,
      quietReqLogger: true,
      quietResLogger: true,
      genReqId: () => randomUUID(),
      customAttributeKeys: { responseTime: 'ms' },
      // A backend failure the services expect (a problem with a contract code) is a warning;
      // only what no code describes is an error.
      customLogLevel: (_req, res, err) =>
        err !== undefined || res.statusCode >= 500 ? (isExpectedFailure(res) ? 'warn' : 'error') : 'info',
      customSuccessMessage: () => 'request',
      customErrorMessage: () => 'request failed',
      customSuccessObject: (req, res, value: Record<string, unknown>) => requestLogFields(req, res, value),
      customErrorObject: (req, res, _err, value: Record<string, unknown>) => requestLogFields(req, res, value),
    }),
  );
  app.use(helmet());
  if (deps.draining !== undefined) {
    const draining = deps.draining;
    app.use((_req, res, next) => {
      if (draining()) res.setHeader('Connection', 'close');
      next();
    });
  }
  app.use(allowListGuard(deps.access));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  const v1 = express.Router();
  v1.use(checkPsk(deps.access));
  v1.use(authFailureThrottle());
  v1.use(requirePsk());
  // Bodies are parsed only for authenticated callers.
  v1.use(
    express.json({ limit: HTTP_LIMITS.bodyLimitBytes, strict: true, type: 'application/json', verify: verifyJsonMembers }),
  );
  v1.use(statusRouter(deps.status));
  v1.use(classificationRouter(deps.nodes));
  v1.use(certificatesRouter(deps.certificates));
  app.use('/v1', v1);

  const notFound: RequestHandler = (req, _res, next) => {
    next(new HttpProblem(404, 'not_found', `no route for ${req.method} ${pathOf(req.originalUrl)}`));
  };
  app.use(notFound);

  const onError: ErrorRequestHandler = (err, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const problem = toProblem(err);
    if (err instanceof ServiceError && problem.status >= 500) {
      // A backend failure is expected (the console or CA refused, timed out or is missing):
      // a warning with its problem code and detail, not a stack trace.
      res.locals[EXPECTED_FAILURE] = true;
      req.log.warn({ code: problem.code, status: problem.status, detail: problem.detail }, 'backend failure');
    } else if (problem.status >= 500) {
      req.log.error({ err }, 'unhandled error');
    }
    sendProblem(res, problem);
  };
  app.use(onError);
  return app;
}
