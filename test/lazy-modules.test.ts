/**
 * The daemon does not hold modules only some configurations use (idle RSS, issue #8): node-forge
 * (sandbox CA, puppetserver-api CSRs, espm_setup), pino-pretty (`[log] format = text`) and undici
 * (the Puppet HTTPS client: puppetserver's CA API, the Node Classifier, PuppetDB) are loaded at
 * first use. Checked in a fresh node process importing the built daemon (dist/).
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Runs `body` (an ES module) in a fresh node; it prints the package names of every CommonJS module loaded so far. */
async function loadedPackages(body: string): Promise<string[]> {
  const script = `
    import { createRequire } from 'node:module';
    ${body}
    const names = Object.keys(createRequire(import.meta.url).cache)
      .map((p) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(p)?.[1])
      .filter(Boolean);
    console.log(JSON.stringify([...new Set(names)]));
  `;
  const { stdout } = await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 30_000 });
  return JSON.parse(stdout) as string[];
}

describe('modules loaded at first use', () => {
  it('importing the daemon (bin/espm’s modules) loads express and pino, not node-forge, pino-pretty nor undici', async () => {
    const loaded = await loadedPackages(`await import('./dist/cli/espm.js');`);
    expect(loaded).toEqual(expect.arrayContaining(['express', 'pino']));
    expect(loaded).not.toContain('node-forge');
    expect(loaded).not.toContain('pino-pretty');
    expect(loaded).not.toContain('undici');
    // koffi (malloc_trim after a connection flood) is loaded at the first memory release.
    expect(loaded).not.toContain('koffi');
  });

  it('a text logger loads pino-pretty; a sandbox CA operation loads node-forge', async () => {
    const loaded = await loadedPackages(`
      import { mkdtemp, rm } from 'node:fs/promises';
      import { tmpdir } from 'node:os';
      import { join } from 'node:path';
      const { createLogger } = await import('./dist/logger.js');
      const { SandboxCertificateAuthority } = await import('./dist/ca/sandbox.js');
      createLogger({ level: 'silent', format: 'text' });
      const dir = await mkdtemp(join(tmpdir(), 'espm-lazy-'));
      await new SandboxCertificateAuthority(dir).currentFingerprint('web01.example.test');
      await rm(dir, { recursive: true });
    `);
    expect(loaded).toContain('pino-pretty');
    expect(loaded).toContain('node-forge');
  });
});
