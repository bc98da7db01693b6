/**
 * Test harness: a real, throw-away Puppet Server (Debian bookworm packages `puppetserver` 7.9.5
 * and `puppet-agent` 7.23) with all of its state under one temporary directory.
 *
 * Follows docs/reference/real-puppetserver.md (`real-puppetserver.sh`): no systemd, the JVM runs in the foreground as a detached child
 * of the test process, the CA is created offline with `puppetserver ca setup`, and agents use
 * pre-generated certificates (no CSR, no signing wait).
 *
 * Startup takes 20–30 s on 2 cores and the JVM needs about 850 MB RSS (`-Xmx1g`), so start at
 * most one per test file, in `beforeAll`, with a jest timeout of about 180 s.
 *
 * @packageDocumentation
 */
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

/** Launcher script of the Debian `puppetserver` package (dispatches `puppetserver ca …`). */
export const PUPPETSERVER_BIN = '/usr/bin/puppetserver';
/** The Puppet Server uberjar run by {@link startPuppetserver}. */
export const PUPPETSERVER_JAR = '/usr/share/puppetserver/puppetserver.jar';
/** Java runtime used to start the server. */
export const JAVA_BIN = '/usr/bin/java';
/** Packaged configuration copied into every test server (auth.conf, ca.conf, …). */
export const PACKAGED_CONF_D = '/etc/puppet/puppetserver/conf.d';
/** Packaged trapperkeeper bootstrap config (services to load). */
export const PACKAGED_SERVICES_D = '/etc/puppet/puppetserver/services.d';

/** Default Puppet Server port; used when it is free and no other port is requested. */
export const DEFAULT_PUPPETSERVER_PORT = 8140;
/** Upper bound, in milliseconds, for the server to report `running` after the JVM is spawned. */
export const STARTUP_TIMEOUT_MS = 120_000;
/** How long, in milliseconds, {@link RealPuppetserver.stop} waits after SIGTERM before SIGKILL. */
export const STOP_TIMEOUT_MS = 30_000;

const SERVER_NAME = 'localhost';
const PUPPETSERVER_CWD = '/usr/share/puppetserver';
/** Per-command timeout for `puppetserver ca` and `puppet agent` (milliseconds). */
const COMMAND_TIMEOUT_MS = 180_000;

/**
 * Result of {@link puppetserverAvailable}.
 * `reason` is set (and lists every missing piece) exactly when `available` is false.
 */
export interface PuppetserverAvailability {
  available: boolean;
  reason?: string;
}

