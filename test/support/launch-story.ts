/**
 * Test support: the launch story of issue #5, shared by the end-to-end test
 * (test/e2e/launch.test.ts) and the demo (demo/): a real puppetserver whose ENC is the PE
 * console double's `external_node`, `bin/espm_setup` and `bin/espm` run as child processes as
 * an operator runs them, the platform's calls through {@link pinnedClient}, the pre-signed
 * certificate installed into a fresh agent ssldir and `puppet agent --onetime`.
 *
 * Everything here talks to espm only through its command line, its stdout and its HTTP
 * contract (docs/design.md, "HTTP contract v1"): bin/ runs dist/, so `npm run build` first.
 * Nothing here prints: the demo narrates, the test asserts. Errors never quote espm_setup's
 * stdout (it holds the PSK).
 *
 * @packageDocumentation
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import ini from 'ini';
import { CONSOLE_EXTERNAL_NODE, CONSOLE_RAKEFILE, ConsoleDouble, findRake } from './console.js';
import { PUPPETSERVER_BIN, puppetserverAvailable, startPuppetserver, type RealPuppetserver } from './puppetserver.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** bin/espm (runs dist/cli/espm.js). */
export const ESPM_BIN = join(ROOT, 'bin', 'espm');
/** bin/espm_setup. */
export const ESPM_SETUP_BIN = join(ROOT, 'bin', 'espm_setup');

/** The group the platform puts the new server in: a seeded group without classes. */
export const STORY_GROUP = 'no mcollective';
/** The class the platform picks: `motd`, provided by {@link motdModule}. */
export const STORY_CLASS = 'motd';
/** Nodes of the console double's seed that espm did not create (and must leave alone). */
export const PRE_EXISTING_NODES = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'] as const;

/**
 * What the real story needs and is missing: puppetserver, puppet-agent (test/support/
 * puppetserver.ts) and rake (the console double).
 *
 * @returns the missing pieces (empty when the story can run), one phrase each
 */
export async function missingForRealStory(): Promise<string[]> {
  const missing: string[] = [];
  const server = puppetserverAvailable();
  if (!server.available) missing.push(server.reason ?? 'puppetserver or puppet-agent');
  if ((await findRake()) === undefined) missing.push('rake is not on PATH (apt-get install ruby rake)');
  return missing;
}

/** `web01-1.example.test` → `web01-1-<ms>.example.test`: the platform's retry on `node_exists`. */
export function withTimestamp(name: string): string {
  const dot = name.indexOf('.');
  return `${name.slice(0, dot)}-${Date.now()}${name.slice(dot)}`;
}

/** What the operator pastes into the platform, from espm_setup's stdout. */
export interface Announcement {
  /** The preshared key. */
  psk: string;
  /** espm's certificate (PEM), which the platform pins. */
  certificate: string;
  /** Its SHA-256 fingerprint as printed (`AB:CD:…`). */
  fingerprint: string;
}

/**
 * Reads espm_setup's announcement: the PSK (the line after `Preshared Key:`), the PEM between
 * `Certificate:` and `SHA-256 Fingerprint:`, and the fingerprint.
 *
 * @param stdout - espm_setup's stdout
 * @throws Error naming the missing heading (never quoting the output: it holds the PSK)
 */
export function parseAnnouncement(stdout: string): Announcement {
  const psk = /^Preshared Key:\n(\S+)\n/m.exec(stdout)?.[1];
  const certStart = stdout.indexOf('Certificate:\n');
  const fpStart = stdout.indexOf('SHA-256 Fingerprint:\n');
  if (psk === undefined || certStart < 0 || fpStart < certStart) {
    throw new Error('espm_setup output lacks "Preshared Key:", "Certificate:" or "SHA-256 Fingerprint:"');
  }
  const certificate = `${stdout.slice(certStart + 'Certificate:\n'.length, fpStart).trim()}\n`;
  const fingerprint = (stdout.slice(fpStart + 'SHA-256 Fingerprint:\n'.length).split('\n')[0] ?? '').trim();
  return { psk, certificate, fingerprint };
}

/** An espm set up by bin/espm_setup under a work directory. */
export interface EspmSetup extends Announcement {
  /** `<work>/espm/espm.ini` (mode 0600). */
  configPath: string;
  /** `<work>/espm/certs/espm.crt`. */
  certPath: string;
  /** `<work>/state`. */
  stateDir: string;
  /** The port espm will listen on (127.0.0.1). */
  port: number;
  /** espm_setup's argv (without the program), for narration. */
  args: string[];
  /** espm_setup's output (stdout holds the PSK: never print it unmasked). */
  stdout: string;
  stderr: string;
  /** espm_setup's run time, ms. */
  ms: number;
}

