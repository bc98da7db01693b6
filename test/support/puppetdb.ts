/**
 * Test harness: a real, throw-away PostgreSQL 15 + PuppetDB 7.12.1 (Debian bookworm packages
 * `postgresql-15`, `puppetdb`, `puppet-terminus-puppetdb`) beside a real puppetserver
 * (test/support/puppetserver.ts) that stores facts, catalogs and reports in it.
 *
 * Follows docs/reference/real-puppetdb.md (`real-puppetdb.sh`): no systemd; `initdb` and
 * `postgres` as user postgres through `setpriv`, PuppetDB's JVM in the foreground on the
 * master's host certificate, TLS only; every process a detached child stopped by PID; all
 * state under one temporary directory; ports chosen free. PuppetDB needs 30–60 s to start
 * (about 500 MB RSS): start ONE per suite, in `beforeAll`.
 *
 * @packageDocumentation
 */
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { freePort } from './net.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver, type StartPuppetserverOptions } from './puppetserver.js';

/** PostgreSQL 15's binaries (Debian). */
const PG_BIN = '/usr/lib/postgresql/15/bin';
/** PuppetDB's uberjar and trapperkeeper bootstrap (Debian `puppetdb`). */
const PUPPETDB_JAR = '/usr/share/puppetdb/puppetdb.jar';
const PUPPETDB_BOOTSTRAP = '/etc/puppetdb/bootstrap.cfg';
const PUPPETDB_AUTH_CONF = '/etc/puppetdb/conf.d/auth.conf';
/** The puppetserver side of PuppetDB (Debian `puppet-terminus-puppetdb`). */
const TERMINUS = '/usr/lib/ruby/vendor_ruby/puppet/indirector/catalog/puppetdb.rb';
const SETPRIV = '/usr/bin/setpriv';
const PSQL = '/usr/bin/psql';
/** PuppetDB ready within this after its JVM is spawned, ms (measured 30–67 s on 2 cores). */
const PUPPETDB_STARTUP_MS = 180_000;
const DB_PASSWORD = 'puppetdb-test-password';

/** The component the PuppetDB suites need, for `describeWith`. */
export const PUPPETDB_COMPONENT =
  'PuppetDB + PostgreSQL + puppetserver (Debian packages puppetdb puppet-terminus-puppetdb postgresql-15 puppetserver puppet-agent)';

/** Undefined when PostgreSQL, PuppetDB and a puppetserver can be started here; else what is missing. */
export function puppetdbMissing(): string | undefined {
  const missing = [PUPPETDB_JAR, PUPPETDB_BOOTSTRAP, TERMINUS, `${PG_BIN}/initdb`, `${PG_BIN}/postgres`, `${PG_BIN}/pg_isready`, PSQL, SETPRIV].filter((f) => !existsSync(f));
  const server = puppetserverAvailable().reason;
  if (missing.length === 0 && server === undefined) return undefined;
  return [missing.length > 0 ? `missing ${missing.join(', ')}` : '', server ?? ''].filter((s) => s !== '').join('; ');
}

/** A running PuppetDB (and its PostgreSQL). */
export interface RealPuppetDb {
  /** `https://localhost:<port>` (the master's certificate is for `localhost`). */
  readonly url: string;
  readonly port: number;
  /** JVM stdout + stderr. */
  readonly logPath: string;
  /** Jetty's access log so far (`%h %u [%t] "%r" %s %b %D` per request; '' before the first). */
  accessLog(): Promise<string>;
  /** PID of PuppetDB's JVM now (changes after {@link RealPuppetDb.start}). */
  pid(): number | undefined;
  /**
   * `GET <path>` with the master's certificate (PuppetDB needs one on every path).
   *
   * @returns status and parsed JSON body (undefined when not JSON)
   */
  get(pathAndQuery: string): Promise<{ status: number; body: unknown }>;
  /** Stops PuppetDB's JVM (SIGTERM, then SIGKILL after 30 s); PostgreSQL keeps running. */
  stopPuppetDb(): Promise<void>;
  /** Starts PuppetDB's JVM again and waits until it is ready. */
  start(): Promise<void>;
  /** Stops PuppetDB and PostgreSQL and removes the temp directory. Never rejects. */
  stop(): Promise<void>;
}

/** A puppetserver storing its reports in a PuppetDB. */
export interface PuppetDbStack {
  server: RealPuppetserver;
  puppetdb: RealPuppetDb;
  /** Stops both. */
  stop(): Promise<void>;
}

