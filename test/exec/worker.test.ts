/**
 * src/exec/worker.ts: long-lived workers spawned like commands (absolute binary, argv array,
 * scrubbed environment), with stdin/stdout pipes, killed on request.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { spawnWorker } from '../../src/exec/worker.js';

const WORKER_MODULE = fileURLToPath(new URL('../../src/exec/worker.ts', import.meta.url));

function collect(): { chunks: Buffer[]; text: () => string } {
  const chunks: Buffer[] = [];
  return { chunks, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('spawnWorker', () => {
  it('talks over stdin/stdout and ends when its input is closed', async () => {
    const out = collect();
    const worker = spawnWorker({ file: '/bin/cat', args: [], onOutput: (c) => out.chunks.push(c) });
    expect(worker.pid).toEqual(expect.any(Number));
    expect(worker.send(Buffer.from('one\n'))).toBe(true);
    worker.send(Buffer.from([0xff, 0x0a]));
    worker.closeInput();
    expect(await worker.exited).toEqual({ exitCode: 0, signal: undefined, startError: undefined });
    expect(Buffer.concat(out.chunks)).toEqual(Buffer.from([...Buffer.from('one\n'), 0xff, 0x0a]));
    expect(worker.hasExited).toBe(true);
    expect(worker.send(Buffer.from('late'))).toBe(false);
  });

  it('gets the scrubbed environment plus its own variables, never espm\'s task variables', async () => {
    process.env['classes'] = 'leak';
    try {
      const out = collect();
      const worker = spawnWorker({ file: '/usr/bin/env', args: [], env: { RAILS_ENV: 'production' }, onOutput: (c) => out.chunks.push(c) });
      await worker.exited;
      const names = out.text().split('\n').filter((l) => l !== '').map((l) => l.split('=')[0]);
      expect(names).toContain('RAILS_ENV');
      expect(names).not.toContain('classes');
      expect(names.every((n) => ['RAILS_ENV', 'PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'USER', 'LOGNAME', 'TMPDIR'].includes(n!))).toBe(true);
    } finally {
      delete process.env['classes'];
    }
  });

  it('is killed on request (SIGTERM); keeps the tail of its stderr', async () => {
    const worker = spawnWorker({ file: '/bin/sh', args: ['-c', 'echo starting >&2; exec sleep 60'], onOutput: () => undefined });
    await new Promise((r) => setTimeout(r, 200));
    worker.kill();
    expect(await worker.exited).toMatchObject({ signal: 'SIGTERM', startError: undefined });
    expect(worker.stderrTail()).toBe('starting\n');
  });

  it('refuses a relative binary', () => {
    expect(() => spawnWorker({ file: 'ruby', args: [], onOutput: () => undefined })).toThrow(TypeError);
  });

  it('a binary that cannot start ends at once with startError, and kill() signals nobody (not espm\'s process group)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-worker-exec-'));
    try {
      // In a child process of its own group: a stray group kill would end it, not the tests.
      const script = join(dir, 'start-failure.mts');
      await writeFile(
        script,
        [
          `import { spawnWorker } from ${JSON.stringify(WORKER_MODULE)};`,
          "const w = spawnWorker({ file: '/nonexistent/bin/ruby', args: [], cwd: '/nonexistent/dir', onOutput: () => undefined });",
          'w.kill();',
          'const exit = await w.exited;',
          'w.kill();',
          'await new Promise((r) => setTimeout(r, 3000));',
          "console.log(JSON.stringify({ pid: w.pid ?? null, exit, alive: 'yes' }));",
        ].join('\n'),
      );
      const child = await execa(process.execPath, ['--import', 'tsx', script], { reject: false, detached: true, cwd: fileURLToPath(new URL('../../', import.meta.url)) });
      expect(child.signal).toBeUndefined();
      expect([child.exitCode, child.stderr]).toEqual([0, ""]);
      expect(JSON.parse(child.stdout)).toEqual({ pid: null, exit: { startError: 'ENOENT' }, alive: 'yes' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
