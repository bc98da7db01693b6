/**
 * A real `bin/espm` on sandbox backends for the connection tests (issue #18,
 * test/http/connection-limits.test.ts), and a client that talks to it from chosen loopback
 * addresses: TLS connections pinned to its certificate, floods of them, requests, and espm's
 * RSS, file descriptors and `GET /v1/status` `connections` counts.
 *
 * Linux routes all of 127.0.0.0/8 to loopback, so a client socket bound to 127.0.0.2 reaches
 * espm on 127.0.0.1 from another address.
 */
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { expect } from '@jest/globals';
import { execa, type ResultPromise } from 'execa';
import { setUpDir, type SetUpDir } from './espm.js';
import { freePort } from './net.js';

const ESPM = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin', 'espm');

/** A running bin/espm: its set-up directory, process, port, pid and output so far. */
export interface Daemon {
  setup: SetUpDir;
  child: ResultPromise;
  port: number;
  pid: number;
  output: () => string;
}

/** `GET /v1/status`'s `connections` (docs/openapi.yaml). */
export interface Counts {
  open: number;
  refused: { total: number; per_address_limit: number; total_limit: number; not_allowed: number };
  timed_out: { handshake: number; first_request: number; request: number };
  memory_releases: number;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Sets up a directory and spawns bin/espm on it (sandbox backends, info log); waits for its
 * `listening` line.
 *
 * @param server - `[server]` keys on top of a free port
 * @throws Error with espm's output when it exits or does not listen within 20 s
 */
export async function startDaemon(server: Record<string, string | number>): Promise<Daemon> {
  const setup = await setUpDir();
  await setup.editConfig({
    server: { port: await freePort(), ...server },
    classifier: { backend: 'sandbox', worker: 'off' },
    ca: { backend: 'sandbox' },
    log: { level: 'info' },
  });
  const child = execa(ESPM, ['-c', setup.plan.configPath], { reject: false });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const deadline = Date.now() + 20_000;
  while (!out.includes('"msg":"listening"')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`espm did not start:\n${out}`);
    await sleep(25);
  }
  const port = Number(/"port":(\d+)/.exec(out)?.[1]);
  return { setup, child, port, pid: child.pid!, output: () => out };
}

/** Seconds until `socket` closes (measured from `since`, ms), at most `limitS`. */
export async function closedAfter(socket: Socket, since: number, limitS: number): Promise<number> {
  if (!socket.destroyed) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([once(socket, 'close'), new Promise((r) => (timer = setTimeout(r, limitS * 1000)))]);
    clearTimeout(timer);
  }
  return (Date.now() - since) / 1000;
}

/**
 * The client of whichever daemon `current()` returns at each call.
 *
 * @param current - the daemon to talk to
 * @param platform - the address `counts()` calls from
 */
export function connectionClient(current: () => Daemon, platform: string) {
  /** espm's resident set size, MB (/proc/<pid>/status VmRSS). */
  async function rssMb(): Promise<number> {
    const status = await readFile(`/proc/${current().pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
  }

  /** espm's open file descriptors. */
  async function fds(): Promise<number> {
    return (await readdir(`/proc/${current().pid}/fd`)).length;
  }

  /**
   * A TLS connection from `from`, pinned to espm's certificate: the socket once its handshake
   * completed, or null when espm refused it.
   */
  function openTls(from: string): Promise<TLSSocket | null> {
    const espm = current();
    return new Promise((resolve) => {
      const raw = netConnect({ host: '127.0.0.1', port: espm.port, localAddress: from });
      raw.on('error', () => undefined);
      const socket = tlsConnect({ socket: raw, ca: espm.setup.plan.certificate, servername: 'localhost' });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', () => resolve(null));
      socket.once('close', () => resolve(null));
    });
  }

  /** Opens `count` connections from `from`, `batch` at a time; returns those espm kept. */
  async function flood(from: string, count: number, batch = 100): Promise<{ kept: TLSSocket[]; refused: number }> {
    const kept: TLSSocket[] = [];
    let refused = 0;
    for (let done = 0; done < count; done += batch) {
      const sockets = await Promise.all(Array.from({ length: Math.min(batch, count - done) }, () => openTls(from)));
      for (const s of sockets) {
        if (s === null) refused += 1;
        else {
          s.on('error', () => undefined);
          kept.push(s);
        }
      }
    }
    return { kept, refused };
  }

  /** One request on a new connection from `from`; status, parsed body, ms. */
  function call(from: string, path: string, auth = true): Promise<{ status: number; body: Record<string, unknown>; ms: number; contentType: string }> {
    const espm = current();
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: espm.port,
          path,
          localAddress: from,
          ca: espm.setup.plan.certificate,
          servername: 'localhost',
          agent: false,
          headers: auth ? { authorization: `Bearer ${espm.setup.plan.psk}` } : {},
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, ms: Date.now() - started, contentType: String(res.headers['content-type']) }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  /** `GET /v1/status`'s `connections`, asked from the platform's address (expects 200). */
  async function counts(): Promise<Counts> {
    const res = await call(platform, '/v1/status');
    expect(res.status).toBe(200);
    return res.body['connections'] as Counts;
  }

  return { rssMb, fds, openTls, flood, call, counts };
}