/** Waits until `condition` holds, polling every `everyMs`. */
async function until(condition: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 500): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`startPuppetDbStack: ${what} not ready after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A detached child whose stdout/stderr go to `log`. */
function spawnLogged(file: string, args: string[], log: string): ResultPromise {
  const fd = openSync(log, 'a');
  const child = execa(file, args, { cwd: '/', detached: true, cleanup: false, reject: false, stdin: 'ignore', stdout: fd as unknown as 3, stderr: fd as unknown as 3 });
  closeSync(fd);
  return child;
}

/** Sends `signal` and waits up to `graceMs` for the child to end, then SIGKILL. */
async function stopChild(child: ResultPromise | undefined, signal: NodeJS.Signals, graceMs = 30_000): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child;
  clearTimeout(timer);
}

/**
 * Starts a puppetserver configured for PuppetDB (`options.puppetdb` set by this function),
 * then PostgreSQL 15 and PuppetDB on the server's certificates, and waits until both are ready.
 *
 * @param serverOptions - passed to {@link startPuppetserver} (enc, modules, auth rules, …)
 * @throws Error when a component is missing or does not become ready (with its log's tail);
 *   everything started is stopped again
 */
export async function startPuppetDbStack(serverOptions: StartPuppetserverOptions = {}): Promise<PuppetDbStack> {
  const missing = puppetdbMissing();
  if (missing !== undefined) throw new Error(`startPuppetDbStack: ${missing}`);
  const port = await freePort();
  const pgPort = await freePort();
  const url = `https://localhost:${port}`;
  const server = await startPuppetserver({ ...serverOptions, puppetdb: { url } });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'espm-puppetdb-'));
  await chmod(dir, 0o711); // postgres must traverse it, and every directory above it
  for (let up = path.dirname(dir); up !== path.dirname(up); up = path.dirname(up)) {
    if (((await stat(up)).mode & 0o001) === 0) {
      await rm(dir, { recursive: true, force: true });
      await server.stop();
      throw new Error(`startPuppetDbStack: ${up} is not traversable by others (chmod o+x it): PostgreSQL runs as user postgres under ${dir}`);
    }
  }
  const pg = path.join(dir, 'pg');
  const conf = path.join(dir, 'conf.d');
  const logPath = path.join(dir, 'puppetdb.out');
  const accessLogPath = path.join(dir, 'access.log');
  let postgres: ResultPromise | undefined;
  let jvm: ResultPromise | undefined;
  // Last resort if the test process ends without stop(): kill both by PID, remove the directory.
  const exitHook = (): void => {
    for (const child of [jvm, postgres]) {
      if (child?.pid === undefined) continue;
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', exitHook);
  let tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
  const get = (pathAndQuery: string): Promise<{ status: number; body: unknown }> =>
    new Promise((resolve, reject) => {
      // Jetty refuses a Host header that differs from the SNI name (400 "Host does not match SNI").
      const req = https.get({ host: '127.0.0.1', servername: 'localhost', headers: { host: `localhost:${port}` }, port, path: pathAndQuery, ...tls!, agent: false, timeout: 10_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined; // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  const startJvm = async (): Promise<void> => {
    jvm = spawnLogged('/usr/bin/java', ['-Xmx192m', '-Djava.security.egd=/dev/urandom', '-cp', PUPPETDB_JAR, 'clojure.main', '-m', 'puppetlabs.puppetdb.core', 'services', '--config', conf, '--bootstrap-config', PUPPETDB_BOOTSTRAP], logPath);
    const child = jvm;
    await until(async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`PuppetDB exited before it was ready:\n${(await readFile(logPath, 'utf8')).split('\n').slice(-40).join('\n')}`);
      const status = await get('/status/v1/services/puppetdb-status').catch(() => undefined);
      return (status?.body as { state?: string } | undefined)?.state === 'running';
    }, PUPPETDB_STARTUP_MS, 'PuppetDB');
  };
  const stopAll = async (): Promise<void> => {
    await stopChild(jvm, 'SIGTERM').catch(() => undefined);
    await stopChild(postgres, 'SIGINT').catch(() => undefined); // fast shutdown
    process.removeListener('exit', exitHook);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  };
  try {
    // The master's identity: PuppetDB serves with it and wants a client certificate.
    tls = {
      ca: await readFile(path.join(server.ssldir, 'certs', 'ca.pem')),
      cert: await readFile(path.join(server.ssldir, 'certs', 'localhost.pem')),
      key: await readFile(path.join(server.ssldir, 'private_keys', 'localhost.pem')),
    };
    // PostgreSQL: a throw-away cluster owned by postgres (recipe step 1).
    await mkdir(pg, { mode: 0o700 });
    await execa('chown', ['postgres:postgres', pg]);
    const asPostgres = [SETPRIV, '--reuid=postgres', '--regid=postgres', '--init-groups'];
    await execa(asPostgres[0]!, [...asPostgres.slice(1), `${PG_BIN}/initdb`, '-D', path.join(pg, 'data'), '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8'], { cwd: '/' });
    postgres = spawnLogged(asPostgres[0]!, [...asPostgres.slice(1), `${PG_BIN}/postgres`, '-D', path.join(pg, 'data'), '-k', pg, '-p', String(pgPort), '-c', 'listen_addresses=127.0.0.1'], path.join(dir, 'postgres.log'));
    await until(async () => (await execa(`${PG_BIN}/pg_isready`, ['-q', '-h', '127.0.0.1', '-p', String(pgPort)], { reject: false })).exitCode === 0, 30_000, 'PostgreSQL', 100);
    const psql = (database: string, sql: string) => execa(PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg, '-p', String(pgPort), '-U', 'postgres', '-d', database, '-c', sql]);
    await psql('postgres', `CREATE ROLE puppetdb LOGIN PASSWORD '${DB_PASSWORD}'`);
    await psql('postgres', "CREATE DATABASE puppetdb OWNER puppetdb ENCODING 'UTF8' TEMPLATE template0");
    await psql('puppetdb', 'CREATE EXTENSION pg_trgm');
    // PuppetDB's conf.d (recipe step 4): the master's certificate, TLS only.
    await mkdir(conf);
    await writeFile(path.join(dir, 'logback.xml'), '<configuration>\n <appender name="O" class="ch.qos.logback.core.ConsoleAppender"><encoder><pattern>%d{HH:mm:ss.SSS} %-5p [%c{2}] %m%n</pattern></encoder></appender>\n <root level="info"><appender-ref ref="O"/></root>\n</configuration>\n');
    await writeFile(path.join(conf, 'config.ini'), `[global]\nvardir = ${path.join(dir, 'var')}\nlogging-config = ${path.join(dir, 'logback.xml')}\n[command-processing]\n`);
    await writeFile(path.join(conf, 'database.ini'), `[database]\nsubname = //127.0.0.1:${pgPort}/puppetdb\nusername = puppetdb\npassword = ${DB_PASSWORD}\n`);
    await writeFile(
      path.join(conf, 'jetty.ini'),
      `[jetty]\nssl-host = 127.0.0.1\nssl-port = ${port}\nssl-key = ${path.join(server.ssldir, 'private_keys', 'localhost.pem')}\n` +
        `ssl-cert = ${path.join(server.ssldir, 'certs', 'localhost.pem')}\nssl-ca-cert = ${path.join(server.ssldir, 'certs', 'ca.pem')}\n` +
        `access-log-config = ${path.join(dir, 'request-logging.xml')}\n`,
    );
    await writeFile(
      path.join(dir, 'request-logging.xml'),
      `<configuration debug="false">\n <appender name="F" class="ch.qos.logback.core.FileAppender"><file>${accessLogPath}</file><encoder><pattern>%h %u [%t] "%r" %s %b %D</pattern></encoder></appender>\n <appender-ref ref="F"/>\n</configuration>\n`,
    );
    await copyFile(PUPPETDB_AUTH_CONF, path.join(conf, 'auth.conf'));
    await mkdir(path.join(dir, 'var'));
    await startJvm();
  } catch (err) {
    await stopAll();
    await server.stop();
    throw err;
  }
  const puppetdb: RealPuppetDb = {
    url,
    port,
    logPath,
    accessLog: () => readFile(accessLogPath, 'utf8').catch(() => ''),
    pid: () => jvm?.pid,
    get,
    stopPuppetDb: () => stopChild(jvm, 'SIGTERM'),
    start: startJvm,
    stop: stopAll,
  };
  return {
    server,
    puppetdb,
    async stop() {
      await puppetdb.stop();
      await server.stop();
    },
  };
}
