/**
 * The daemon side of bench/autosign.ts, in its own process (the bench's timed spawns block
 * its event loop): a ledger in DIR, the real TokenService and hand-off socket
 * (src/autosign/lifecycle.ts), one token per certname of DIR/certnames.json, its challenge
 * written to DIR/challenges.json. The CA is a stand-in answering only what `create` asks
 * (no certificate, no CSR, a CA certificate): the per-CSR path measured needs no CA.
 *
 *   npx tsx bench/autosign/daemon.ts DIR   (prints `ready` once listening)
 *
 * @packageDocumentation
 */
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CertificateAuthority } from '../../src/ca/authority.js';
import { startTokenSigning } from '../../src/autosign/lifecycle.js';
import { createLogger } from '../../src/logger.js';
import { certificateRequestSchema } from '../../src/names.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { TokenService } from '../../src/service/tokens.js';

const dir = process.argv[2]!;
const ca: CertificateAuthority = {
  backend: 'bench',
  carriesExtensions: true,
  issue: () => Promise.reject(new Error('not used')),
  revoke: async () => 'absent',
  currentFingerprint: async () => undefined,
  policySigning: {
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
    signedCertificate: async () => undefined,
    requestedFingerprint: async () => undefined,
    discardRequest: async () => false,
    requestedCsr: async () => undefined,
    signRequest: () => Promise.reject(new Error('not used')),
  },
};
const logger = createLogger({ level: 'warn', format: 'json' });
const ledger = await Ledger.open(join(dir, 'state'));
const tokens = new TokenService(ca, ledger, { ttlMs: 3_600_000, logger });
const certnames = JSON.parse(await readFile(join(dir, 'certnames.json'), 'utf8')) as string[];
const challenges: Record<string, string> = {};
for (const certname of certnames) {
  challenges[certname] = (await tokens.create(certificateRequestSchema.parse({ certname, signing: 'token' }))).challenge_password;
}
await writeFile(join(dir, 'challenges.json'), JSON.stringify(challenges));
const socket = join(dir, 'autosign', 'espm.sock');
const running = startTokenSigning(tokens, { socket, fallback: undefined, fallbackTimeoutMs: 10_000 }, logger);
while (!existsSync(socket)) await sleep(10);
console.log('ready');
process.on('SIGTERM', () => {
  void running.stop().then(() => ledger.close()).then(() => process.exit(0));
});
