/**
 * The daemon's logger: pino, JSON lines (or text) on stdout.
 *
 * Secrets never reach a log line: request logs carry method, path, status, duration and
 * client address only (never headers or bodies), and the paths below are redacted as a
 * second line of defence should a secret ever be passed to a log call by mistake.
 *
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { Config } from './config.js';

export type { Logger } from 'pino';

/** Object paths censored in every log line, wherever they appear at the top two levels. */
export const REDACTED_PATHS = [
  'psk',
  'private_key',
  'privateKey',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.psk',
  '*.private_key',
  '*.privateKey',
  '*.authorization',
];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** `[log] level`. */
  level: Config['log']['level'];
  /** `[log] format`: `json` = one JSON object per line; `text` = pino-pretty for people. */
  format: Config['log']['format'];
  /** Where lines go; default stdout (fd 1). Tests pass a stream to capture them. */
  destination?: DestinationStream;
}

/**
 * Creates espm's logger.
 *
 * @param options - level, format and optional destination
 * @returns a pino logger whose `name` is `espm`; lines carry `time` in ms since the epoch
 */
export function createLogger(options: LoggerOptions): Logger {
  const base = {
    name: 'espm',
    level: options.level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  if (options.format === 'text') {
    // Loaded only for `[log] format = text`: a JSON-logging daemon does not hold it (≈ 8 MB RSS).
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    const stream = pretty({
      colorize: false,
      translateTime: 'SYS:standard',
      ignore: 'pid,hostname,name',
      destination: options.destination ?? 1,
      sync: true,
    });
    return pino(base, stream);
  }
  return pino(base, options.destination ?? pino.destination({ dest: 1, sync: true }));
}
