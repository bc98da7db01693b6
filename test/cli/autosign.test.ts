/**
 * `bin/espm autosign` as puppetserver runs it (certname argument, CSR on stdin): exit 0 only
 * on the daemon's `sign`; no daemon, a garbled answer, a bad command line → refused (never 0);
 * `fallback` → the site's previous policy runs with the certname and the CSR on its stdin, its
 * exit status passed through, killed at its timeout (refused). It loads no npm package.
 * The daemon's side here is a scripted socket; the real daemon is in test/e2e/token-signing.test.ts.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';

let dir: string;
let server: Server;
let socket: string;
let reply: string;
const received: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'espm-autosign-cli-'));
  socket = join(dir, 'espm.sock');
  server = createServer((c) => {
    let text = '';
    c.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) {
        received.push(text);
        c.end(reply);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  await writeFile(join(dir, 'fallback.sh'), `#!/bin/sh\ncat > ${dir}/fallback.stdin\necho "fallback saw $1" >&2\n[ "$1" = slow.example.test ] && exec sleep 5\nexit 3\n`);
  await chmod(join(dir, 'fallback.sh'), 0o755);
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const autosign = (args: string[]) => execa(ESPM, ['autosign', ...args], { input: CSR, reject: false });

describe('espm autosign', () => {
  it('sends certname and CSR; exits 0 only on sign', async () => {
    reply = '{"decision":"sign"}\n';
    const run = await autosign(['-s', socket, 'web01.example.test']);
    expect(run.exitCode).toBe(0);
    expect(JSON.parse(received.at(-1)!)).toEqual({ certname: 'web01.example.test', csr: CSR });
  });

  it('refuses with the reason on stderr', async () => {
    reply = '{"decision":"refuse","reason":"the token was used already"}\n';
    const run = await autosign(['-s', socket, 'web01.example.test']);
    expect({ exit: run.exitCode, stderr: run.stderr }).toEqual({ exit: 1, stderr: 'espm autosign: refused web01.example.test: the token was used already' });
  });

  it.each([
    ['a garbled answer', 'yes\n'],
    ['an unknown decision', '{"decision":"maybe"}\n'],
    ['a relative fallback', '{"decision":"fallback","fallback":"sh","timeout_ms":1000}\n'],
    ['no answer', ''],
  ])('refuses %s', async (_what, answer) => {
    reply = answer;
    expect((await autosign(['-s', socket, 'web01.example.test'])).exitCode).toBe(1);
  });

  it('refuses when no daemon listens, and on a bad command line', async () => {
    expect((await autosign(['-s', join(dir, 'none.sock'), 'web01.example.test'])).stderr).toMatch(/cannot reach the espm daemon .*ENOENT.*is it running/);
    expect((await autosign(['-s', 'relative.sock', 'web01.example.test'])).exitCode).toBe(2);
    expect((await autosign(['-s', socket])).exitCode).toBe(2);
  });

  it('runs the fallback with the certname and the CSR on stdin, passing its exit status through; kills it at the timeout', async () => {
    reply = `${JSON.stringify({ decision: 'fallback', fallback: join(dir, 'fallback.sh'), timeout_ms: 2000 })}\n`;
    const run = await autosign(['-s', socket, 'legacy.example.test']);
    expect({ exit: run.exitCode, stderr: run.stderr }).toEqual({ exit: 3, stderr: 'fallback saw legacy.example.test' });
    expect(await readFile(join(dir, 'fallback.stdin'), 'utf8')).toBe(CSR);
    const slow = await autosign(['-s', socket, 'slow.example.test']);
    expect(slow.exitCode).toBe(1);
    expect(slow.stderr).toMatch(/did not finish within 2 s and was killed; refused/);
  });

  it('loads no npm package (no express, pino, commander or X.509 library)', async () => {
    const script = `
      import { createRequire } from 'node:module';
      await import('./dist/cli/autosign.js');
      console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('node_modules'))));
    `;
    const { stdout } = await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    expect(JSON.parse(stdout)).toEqual([]);
  });
});
