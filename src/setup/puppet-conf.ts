/**
 * Reads the master's puppet.conf the way puppetserver resolves a setting for itself: each key
 * from `[server]`, then `[master]` (Puppet < 6), then `[main]`. espm_setup uses it to keep the
 * site's previous policy executable (`autosign`) and ENC (`node_terminus`, `external_nodes`).
 *
 * Source of truth: Puppet's configuration reference, "sections" of puppet.conf
 * (docs/reference/modern-puppet.md).
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import ini from 'ini';

/**
 * The server's settings of a puppet.conf.
 *
 * @param puppetConf - absolute path of the master's puppet.conf
 * @returns a lookup giving a key's string value (undefined when no section sets it), or
 *   undefined when the file cannot be read
 */
export function serverSettings(puppetConf: string): ((key: string) => string | undefined) | undefined {
  let parsed: Record<string, Record<string, unknown> | undefined>;
  try {
    parsed = ini.parse(readFileSync(puppetConf, 'utf8')) as typeof parsed;
  } catch {
    return undefined;
  }
  return (key) => [parsed['server'], parsed['master'], parsed['main']].map((s) => s?.[key]).find((v): v is string => typeof v === 'string');
}
