/**
 * src/ca/csr.ts reads what a CSR asks for — CN, challengePassword, DNS alt names, extension
 * requests, digests — from CSRs made by the real openssl, and refuses a tampered one.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { CsrError, readCsr } from '../../src/ca/csr.js';
import { colonHex } from '../../src/ca/certificate-info.js';
import { makeCsr } from '../support/csr.js';

const PP_ROLE = '1.3.6.1.4.1.34380.1.1.13';

describe('readCsr', () => {
  it('reads CN, challengePassword, alt names, extension requests and digests of an RSA CSR', async () => {
    const { csr, key } = await makeCsr({
      certname: 'web01.example.test',
      challenge: 'abc123def',
      altNames: ['DNS:web01.example.test', 'DNS:www.example.test'],
      extensions: { [PP_ROLE]: 'web', '1.3.6.1.4.1.34380.1.2.7': 'private välue' },
    });
    const read = await readCsr(csr);
    expect(read.commonName).toBe('web01.example.test');
    expect(read.challengePassword).toBe('abc123def');
    expect(read.dnsAltNames).toEqual(['web01.example.test', 'www.example.test']);
    expect(read.otherAltNames).toBe(false);
    expect(Object.fromEntries(read.extensions)).toEqual({ [PP_ROLE]: 'web', '1.3.6.1.4.1.34380.1.2.7': 'private välue' });
    const der = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    expect(read.fingerprintSha256).toBe(colonHex(createHash('sha256').update(der).digest()));
    const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
    expect(read.publicKeySha256).toBe(colonHex(createHash('sha256').update(spki).digest()));
  });

  it('reads an EC CSR without attributes, and flags IP alt names', async () => {
    const read = await readCsr((await makeCsr({ certname: 'db01', key: 'ec', altNames: ['IP:10.0.0.1'] })).csr);
    expect(read.commonName).toBe('db01');
    expect(read.challengePassword).toBeUndefined();
    expect(read.dnsAltNames).toEqual([]);
    expect(read.otherAltNames).toBe(true);
  });

  it('refuses a CSR whose signed part was changed, and what is no CSR', async () => {
    const { csr } = await makeCsr({ certname: 'aaaa.example.test', challenge: 'tok' });
    const der = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('aaaa'));
    der[at] = 'b'.charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(readCsr(tampered)).rejects.toThrow(/signature does not verify/);
    await expect(readCsr('hello')).rejects.toThrow(CsrError);
    await expect(readCsr('-----BEGIN CERTIFICATE REQUEST-----\nMAMCAQA=\n-----END CERTIFICATE REQUEST-----\n')).rejects.toThrow(CsrError);
  });
});
