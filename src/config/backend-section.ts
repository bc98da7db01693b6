/**
 * A section whose keys depend on its `backend` (`[classifier]`, `[ca]`): one zod variant per
 * backend, chosen by `backend` (discriminated union), so that a backend's own keys are
 * validated only when that backend is chosen. Keys of the section's other backends are known
 * and ignored (`espm_setup` has always written the rake and Puppet keys with every backend);
 * a key no backend knows is an error naming `[section] key`. Source: `docs/design.md` ("Config").
 *
 * @packageDocumentation
 */
import { z } from 'zod';

/**
 * One backend's variant of a section: a strict object with `backend: z.literal(name)` and
 * every key that backend reads (the section's common keys and its own), transformed into
 * its typed settings.
 */
export type BackendVariant = z.ZodPipe<z.ZodObject<z.core.$ZodLooseShape, z.core.$strict>, z.ZodType>;

/** The INI keys a variant accepts. */
function keysOf(variant: BackendVariant): ReadonlySet<string> {
  return new Set(Object.keys(variant.in.shape));
}

/**
 * Builds the schema of a backend-dependent section.
 *
 * @param backends - every backend name, in the order messages list them
 * @param defaultBackend - the backend of a section that names none
 * @param variants - one variant per backend name (see {@link BackendVariant})
 * @returns a schema accepting the section's INI object (or nothing: every default), whose
 *   output is the union of the variants' outputs, discriminated by `backend`
 */
export function backendSection<B extends string, V extends { readonly [K in B]: BackendVariant }>(
  backends: readonly B[],
  defaultBackend: B,
  variants: V,
) {
  const own = new Map<string, ReadonlySet<string>>(backends.map((b) => [b, keysOf(variants[b])]));
  const known = new Set([...own.values()].flatMap((keys) => [...keys]));
  /** Fills in the default backend; drops the keys only other backends read. */
  const keepOwnKeys = (raw: unknown): unknown => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
    const values: Record<string, unknown> = { backend: defaultBackend, ...(raw as Record<string, unknown>) };
    const mine = own.get(String(values['backend']));
    if (mine === undefined) return { backend: values['backend'] };
    return Object.fromEntries(Object.entries(values).filter(([key]) => mine.has(key) || !known.has(key)));
  };
  const options = backends.map((b) => variants[b]) as unknown as [V[B], ...V[B][]];
  const union = z.discriminatedUnion('backend', options, {
    error: (issue) =>
      issue.code === 'invalid_union' ? `Invalid option: expected one of ${backends.map((b) => `"${b}"`).join('|')}` : undefined,
  });
  return z.preprocess(keepOwnKeys, union).prefault({});
}