/**
 * Runs `bin/espm_setup` as the operator does: hostname localhost, SAN IP 127.0.0.1, listening
 * on 127.0.0.1:`port`, config, certificates and state under `work`.
 *
 * @param work - the work directory
 * @param port - espm's port
 * @param onPsk - called with the PSK as soon as it is known, before anything may be printed
 *   (the demo registers it for masking)
 * @throws Error when espm_setup exits non-zero (with its stderr) or prints no announcement
 */
export async function runEspmSetup(work: string, port: number, onPsk: (psk: string) => void = () => {}): Promise<EspmSetup> {
  const configDir = join(work, 'espm');
  const certDir = join(configDir, 'certs');
  const stateDir = join(work, 'state');
  const args = ['--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(port),
    '-d', configDir, '-c', certDir, '--state-dir', stateDir];
  const started = Date.now();
  const setup = await execa(ESPM_SETUP_BIN, args, { reject: false, stdin: 'ignore' });
  const stdout = String(setup.stdout);
  const psk = /^Preshared Key:\n(\S+)\n/m.exec(stdout)?.[1];
  if (psk !== undefined) onPsk(psk);
  if (setup.exitCode !== 0) throw new Error(`espm_setup exited ${setup.exitCode}: ${String(setup.stderr)}`);
  return {
    ...parseAnnouncement(stdout),
    configPath: join(configDir, 'espm.ini'),
    certPath: join(certDir, 'espm.crt'),
    stateDir,
    port,
    args,
    stdout,
    stderr: String(setup.stderr),
    ms: Date.now() - started,
  };
}

/** Sections of espm.ini → keys → values. */
export type ConfigChanges = Record<string, Record<string, string>>;

/**
 * Merges `changes` into espm.ini's sections (mode stays 0600).
 *
 * @param configPath - espm.ini
 * @param changes - section → key → value
 */
