/**
 * Who may call espm: the client-address allow-list (`[server] allow`), the PSK check of
 * every `/v1` request, and the throttle on failed authentications.
 *
 * The settings are read through a getter on every request, so a SIGHUP reload swaps the
 * PSK and allow-list without restarting the server or dropping connections.
 *
 * @packageDocumentation
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { HTTP_LIMITS } from './limits.js';
import { HttpProblem, sendProblem } from './problem.js';

/** What the access checks need; rebuilt from the config on start-up and on every reload. */
export interface AccessSettings {
  /** SHA-256 digest of the PSK (the PSK itself is not kept here). */
  readonly pskDigest: Buffer;
  /** Allowed client addresses, or `null` when every address is allowed. */
  readonly allow: BlockList | null;
}

/** SHA-256 digest of a UTF-8 string, 32 bytes. */
function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Builds {@link AccessSettings} from the configured PSK and allow-list.
 *
 * @param psk - the pre-shared key (`[server] psk`)
 * @param allow - CIDRs or addresses (`[server] allow`, already validated); empty = all
 * @throws TypeError if an allow entry is not an address or CIDR (config validation prevents it)
 */
export function accessSettings(psk: string, allow: readonly string[]): AccessSettings {
  let list: BlockList | null = null;
  if (allow.length > 0) {
    list = new BlockList();
    for (const entry of allow) {
      const [address = '', prefix] = entry.split('/');
      const type = isIPv4(address) ? 'ipv4' : 'ipv6';
      if (prefix === undefined) list.addAddress(address, type);
      else list.addSubnet(address, Number(prefix), type);
    }
  }
  return { pskDigest: sha256(psk), allow: list };
}

/**
 * Compares a presented PSK with the configured one in constant time: both sides are
 * hashed to 32 bytes first, so neither a wrong value nor a wrong length shows in the time
 * taken (`crypto.timingSafeEqual` throws on different lengths).
 *
 * @param presented - the bearer token from the request
 * @param expectedDigest - SHA-256 of the configured PSK
 * @returns true when they are equal
 */
export function pskMatches(presented: string, expectedDigest: Buffer): boolean {
  return timingSafeEqual(sha256(presented), expectedDigest);
}

/** The client address with an IPv4-mapped IPv6 prefix (`::ffff:`) removed. */
export function clientAddress(req: Request): string {
  const address = req.socket.remoteAddress ?? '';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

/**
 * Middleware answering 403 `forbidden` to clients outside `[server] allow`.
 *
 * @param settings - getter of the current settings (swapped on reload)
 */
export function allowListGuard(settings: () => AccessSettings): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const { allow } = settings();
    const address = clientAddress(req);
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (allow === null || allow.check(address, type)) {
      next();
      return;
    }
    sendProblem(res, new HttpProblem(403, 'forbidden', `client address ${address} is not in [server] allow`));
  };
}

/** Whether the request carries the right PSK (set by {@link requirePsk}'s first half). */
function authenticated(res: Response): boolean {
  return res.locals['authenticated'] === true;
}

/**
 * Middleware deciding whether a request carries `Authorization: Bearer <PSK>` (constant-time
 * digest comparison) and noting it in `res.locals.authenticated`. It answers nothing itself:
 * {@link authFailureThrottle} then counts the failures, {@link requirePsk} refuses them.
 *
 * @param settings - getter of the current settings (swapped on reload)
 */
export function checkPsk(settings: () => AccessSettings): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
    res.locals['authenticated'] = match?.[1] !== undefined && pskMatches(match[1], settings().pskDigest);
    next();
  };
}

/**
 * Middleware answering 401 `unauthorized` (with `WWW-Authenticate: Bearer`) to requests
 * {@link checkPsk} did not authenticate. Never logs the header.
 */
export function requirePsk(): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (authenticated(res)) {
      next();
      return;
    }
    const detail =
      req.headers.authorization === undefined
        ? 'missing Authorization header: send "Authorization: Bearer <pre-shared key>"'
        : 'invalid pre-shared key';
    sendProblem(
      res,
      new HttpProblem(401, 'unauthorized', detail, {}, { 'WWW-Authenticate': 'Bearer realm="espm"' }),
    );
  };
}

/** The throttle's key of a request: its address (IPv6 grouped by /56, express-rate-limit's `ipKeyGenerator`). */
function throttleKey(req: Request): string {
  return ipKeyGenerator(clientAddress(req));
}

function tooManyRequests(res: Response, retryAfterS: number): void {
  sendProblem(
    res,
    new HttpProblem(
      429,
      'too_many_requests',
      `too many failed authentications from this address; retry after ${retryAfterS} s`,
      {},
      { 'Retry-After': String(retryAfterS) },
    ),
  );
}

/**
 * Middlewares throttling failed authentications per client address (express-rate-limit).
 * Only requests without the right PSK are counted (so any number of concurrent
 * authenticated requests never trips it); after {@link HTTP_LIMITS.authFailuresPerWindow}
 * of them within {@link HTTP_LIMITS.authFailureWindowMs}, EVERY request from that address —
 * right PSK or not, so a blocked guesser learns nothing — gets 429 `too_many_requests` with
 * `Retry-After` (s) until the window ends. Mount after {@link checkPsk}, before
 * {@link requirePsk}.
 */
export function authFailureThrottle(): RequestHandler[] {
  const limiter = rateLimit({
    windowMs: HTTP_LIMITS.authFailureWindowMs,
    limit: HTTP_LIMITS.authFailuresPerWindow,
    standardHeaders: false,
    legacyHeaders: false,
    skip: (_req, res) => authenticated(res),
    keyGenerator: throttleKey,
    handler: (req, res) => {
      const resetTime = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      tooManyRequests(res, retryAfterSeconds(resetTime));
    },
  });
  const blockedAddresses: RequestHandler = async (req, res, next) => {
    if (!authenticated(res)) {
      next();
      return;
    }
    const info = await limiter.getKey(throttleKey(req));
    if (info !== undefined && info.totalHits >= HTTP_LIMITS.authFailuresPerWindow && (info.resetTime?.getTime() ?? 0) > Date.now()) {
      tooManyRequests(res, retryAfterSeconds(info.resetTime));
      return;
    }
    next();
  };
  return [blockedAddresses, limiter];
}

/** Whole seconds until `resetTime` (at least 1). */
function retryAfterSeconds(resetTime: Date | undefined): number {
  const ms = (resetTime?.getTime() ?? Date.now() + HTTP_LIMITS.authFailureWindowMs) - Date.now();
  return Math.max(1, Math.ceil(ms / 1000));
}
