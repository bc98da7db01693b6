/**
 * Trusted extensions as certificate (or CSR extensionRequest) extensions, encoded the way
 * Puppet itself encodes `csr_attributes.yaml` `extension_requests`: the value a DER
 * UTF8String inside the extension's OCTET STRING, not critical — so that the node's
 * `$trusted['extensions']` shows the plain value. Source of truth: docs/reference/modern-puppet.md
 * (a Puppet CSR's `OCTET STRING [HEX DUMP]:0C03776562` for `pp_role: web`).
 *
 * @packageDocumentation
 */
import type ForgeTypes from 'node-forge';
import type { TrustedExtension } from './trusted-extensions.js';

/** A node-forge extension object (`setExtensions` / an `extensionRequest` attribute's `extensions`). */
export interface ForgeExtension {
  /** Dotted OID. */
  id: string;
  /** Always false: Puppet's extension requests are not critical. */
  critical: false;
  /** The DER UTF8String of the value, as an ASN.1 object (node-forge wraps it in the OCTET STRING). */
  value: ForgeTypes.asn1.Asn1;
}

/**
 * The node-forge extensions of trusted extensions, in the given order.
 *
 * @param forge - node-forge, as the caller loaded it (lazily)
 * @param extensions - resolved extensions (`resolveExtensions`, src/ca/trusted-extensions.ts)
 */
export function forgeExtensions(forge: typeof ForgeTypes, extensions: readonly TrustedExtension[]): ForgeExtension[] {
  return extensions.map(({ oid, value }) => ({
    id: oid,
    critical: false,
    value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.UTF8, false, forge.util.encodeUtf8(value)),
  }));
}
