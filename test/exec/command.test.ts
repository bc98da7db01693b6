import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CommandStartError,
  CommandTimeoutError,
  ExecaCommandRunner,
  PASSED_ENVIRONMENT,
} from '../../src/exec/command.js';

describe('ExecaCommandRunner', () => {
  const runner = new ExecaCommandRunner();
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-exec-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('passes each argument verbatim, without a shell', async () => {
    const args = ['$(touch pwned)', '; rm -rf /', 'a b', "it's", '*', 'name=a,b', ''];
    const result = await runner.run({ file: '/usr/bin/printf', args: ['%s\\n', ...args], timeoutMs: 5000, cwd: dir });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(args.map((a) => `${a}\n`).join(''));
    await expect(import('node:fs/promises').then((fs) => fs.stat(join(dir, 'pwned')))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('returns non-zero exits with stdout and stderr instead of throwing', async () => {
    const result = await runner.run({
      file: '/bin/sh',
      args: ['-c', 'echo out; echo err >&2; exit 3'],
      timeoutMs: 5000,
    });
    expect(result).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
    expect(result.durationMs).toEqual(expect.any(Number));
  });

  it('rebuilds the environment from an allow-list: nothing else of espm\'s reaches the command', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { name: 'evil', classes: 'evil', groups: 'evil', parameters: 'x=1', RUBYOPT: '-revil' });
    try {
      const result = await runner.run({ file: '/usr/bin/env', args: [], timeoutMs: 5000, env: { RAILS_ENV: 'production' } });
      const names = result.stdout.trim().split('\n').map((l) => l.split('=')[0]);
      for (const name of names) expect([...PASSED_ENVIRONMENT, 'RAILS_ENV']).toContain(name);
      expect(result.stdout).toContain('RAILS_ENV=production\n');
      expect(result.stdout).not.toContain('evil');
    } finally {
      process.env = saved;
    }
  });

  it('kills a command at its timeout', async () => {
    const started = Date.now();
    const error = await runner.run({ file: '/bin/sleep', args: ['30'], timeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect((error as Error).message).toBe('/bin/sleep did not finish within 300 ms and was killed');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('kills a command that ignores SIGTERM, after the grace period', async () => {
    const script = join(dir, 'stubborn.sh');
    await writeFile(script, '#!/bin/sh\ntrap "" TERM\necho started\nwhile :; do sleep 0.1; done\n');
    await chmod(script, 0o755);
    const error = await runner.run({ file: script, args: [], timeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandTimeoutError);
    expect((error as CommandTimeoutError).stdout).toBe('started\n');
  });

  it('reports a missing binary as a start error', async () => {
    await expect(runner.run({ file: '/nonexistent/rake', args: [], timeoutMs: 1000 })).rejects.toBeInstanceOf(CommandStartError);
    await expect(runner.run({ file: '/nonexistent/rake', args: [], timeoutMs: 1000 })).rejects.toThrow(
      /cannot run \/nonexistent\/rake: ENOENT/,
    );
  });

  it('refuses relative binaries and missing timeouts before running anything', async () => {
    await expect(runner.run({ file: 'rake', args: [], timeoutMs: 1000 })).rejects.toThrow(TypeError);
    await expect(runner.run({ file: '/bin/true', args: [], timeoutMs: 0 })).rejects.toThrow(TypeError);
  });
});
