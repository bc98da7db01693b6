/**
 * Removing a CSR espm refused for a name it holds a token for: puppetserver saved it before
 * asking the policy and keeps it `requested`, ignoring every later CSR for the name without
 * asking the policy again (docs/reference/modern-puppet.md, "Policy-based autosigning"). So a
 * refusal is followed by waiting until the CA shows exactly that CSR (same DER SHA-256) and
 * discarding it — the real node's CSR is then accepted. The token service decides which CSRs
 * go (src/service/tokens.ts); this module only carries it out, in the background.
 *
 * @packageDocumentation
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { PolicySigning } from '../ca/authority.js';
import { normaliseFingerprint } from '../ca/certificate-info.js';
import type { Logger } from '../logger.js';

/** Looks at the CA before giving up on a refused CSR (× the poll interval: 10 s by default). */
export const REFUSED_CSR_LOOKS = 40;

/** Background removals of refused CSRs. */
export class RefusedCsrs {
  private readonly pending = new Set<Promise<void>>();

  /**
   * @param signing - the CA's token signing (undefined: nothing to remove)
   * @param options - `pollMs` between looks at the CA, ms; logger for outcomes
   */
  constructor(
    private readonly signing: PolicySigning | undefined,
    private readonly options: { pollMs: number; logger?: Logger },
  ) {}

  /**
   * Removes `certname`'s CSR with SHA-256 `fingerprint` once the CA shows it (never another
   * CSR, never a certificate). Failures are logged, never thrown.
   */
  remove(certname: string, fingerprint: string): void {
    const signing = this.signing;
    if (signing === undefined) return;
    const { logger, pollMs } = this.options;
    const task = (async () => {
      for (let look = 0; look < REFUSED_CSR_LOOKS; look += 1) {
        await sleep(pollMs);
        try {
          const pending = await signing.requestedFingerprint(certname);
          if (pending !== undefined && normaliseFingerprint(pending) === normaliseFingerprint(fingerprint)) {
            if (await signing.discardRequest(certname, fingerprint)) logger?.info({ certname, csr_sha256: fingerprint }, 'refused CSR removed from the CA');
            return;
          }
        } catch (err) {
          logger?.warn({ certname, error: (err as Error).message }, 'could not remove a refused CSR from the CA');
          return;
        }
      }
    })();
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
  }

  /** Resolves when every removal under way has ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