export async function editEspmConfig(configPath: string, changes: ConfigChanges): Promise<void> {
  const parsed = ini.parse(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  for (const [section, keys] of Object.entries(changes)) parsed[section] = { ...parsed[section], ...keys };
  await writeFile(configPath, ini.stringify(parsed, { whitespace: true }), { mode: 0o600 });
  await chmod(configPath, 0o600);
}

/**
 * espm.ini's `[classifier]` and `[ca]` for the real story: `dashboard-rake` on the console
 * double (real rake) and `puppetserver-ca` on the throw-away puppetserver.
 *
 * @param master - the running master and its console
 */
export async function realBackendConfig(master: StoryMaster): Promise<ConfigChanges> {
  const rake = await findRake();
  if (rake === undefined) throw new Error('rake is not on PATH (apt-get install ruby rake)');
  const ruby = (await execa('/bin/sh', ['-c', 'command -v ruby'], { reject: false })).stdout.trim();
  return {
    classifier: {
      backend: 'dashboard-rake',
      rake,
      rakefile: CONSOLE_RAKEFILE,
      cwd: master.console.dir,
      rails_env: 'production',
      ...(ruby.startsWith('/') ? { ruby } : {}),
    },
    ca: {
      backend: 'puppetserver-ca',
      puppetserver: PUPPETSERVER_BIN,
      puppet: '/usr/bin/puppet',
      config: master.server.confPath,
      ssldir: master.server.ssldir,
    },
  };
}

/**
 * The `motd` module's class: console parameters reach Puppet as top-scope variables, so its
 * parameter defaults to `$::motd_message`; it writes it to `motdFile` and notifies
 * `motd applied: <message>`, and, when the node's certificate carries the trusted extension
 * `pp_role`, `motd role: <$trusted['extensions']['pp_role']>`.
 *
 * @param motdFile - absolute path the agent writes
 */
export function motdModule(motdFile: string): string {
  return [
    'class motd (String $message = $::motd_message) {',
    `  file { '${motdFile}': ensure => file, content => "\${message}\\n" }`,
    "  notify { 'motd-applied': message => \"motd applied: ${message}\" }",
    "  if $trusted['extensions']['pp_role'] { notify { 'motd-role': message => \"motd role: ${trusted['extensions']['pp_role']}\" } }",
    '}',
    '',
  ].join('\n');
}

/** A console double and the puppetserver whose ENC it is. */
export interface StoryMaster {
  console: ConsoleDouble;
  server: RealPuppetserver;
  /** The agent's directory (confdir, vardir, ssldir … under it). */
  agentDir: string;
  /** What the `motd` class writes. */
  motdFile: string;
  /** The ENC's answer for a certname (what puppetserver gets), exit code and stdout. */
  enc(certname: string): Promise<{ exitCode: number; stdout: string }>;
}

/** The console double (created and seeded: its first rake task writes console.json). */
export async function startConsoleDouble(): Promise<ConsoleDouble> {
  const double = await ConsoleDouble.create();
  await double.store();
  return double;
}

/**
 * Starts a throw-away puppetserver whose ENC is `consoleDouble`'s `external_node` (through a
 * wrapper script: puppetserver execs the ENC with the certname only) and which serves the
 * {@link motdModule}.
 *
 * @param work - the work directory (wrapper, agent directory)
 * @param consoleDouble - from {@link startConsoleDouble}
 * @throws when puppetserver does not start (test/support/puppetserver.ts)
 */
export async function startMaster(work: string, consoleDouble: ConsoleDouble): Promise<StoryMaster> {
  const agentDir = join(work, 'agent');
  const motdFile = join(agentDir, 'motd.txt');
  await mkdir(agentDir, { recursive: true });
  const wrapper = join(work, 'enc.sh');
  await writeFile(wrapper, `#!/bin/sh\nexec '${CONSOLE_EXTERNAL_NODE}' --dir '${consoleDouble.dir}' "$1"\n`);
  await chmod(wrapper, 0o755);
  const server = await startPuppetserver({ port: 0, enc: wrapper, modules: { motd: motdModule(motdFile) } });
  return {
    console: consoleDouble,
    server,
    agentDir,
    motdFile,
    enc: async (certname) => {
      const answer = await execa(CONSOLE_EXTERNAL_NODE, ['--dir', consoleDouble.dir, certname], { reject: false, stripFinalNewline: false });
      return { exitCode: answer.exitCode ?? -1, stdout: String(answer.stdout) };
    },
  };
}

/** The three PEMs of `POST /v1/certificates` the new server installs. */
export interface IssuedPems {
  certificate: string;
  private_key: string;
  ca_certificate: string;
}

/**
 * The new server's first boot: the pre-signed certificate, its key and the CA certificate into
 * a fresh agent ssldir, then `puppet agent --onetime --detailed-exitcodes` (no CSR is sent).
 *
 * @param master - the master
 * @param certname - the node's name
 * @param issued - the answer of `POST /v1/certificates`
 * @returns the agent's exit code (2: changes applied), output and duration
 */
export async function firstAgentRun(master: StoryMaster, certname: string, issued: IssuedPems) {
  await master.server.installAgentCertificate(master.agentDir, certname, {
    certificate: issued.certificate,
    privateKey: issued.private_key,
    caCertificate: issued.ca_certificate,
  });
  return master.server.agent(certname, master.agentDir);
}

/** Lines of puppetserver's access log containing `needle`. */
export async function accessLines(master: StoryMaster, needle: string): Promise<string[]> {
  return (await master.server.accessLog()).split('\n').filter((line) => line.includes(needle));
}

/** A running `bin/espm`, its stdout kept line by line. */
export interface EspmProcess {
  child: ResultPromise;
  /** espm's stdout lines so far (one JSON log record each). */
  lines: string[];
  /** espm's stderr so far. */
  stderr(): string;
  /** Whether the process has exited. */
  exited(): boolean;
}

/** Polls `condition` every 25 ms; rejects after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Starts `bin/espm -c <configPath>` and waits for its `listening` log line.
 *
 * @param configPath - espm.ini
 * @param timeoutMs - how long to wait for `listening` (default 30 000)
 * @throws Error when espm exits first (with its stderr) or does not listen in time; the child
 *   is killed on a timeout
 */
export async function startEspmProcess(configPath: string, timeoutMs = 30_000): Promise<EspmProcess> {
  const child = execa(ESPM_BIN, ['-c', configPath], { reject: false, stdin: 'ignore', buffer: false });
  const lines: string[] = [];
  let partial = '';
  let errText = '';
  let exited = false;
  child.stdout?.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    lines.push(...complete.filter((l) => l !== ''));
  });
  child.stderr?.on('data', (chunk: Buffer) => (errText += chunk.toString()));
  void child.then(() => (exited = true));
  const espm: EspmProcess = { child, lines, stderr: () => errText, exited: () => exited };
  const listening = (): boolean => lines.some((l) => l.includes('"msg":"listening"'));
  try {
    await waitFor(() => listening() || exited, 'espm to log "listening"', timeoutMs);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  if (!listening()) {
    throw new Error(`espm exited before listening (exit ${String((await child).exitCode)}): ${errText.trim() || lines.join('\n')}`);
  }
  return espm;
}

/**
 * SIGTERM to espm (SIGKILL after `graceMs`); resolves with how it ended. Does nothing but wait
 * when it has already exited.
 *
 * @param espm - from {@link startEspmProcess}
 * @param graceMs - default 20 000
 */
export async function stopEspmProcess(espm: EspmProcess, graceMs = 20_000): Promise<{ exitCode: number | undefined; signal: string | undefined }> {
  if (!espm.exited()) espm.child.kill('SIGTERM');
  const timer = setTimeout(() => espm.child.kill('SIGKILL'), graceMs);
  const result = await espm.child;
  clearTimeout(timer);
  return { exitCode: result.exitCode, signal: result.signal };
}
