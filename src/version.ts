/**
 * espm's version, read once from its package.json (the one source of truth for it).
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';

/** The `version` field of espm's package.json, e.g. `0.1.0`. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