/** Absolute path of the `puppet` executable found on `PATH` (or `/usr/bin/puppet`), or undefined. */
function findPuppet(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of [...dirs, '/usr/bin']) {
    const candidate = path.join(dir, 'puppet');
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * Whether a real Puppet Server can be started here: true when `/usr/bin/puppetserver`,
 * `/usr/share/puppetserver/puppetserver.jar`, `/usr/bin/java` and a `puppet` executable (on
 * `PATH`) all exist. Never throws.
 *
 * @returns `{ available: true }`, or `{ available: false, reason }` naming what is missing (use
 *   the reason in a visible skip message).
 */
export function puppetserverAvailable(): PuppetserverAvailability {
  const missing: string[] = [];
  for (const file of [PUPPETSERVER_BIN, PUPPETSERVER_JAR, JAVA_BIN]) {
    if (!existsSync(file)) missing.push(file);
  }
  if (findPuppet() === undefined) missing.push('puppet (not on PATH)');
  if (missing.length === 0) return { available: true };
  return {
    available: false,
    reason:
      `missing ${missing.join(', ')}; install the Debian packages with ` +
      '`apt-get install --no-install-recommends puppetserver puppet-agent`',
  };
}

/** Options of {@link startPuppetserver}. All are optional. */
export interface StartPuppetserverOptions {
  /**
   * An executable ENC (`node_terminus = exec`, `external_nodes = enc`): an absolute path, or a
   * command line whose first word is one (Puppet splits it on whitespace and appends the
   * certname). It prints YAML on stdout.
   * Without it the default `plain` node terminus is used (every node gets an empty node).
   */
  enc?: string;
  /**
   * auth.conf rules (HOCON objects, e.g. `{ match-request: {…}, allow: "localhost", sort-order: 500, name: "…" }`)
   * added before the packaged deny-all rule.
   */
  authRules?: string[];
  /**
   * Modules for the `production` environment: module name (`[a-z][a-z0-9_]*`) → content of its
   * `manifests/init.pp`.
   */
  modules?: Record<string, string>;
  /**
   * TCP port (on 127.0.0.1) for the server. Omitted: 8140 when free, else an ephemeral free port.
   * `0`: always an ephemeral free port. Any other value is used as is and must be free
   * (otherwise {@link startPuppetserver} rejects). The chosen port is also reserved against
   * other harness instances on the machine (lock file `$TMPDIR/espm-puppetserver-port-<port>.lock`
   * until `stop()`), since parallel jest workers would otherwise race for 8140.
   */
  port?: number;
  /**
   * Set `certificate-authority.allow-subject-alt-names: true` in `ca.conf`, so that the CA signs
   * CSRs with subject alt names (e.g. `puppetserver ca generate --subject-alt-names …`).
   * Default false: the stock CA refuses such CSRs with HTTP 409.
   */
  allowSubjectAltNames?: boolean;
  /**
   * Store facts, catalogs and reports in PuppetDB (docs/reference/real-puppetdb.md, step 2):
   * `[server] storeconfigs = true`, `storeconfigs_backend = puppetdb`, `reports = puppetdb`,
   * `etc/puppetdb.conf` `[main] server_urls = <url>`, `etc/routes.yaml` (facts terminus
   * `puppetdb`, cache `yaml`). Needs the Debian package `puppet-terminus-puppetdb`. PuppetDB
   * itself is started separately (test/support/puppetdb.ts), on the server's certificates.
   */
  puppetdb?: { url: string };
  /**
   * Policy-based autosigning: `[server] autosign = <path>` (an absolute path of an executable:
   * certname argument, CSR on stdin, exit 0 = sign). Default `autosign = false`.
   */
  autosign?: string;
}

/**
 * Outcome of one command run by the harness. Non-zero exit codes never throw.
 * `exitCode` is `-1` when the process was killed by a signal or timed out (see `signal`).
 */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Signal that terminated the process, if any (e.g. `SIGTERM` after a timeout). */
  signal?: string;
  /** Wall-clock duration in milliseconds. */
  durationMs: number;
}

/** PEM texts (not paths) installed by {@link RealPuppetserver.installAgentCertificate}. */
export interface AgentCertificate {
  /** The node's certificate (PEM). */
  certificate: string;
  /** The node's private key (PEM). */
  privateKey: string;
  /** The whole CA bundle (PEM), typically the server's `certs/ca.pem`. */
  caCertificate: string;
  /** Optional CRL (PEM), typically the server's `crl.pem`. */
  crl?: string;
}

/**
 * A running Puppet Server started by {@link startPuppetserver}. Paths are absolute.
 * Server name and certname are `localhost`; it listens on `127.0.0.1:<port>` only.
 */
