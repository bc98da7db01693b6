/**
 * Test support: a throw-away PKI made with `openssl` (a CA, a server certificate for
 * `localhost`, a client certificate, and a second CA that trusts nothing of the first), and a
 * mutual-TLS `node:https` server on 127.0.0.1 that counts its hits. For the Puppet HTTPS
 * client's tests and the CA adapters' unreachable-service tests.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { execa } from 'execa';

/** Paths and PEM contents of the test PKI. */
export interface TestPki {
  dir: string;
  /** CA certificate path / PEM. */
  caPath: string;
  ca: string;
  /** A second, unrelated CA (PEM): a client trusting only it must refuse the server. */
  otherCa: string;
  otherCaPath: string;
  serverCert: string;
  serverKey: string;
  /** Client certificate (CN `master.example.test`) and key, paths and PEM. */
  clientCertPath: string;
  clientKeyPath: string;
  clientCert: string;
  clientKey: string;
  remove(): Promise<void>;
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  await execa('openssl', args, { cwd });
}

/** Makes the PKI in a temporary directory (RSA 2048, one day). */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'espm-pki-'));
  const ca = async (name: string, cn: string): Promise<void> =>
    openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
  await ca('ca', 'Puppet CA: test');
  await ca('other-ca', 'Puppet CA: other');
  const leaf = async (name: string, cn: string, ext: string): Promise<void> => {
    await writeFile(join(dir, `${name}.ext`), ext);
    await openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    await openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  };
  await leaf('server', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await leaf('client', 'master.example.test', 'extendedKeyUsage=clientAuth\n');
  const read = (name: string): Promise<string> => readFile(join(dir, name), 'utf8');
  return {
    dir,
    caPath: join(dir, 'ca.pem'),
    ca: await read('ca.pem'),
    otherCa: await read('other-ca.pem'),
    otherCaPath: join(dir, 'other-ca.pem'),
    serverCert: await read('server.pem'),
    serverKey: await read('server.key'),
    clientCertPath: join(dir, 'client.pem'),
    clientKeyPath: join(dir, 'client.key'),
    clientCert: await read('client.pem'),
    clientKey: await read('client.key'),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** One request the test server saw. */
export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** Subject CN of the client certificate presented, or undefined when none. */
  clientCn: string | undefined;
}

/** A mutual-TLS (client certificate optional) HTTPS server for tests. */
export interface TestHttpsServer {
  port: number;
  /** `https://localhost:PORT` */
  url: string;
  /** Every request, in order. */
  seen: SeenRequest[];
  /** Hits per path. */
  hits(path: string): number;
  close(): Promise<void>;
}

/**
 * Starts an HTTPS server on 127.0.0.1 that asks for (but does not require) a client
 * certificate signed by the test CA, records each request, then lets `handler` answer.
 */
export async function startTestHttpsServer(
  pki: TestPki,
  handler: (req: SeenRequest, res: ServerResponse) => void,
  options: ServerOptions = {},
): Promise<TestHttpsServer> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer(
    { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false, ...options },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const socket = req.socket as TLSSocket;
        const peer = socket.authorized ? socket.getPeerCertificate() : undefined;
        const request: SeenRequest = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          clientCn: peer?.subject?.CN as string | undefined,
        };
        seen.push(request);
        handler(request, res);
      });
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `https://localhost:${port}`,
    seen,
    hits: (path) => seen.filter((r) => r.path === path).length,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
