/**
 * Packaging (issue #7): `npm pack` ships dist/, bin/, etc/, docs/ (plus npm's own
 * package.json and README) and the tarball installs with `npm install -g` into a fresh
 * prefix, giving working `espm` and `espm_setup` on PATH.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('npm pack', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'espm-pack-'));
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  it('ships only dist/, bin/, etc/, docs/ and installs globally into a fresh prefix', async () => {
    // A real `npm pack` builds dist/ first (prepack); here dist/ is already built by `pretest`, and
    // rebuilding it in place would race the suites running beside this one that import it (seen:
    // a half-written dist/ in test/lazy-modules.test.ts). So the scripts are skipped, and the
    // prepack script is checked instead.
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(manifest.scripts['prepack']).toBe('npm run build');
    const packed = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, env: { npm_config_loglevel: 'error' } });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const paths = info!.files.map((f) => f.path);
    const outside = paths.filter((p) => !/^(dist|bin|etc|docs)\//.test(p) && !['package.json', 'README.md', 'LICENSE'].includes(p));
    expect(outside).toEqual([]);
    for (const required of ['bin/espm', 'bin/espm-enc', 'bin/espm_setup', 'dist/cli/espm.js', 'dist/cli/espm_setup.js', 'etc/espm.ini.example', 'docs/openapi.yaml']) {
      expect(paths).toContain(required);
    }
    expect(paths.some((p) => p.startsWith('dist/') && p.includes('test'))).toBe(false);

    const prefix = join(work, 'prefix');
    await execa('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', join(work, info!.filename)], {
      env: { npm_config_loglevel: 'error' },
    });
    const env = { PATH: `${join(prefix, 'bin')}:${process.env['PATH'] ?? ''}` };
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await execa('espm', ['--version'], { env })).stdout).toBe(pkg.version);
    expect((await execa('espm_setup', ['--version'], { env })).stdout).toBe(pkg.version);
    const config = await execa('espm_setup', ['-d', join(work, 'etc'), '--print-config'], { env });
    expect(config.stdout).toMatch(/^\[server\]$/m);
    // The ENC front finds the installed espm beside it (no owned directory here: it hands the name to `espm enc`).
    const front = await execa('espm-enc', ['-f', join(work, 'none', 'classification.json'), 'n1.example.test'], { env, reject: false });
    expect({ exitCode: front.exitCode, stderr: front.stderr }).toEqual({ exitCode: 1, stderr: expect.stringContaining('espm enc: cannot use the classification file') });
    const help = await execa('espm', ['ledger', '--help'], { env });
    expect(help.stdout).toContain('adopt <kind> <name>');
  }, 180_000);
});