export interface RealPuppetserver {
  /** Temporary directory holding all of the server's state (removed by `stop()`). */
  readonly dir: string;
  /** The server's `puppet.conf` (pass as `--config` to `puppetserver ca`). */
  readonly confPath: string;
  /** Server ssldir: `certs/ca.pem`, `crl.pem`, and the `certs/`/`private_keys/`/`public_keys/` copies written by `ca generate`. */
  readonly ssldir: string;
  /** CA directory (`ca_crt.pem`, `ca_key.pem`, `ca_crl.pem`, `signed/`, `inventory.txt`, …). */
  readonly cadir: string;
  /** HTTPS port the server listens on (127.0.0.1). */
  readonly port: number;
  /** Jetty access log (`%h %u [%t] "%r" %s %b %D` per request). */
  readonly accessLogPath: string;
  /** JVM stdout + stderr (logback console output). */
  readonly serverLogPath: string;
  /** Process id of the JVM. */
  readonly pid: number;
  /** Milliseconds from spawning the JVM until `/status/v1/simple` answered `running`. */
  readonly startupMs: number;
  /**
   * Run `/usr/bin/puppetserver ca <args…> --config <confPath>`.
   * @param args - e.g. `['generate', '--certname', 'node1.example.test']`.
   * @returns the outcome; a non-zero exit code does not reject (see {@link CommandResult}).
   */
  caCli(args: string[]): Promise<CommandResult>;
  /**
   * Run one `puppet agent --onetime --no-daemonize --detailed-exitcodes` against this server,
   * with confdir/vardir/ssldir/logdir/rundir at `agentDir/{etc,var,ssl,log,run}` (created if
   * missing; `etc/puppet.conf` is created empty). Exit codes: 0 no change, 2 changes,
   * 4 failures, 6 changes + failures, 1 run failed (e.g. revoked/unknown certificate).
   * @param certname - the node's certname.
   * @param agentDir - absolute directory for the agent's state.
   * @param extraArgs - appended to the command line (e.g. `['--skip_tags', 'notify']`).
   */
  agent(certname: string, agentDir: string, extraArgs?: string[]): Promise<CommandResult>;
  /**
   * Write a pre-generated certificate into `agentDir/ssl` like the recipe: `ssl/` 0771,
   * `certs/` 0755 (`<certname>.pem`, `ca.pem`: 0644), `private_keys/` 0750
   * (`<certname>.pem`: 0640), `crl.pem` 0644 when given. Overwrites existing files.
   */
  installAgentCertificate(agentDir: string, certname: string, material: AgentCertificate): Promise<void>;
  /** Current content of the access log (`''` while it does not exist yet). */
  accessLog(): Promise<string>;
  /**
   * Stop the server: SIGTERM to the JVM, wait up to 30 s for it to exit, then SIGKILL (process
   * group). Idempotent (later calls return the same promise). Then removes {@link dir} unless the
   * environment variable `ESPM_KEEP_PUPPETSERVER` is set (non-empty). Never rejects.
   */
  stop(): Promise<void>;
}

function keepDir(): boolean {
  return Boolean(process.env.ESPM_KEEP_PUPPETSERVER);
}

/** Resolve with true when `port` can be bound on 127.0.0.1. */
function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/** An ephemeral port that was free on 127.0.0.1 a moment ago. */
function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not obtain a free port'))));
    });
  });
}

/**
 * Reserve `port` among harness instances on this machine (other jest workers or sessions): the
 * JVM binds only 20-60 s after the port was found free, so a free-port check alone races.
 * The reservation is a lock file in the temp dir holding our pid; a lock whose owner is dead
 * is taken over. Returns the lock file path, or undefined when another live process holds it.
 */
