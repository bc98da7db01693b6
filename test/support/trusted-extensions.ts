/**
 * Reads the trusted extensions (Puppet's arc 1.3.6.1.4.1.34380.1) of a certificate, as a
 * puppetserver would hand them to `$trusted['extensions']`: each value must be a DER
 * UTF8String inside the extension's OCTET STRING (docs/reference/modern-puppet.md). Parsed
 * with node-forge (ASN.1), never from openssl's text; {@link opensslText} gives that text for
 * the cross-check with openssl itself.
 */
import { execFileSync } from 'node:child_process';
import forge from 'node-forge';

/**
 * OID → value of every extension of `certificatePem` under Puppet's arc.
 *
 * @throws Error when such an extension's value is not a DER UTF8String
 */
export function trustedExtensionValues(certificatePem: string): Record<string, string> {
  const cert = forge.pki.certificateFromPem(certificatePem);
  const out: Record<string, string> = {};
  for (const ext of cert.extensions as Array<{ id: string; value: string }>) {
    if (!ext.id.startsWith('1.3.6.1.4.1.34380.1.')) continue;
    const inner = forge.asn1.fromDer(ext.value);
    if (inner.tagClass !== forge.asn1.Class.UNIVERSAL || inner.type !== forge.asn1.Type.UTF8) {
      throw new Error(`extension ${ext.id} is not a UTF8String (type ${inner.type})`);
    }
    out[ext.id] = forge.util.decodeUtf8(inner.value as string);
  }
  return out;
}

/** `openssl x509 -noout -text` of a certificate (openssl from PATH, as on every CI machine). */
export function opensslText(certificatePem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: certificatePem, encoding: 'utf8', timeout: 10_000 });
}
