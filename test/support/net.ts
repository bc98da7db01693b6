/**
 * Test support: network helpers shared by tests, the demo and the benches.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * A TCP port that was free on 127.0.0.1 a moment ago (bound, read, released).
 *
 * @returns the port number
 */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}