function lockPort(port: number): string | undefined {
  const file = path.join(os.tmpdir(), `espm-puppetserver-port-${port}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner = Number.NaN;
      try {
        owner = Number(readFileSync(file, 'utf8').trim());
      } catch {
        // vanished or unreadable: treat as stale
      }
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) return undefined;
      rmSync(file, { force: true });
    }
  }
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlockPort(lockFile: string | undefined): void {
  if (lockFile === undefined) return;
  try {
    if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) rmSync(lockFile, { force: true });
  } catch {
    // already gone
  }
}

/** Pick (and reserve, see {@link lockPort}) the port; see {@link StartPuppetserverOptions.port}. */
async function choosePort(requested: number | undefined): Promise<{ port: number; lockFile: string }> {
  if (requested !== undefined && requested !== 0) {
    if (!Number.isInteger(requested) || requested < 1 || requested > 65535) {
      throw new Error(`startPuppetserver: invalid port ${requested}`);
    }
    const lockFile = lockPort(requested);
    if (lockFile === undefined) {
      throw new Error(`startPuppetserver: port ${requested} is reserved by another test puppetserver`);
    }
    if (!(await isPortFree(requested))) {
      unlockPort(lockFile);
      throw new Error(`startPuppetserver: port ${requested} on 127.0.0.1 is already in use`);
    }
    return { port: requested, lockFile };
  }
  if (requested === undefined) {
    const lockFile = lockPort(DEFAULT_PUPPETSERVER_PORT);
    if (lockFile !== undefined) {
      if (await isPortFree(DEFAULT_PUPPETSERVER_PORT)) return { port: DEFAULT_PUPPETSERVER_PORT, lockFile };
      unlockPort(lockFile);
    }
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await ephemeralPort();
    const lockFile = lockPort(port);
    if (lockFile !== undefined) return { port, lockFile };
  }
  throw new Error('startPuppetserver: could not reserve a free port');
}

/** One GET of `/status/v1/simple`; resolves with the body or undefined on any error. */
function probeStatus(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        servername: SERVER_NAME,
        port,
        path: '/status/v1/simple',
        // Jetty rejects a Host header that differs from the SNI name (400 "Host does not match SNI").
        headers: { host: `${SERVER_NAME}:${port}` },
        rejectUnauthorized: false,
        timeout: 2_000,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body.trim()));
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

async function tail(file: string, lines = 60): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch (error) {
    return `(no server log: ${(error as Error).message})`;
  }
}

/** Quote a string for HOCON (JSON string syntax is valid HOCON). */
function hocon(value: string): string {
  return JSON.stringify(value);
}

async function run(file: string, args: string[], cwd?: string): Promise<CommandResult> {
  const started = Date.now();
  const result = await execa(file, args, {
    reject: false,
    stdin: 'ignore',
    timeout: COMMAND_TIMEOUT_MS,
    ...(cwd === undefined ? {} : { cwd }),
  });
  const out: CommandResult = {
    exitCode: typeof result.exitCode === 'number' ? result.exitCode : -1,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    durationMs: Date.now() - started,
  };
  if (result.signal) out.signal = result.signal;
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Start a throw-away Puppet Server and wait until it is ready.
 *
 * Writes `puppet.conf` (everything in `[main]`: certname = server = localhost, ssldir, cadir,
 * vardir, rundir, logdir, codedir under a new temp dir, `masterport` and `ca_port` = port;
 * `[server]`: `autosign = false` and the exec ENC when `options.enc` is given), the
 * trapperkeeper `conf.d` (copies of the packaged auth/ca/metrics/web-routes.conf, plus
 * puppetserver/global/webserver.conf with `ssl-protocols: [TLSv1.2]` and an access log), runs
 * `puppetserver ca setup` offline, spawns the JVM (`-Xms512m -Xmx1g`, one JRuby instance) and
 * polls `https://127.0.0.1:<port>/status/v1/simple` every 0.5 s until it answers `running`.
 *
 * The JVM is killed (SIGKILL) when the Node process exits, in case `stop()` is never called.
 *
 * @param options - see {@link StartPuppetserverOptions}.
 * @returns the running server; call `stop()` (e.g. in `afterAll`).
 * @throws Error when the prerequisites are missing, `options` are invalid, the port is taken,
 *   `ca setup` fails, the JVM exits before it is ready, or it is not ready within 120 s; the
 *   message then holds the tail of the server log. On failure the JVM is killed and the temp
 *   dir removed (unless `ESPM_KEEP_PUPPETSERVER` is set).
 */
export async function startPuppetserver(options: StartPuppetserverOptions = {}): Promise<RealPuppetserver> {
  const availability = puppetserverAvailable();
  if (!availability.available) throw new Error(`startPuppetserver: ${availability.reason}`);
  const puppet = findPuppet() as string;

  if (options.enc !== undefined) {
    // Puppet splits external_nodes on whitespace: the first word is the executable.
    const encFile = options.enc.split(/\s+/)[0]!;
    if (!path.isAbsolute(encFile)) throw new Error(`startPuppetserver: enc must be an absolute path: ${options.enc}`);
    try {
      accessSync(encFile, fsConstants.X_OK);
    } catch {
      throw new Error(`startPuppetserver: enc is not an executable file: ${encFile}`);
    }
  }
  for (const name of Object.keys(options.modules ?? {})) {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`startPuppetserver: invalid module name ${JSON.stringify(name)}`);
  }

  const { port, lockFile } = await choosePort(options.port);
  let dir: string;
  try {
    dir = await mkdtemp(path.join(os.tmpdir(), 'espm-puppetserver-'));
  } catch (error) {
    unlockPort(lockFile);
    throw error;
  }
  const etc = path.join(dir, 'etc');
  const confD = path.join(dir, 'conf.d');
  const code = path.join(dir, 'code');
  const vardir = path.join(dir, 'var');
  const rundir = path.join(dir, 'run');
  const logdir = path.join(dir, 'log');
  const ssldir = path.join(dir, 'ssl');
  const cadir = path.join(dir, 'ca');
  const confPath = path.join(etc, 'puppet.conf');
  const accessLogPath = path.join(logdir, 'access.log');
  const serverLogPath = path.join(logdir, 'server.out');
  const modulesDir = path.join(code, 'environments', 'production', 'modules');

  let pid: number | undefined;
  let exited: Promise<void> | undefined;
  let logFd: number | undefined;
  let exitHook: (() => void) | undefined;

  const cleanupAfterFailure = async (): Promise<void> => {
    if (pid !== undefined) killQuietly(pid, 'SIGKILL', true);
    if (exited) await exited;
    if (exitHook) process.removeListener('exit', exitHook);
    if (logFd !== undefined) closeSync(logFd);
    unlockPort(lockFile);
    if (!keepDir()) await rm(dir, { recursive: true, force: true });
  };

  try {
    for (const d of [etc, confD, vardir, rundir, logdir, path.join(code, 'environments', 'production', 'manifests'), modulesDir]) {
      await mkdir(d, { recursive: true });
    }

    // puppet.conf: read by the JRuby Puppet inside the server AND by `puppetserver ca --config`
    // (which merges all sections); Debian hard-wires ssldir/cadir, so set everything explicitly.
    const serverSection = ['[server]'];
    if (options.enc !== undefined) serverSection.push('node_terminus = exec', `external_nodes = ${options.enc}`);
    serverSection.push(`autosign = ${options.autosign ?? 'false'}`);
    if (options.puppetdb !== undefined) {
      serverSection.push('storeconfigs = true', 'storeconfigs_backend = puppetdb', 'reports = puppetdb');
      await mkdir(etc, { recursive: true });
      await writeFile(path.join(etc, 'puppetdb.conf'), `[main]\nserver_urls = ${options.puppetdb.url}\n`);
      await writeFile(path.join(etc, 'routes.yaml'), '---\nmaster:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n');
    }
    await writeFile(
      confPath,
      [
        '[main]',
        `certname = ${SERVER_NAME}`,
        `server = ${SERVER_NAME}`,
        `masterport = ${port}`,
        `ca_port = ${port}`,
        `ssldir = ${ssldir}`,
        `cadir = ${cadir}`,
        `vardir = ${vardir}`,
        `rundir = ${rundir}`,
        `logdir = ${logdir}`,
        `codedir = ${code}`,
        ...serverSection,
        '',
      ].join('\n'),
    );

    for (const file of ['auth.conf', 'metrics.conf', 'web-routes.conf']) {
      await copyFile(path.join(PACKAGED_CONF_D, file), path.join(confD, file));
    }
    if ((options.authRules ?? []).length > 0) {
      const auth = await readFile(path.join(confD, 'auth.conf'), 'utf8');
      const rulesStart = /rules:\s*\[/.exec(auth);
      if (rulesStart === null) throw new Error('startPuppetserver: no `rules: [` in the packaged auth.conf');
      const at = rulesStart.index + rulesStart[0].length;
      await writeFile(path.join(confD, 'auth.conf'), `${auth.slice(0, at)}\n${options.authRules!.join('\n')}\n${auth.slice(at)}`);
    }
    let caConf = await readFile(path.join(PACKAGED_CONF_D, 'ca.conf'), 'utf8');
    if (options.allowSubjectAltNames) {
      const line = /^([ \t]*)#?[ \t]*allow-subject-alt-names[ \t]*[:=][ \t]*(?:true|false)[ \t]*$/m;
      caConf = line.test(caConf)
        ? caConf.replace(line, '$1allow-subject-alt-names: true')
        : `${caConf}\ncertificate-authority.allow-subject-alt-names: true\n`;
    }
    await writeFile(path.join(confD, 'ca.conf'), caConf);

    await writeFile(
      path.join(confD, 'puppetserver.conf'),
      `jruby-puppet: {
    ruby-load-path: ["/usr/lib/puppetserver/ruby/vendor_ruby"]
    gem-home: ${hocon(path.join(vardir, 'jruby-gems'))}
    gem-path: [\${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: ${hocon(etc)}
    server-code-dir: ${hocon(code)}
    server-var-dir: ${hocon(vardir)}
    server-run-dir: ${hocon(rundir)}
    server-log-dir: ${hocon(logdir)}
    max-active-instances: 1
}
http-client: {}
profiler: {}
`,
    );
    const logbackPath = path.join(dir, 'logback.xml');
    const requestLoggingPath = path.join(dir, 'request-logging.xml');
    await writeFile(path.join(confD, 'global.conf'), `global: { logging-config: ${hocon(logbackPath)} }\n`);
    // ssl-protocols TLSv1.2: with TLS 1.3, `puppetserver ca clean` can stall 30 s (Ruby keep-alive
    // after a 204 waits for Jetty's idle timeout).
    await writeFile(
      path.join(confD, 'webserver.conf'),
      `webserver: {
    access-log-config: ${hocon(requestLoggingPath)}
    client-auth: want
    ssl-host: 127.0.0.1
    ssl-port: ${port}
    ssl-protocols: [TLSv1.2]
}
`,
    );
    await writeFile(
      logbackPath,
      `<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5p [%c{2}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="STDOUT"/></root>
</configuration>
`,
    );
    await writeFile(
      requestLoggingPath,
      `<configuration debug="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${accessLogPath}</file>
    <encoder><pattern>%h %u [%t] "%r" %s %b %D</pattern></encoder>
  </appender>
  <appender-ref ref="FILE"/>
</configuration>
`,
    );

    for (const [name, content] of Object.entries(options.modules ?? {})) {
      const manifests = path.join(modulesDir, name, 'manifests');
      await mkdir(manifests, { recursive: true });
      await writeFile(path.join(manifests, 'init.pp'), content);
    }

    // CA, offline (the server must be stopped for `ca setup`).
    const setup = await run(PUPPETSERVER_BIN, ['ca', 'setup', '--config', confPath]);
    if (setup.exitCode !== 0) {
      throw new Error(
        `startPuppetserver: \`puppetserver ca setup\` exited ${setup.exitCode}\n${setup.stdout}\n${setup.stderr}`,
      );
    }

    // The JVM, in the foreground of its own process group, output to a log file.
    const fd = openSync(serverLogPath, 'a');
    logFd = fd;
    // A plain integer std* value is handed straight to child_process.spawn (the JVM writes to
    // the file itself, nothing is piped through Node); execa's types only admit fds 0-9.
    const logStdio = fd as unknown as 3;
    const started = Date.now();
    const child = execa(
      JAVA_BIN,
      [
        '-Xms512m',
        '-Xmx1g',
        '-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger',
        '-Djruby.lib=/usr/share/jruby/lib',
        '-XX:+CrashOnOutOfMemoryError',
        '-jar',
        PUPPETSERVER_JAR,
        '--config',
        confD,
        '--bootstrap-config',
        PACKAGED_SERVICES_D,
      ],
      {
        cwd: PUPPETSERVER_CWD,
        detached: true,
        cleanup: false,
        reject: false,
        stdin: 'ignore',
        stdout: logStdio,
        stderr: logStdio,
      },
    );
    if (child.pid === undefined) {
      const result = await child;
      throw new Error(`startPuppetserver: could not spawn ${JAVA_BIN}: ${result.message ?? 'unknown error'}`);
    }
    const jvmPid = child.pid;
    pid = jvmPid;
    let exitInfo: string | undefined;
    const jvmExited: Promise<void> = child.then((result) => {
      exitInfo = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
    });
    exited = jvmExited;
    // Last resort if the test process ends without stop(): kill the whole process group and
    // remove the temp dir (best effort, synchronous: nothing asynchronous runs in 'exit').
    exitHook = () => {
      killQuietly(jvmPid, 'SIGKILL', true);
      unlockPort(lockFile);
      try {
        if (!keepDir()) rmSync(dir, { recursive: true, force: true });
      } catch {
        // ignore
      }
    };
    process.on('exit', exitHook);

    const deadline = started + STARTUP_TIMEOUT_MS;
    for (;;) {
      if (exitInfo !== undefined) {
        throw new Error(
          `startPuppetserver: puppetserver exited (${exitInfo}) before it was ready; ` +
            `last lines of ${serverLogPath}:\n${await tail(serverLogPath)}`,
        );
      }
      if ((await probeStatus(port)) === 'running') break;
      if (Date.now() > deadline) {
        throw new Error(
          `startPuppetserver: puppetserver (pid ${jvmPid}) not ready on port ${port} after ` +
            `${STARTUP_TIMEOUT_MS / 1000} s; last lines of ${serverLogPath}:\n${await tail(serverLogPath)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const startupMs = Date.now() - started;

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        if (exitInfo === undefined) {
          killQuietly(jvmPid, 'SIGTERM', false);
          let timer: NodeJS.Timeout | undefined;
          const timedOut = await Promise.race([
            jvmExited.then(() => false),
            new Promise<boolean>((resolve) => {
              timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
            }),
          ]);
          clearTimeout(timer);
          if (timedOut) {
            killQuietly(jvmPid, 'SIGKILL', true);
            await jvmExited;
          }
        }
        if (exitHook) process.removeListener('exit', exitHook);
        if (logFd !== undefined) {
          closeSync(logFd);
          logFd = undefined;
        }
        unlockPort(lockFile);
        if (!keepDir()) await rm(dir, { recursive: true, force: true });
      })().catch(() => undefined);
      return stopping;
    };

    const server: RealPuppetserver = {
      dir,
      confPath,
      ssldir,
      cadir,
      port,
      accessLogPath,
      serverLogPath,
      pid: jvmPid,
      startupMs,
      caCli: (args) => run(PUPPETSERVER_BIN, ['ca', ...args, '--config', confPath]),
      agent: async (certname, agentDir, extraArgs = []) => {
        for (const sub of ['etc', 'var', 'log', 'run']) await mkdir(path.join(agentDir, sub), { recursive: true });
        const agentConf = path.join(agentDir, 'etc', 'puppet.conf');
        if (!existsSync(agentConf)) await writeFile(agentConf, '');
        return run(puppet, [
          'agent',
          '--onetime',
          '--no-daemonize',
          '--detailed-exitcodes',
          '--verbose',
          '--color=false',
          '--certname',
          certname,
          '--server',
          SERVER_NAME,
          '--serverport',
          String(port),
          '--confdir',
          path.join(agentDir, 'etc'),
          '--vardir',
          path.join(agentDir, 'var'),
          '--ssldir',
          path.join(agentDir, 'ssl'),
          '--logdir',
          path.join(agentDir, 'log'),
          '--rundir',
          path.join(agentDir, 'run'),
          '--waitforcert',
          '0',
          '--no-usecacheonfailure',
          '--no-splay',
          ...extraArgs,
        ]);
      },
      installAgentCertificate: async (agentDir, certname, material) => {
        const ssl = path.join(agentDir, 'ssl');
        const certs = path.join(ssl, 'certs');
        const keys = path.join(ssl, 'private_keys');
        // mkdir's mode is filtered by the umask: chmod explicitly.
        for (const [d, mode] of [
          [ssl, 0o771],
          [certs, 0o755],
          [keys, 0o750],
        ] as const) {
          await mkdir(d, { recursive: true });
          await chmod(d, mode);
        }
        const files: Array<[string, string, number]> = [
          [path.join(certs, `${certname}.pem`), material.certificate, 0o644],
          [path.join(keys, `${certname}.pem`), material.privateKey, 0o640],
          [path.join(certs, 'ca.pem'), material.caCertificate, 0o644],
        ];
        if (material.crl !== undefined) files.push([path.join(ssl, 'crl.pem'), material.crl, 0o644]);
        for (const [file, content, mode] of files) {
          await writeFile(file, content, { mode });
          await chmod(file, mode);
        }
      },
      accessLog: async () => {
        try {
          return await readFile(accessLogPath, 'utf8');
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
          throw error;
        }
      },
      stop,
    };
    return server;
  } catch (error) {
    await cleanupAfterFailure();
    throw error;
  }
}
