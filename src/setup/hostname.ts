/**
 * The default certificate CN of `espm_setup`: this machine's FQDN.
 *
 * @packageDocumentation
 */
import { lookup, lookupService } from 'node:dns/promises';
import { hostname } from 'node:os';

/** How long the FQDN look-up may take before the plain host name is used, ms. */
export const FQDN_LOOKUP_TIMEOUT_MS = 2000;

/**
 * This machine's fully qualified name: the host name if it already has a dot, else the
 * name the resolver gives for its address (getnameinfo), else the plain host name.
 *
 * @returns a lower-case host name; never throws
 */
export async function machineFqdn(): Promise<string> {
  const short = hostname().toLowerCase();
  if (short.includes('.')) return short;
  const resolve = async (): Promise<string> => {
    const { address } = await lookup(short);
    const { hostname: name } = await lookupService(address, 0);
    return name.toLowerCase();
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout(short), FQDN_LOOKUP_TIMEOUT_MS);
  });
  try {
    const name = await Promise.race([resolve(), timeout]);
    return name.startsWith(`${short}.`) ? name : short;
  } catch {
    return short;
  } finally {
    clearTimeout(timer);
  }
}
