/**
 * `npm run demo` (issue #5): launch and terminate a server through espm, narrated step by step
 * for a person on a fresh machine.
 *
 * - REAL mode (puppetserver + puppet-agent + rake installed): a throw-away puppetserver whose
 *   ENC is the PE console double, `bin/espm_setup` and `bin/espm` run as an operator runs them,
 *   the platform's HTTPS calls, a real `puppet agent --onetime` with the pre-signed certificate,
 *   then termination and the agent refused.
 * - SANDBOX mode (otherwise, or `--sandbox`): the same calls against espm with
 *   `[classifier] backend = sandbox` and `[ca] backend = sandbox`; the agent run is replaced by
 *   what the sandbox console serves as ENC and a check of the certificate against the CA.
 *
 * Every HTTP call is printed as the curl command a platform engineer could copy (`$PSK` and
 * `--cacert espm.crt` stand for the secrets), then its status and a short form of its body.
 * The PSK is never printed (only its first 4 characters), nor any private key.
 * Everything lives under one temporary directory, removed at the end unless `--keep`.
 * Exit status: 0 success, 1 failure, 130/143 interrupted (Ctrl-C / SIGTERM).
 *
 * @packageDocumentation
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { execa, type ResultPromise } from 'execa';
import ini from 'ini';
import { SandboxCertificateAuthority } from '../src/ca/sandbox.js';
import { SandboxClassifier } from '../src/classifier/sandbox.js';
import { CONSOLE_EXTERNAL_NODE, CONSOLE_RAKEFILE, ConsoleDouble, findRake } from '../test/support/console.js';
import { PUPPETSERVER_BIN, puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../test/support/puppetserver.js';
import { freePort } from '../test/support/net.js';
import type { IssuedCertificateBody } from '../src/service/certificates.js';

// ---------------------------------------------------------------------------------------------
// constants

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');
const ESPM_SETUP = join(ROOT, 'bin', 'espm_setup');
const DIST_CLI = join(ROOT, 'dist', 'cli', 'espm.js');

/** The group and class the platform puts the new server in (as the end-to-end test does). */
const GROUP = 'no mcollective';
const CLASS = 'motd';
/** How to get the real mode on a Debian/Ubuntu machine. */
const INSTALL_HINT = 'apt-get install puppetserver puppet-agent ruby rake';
/** `puppet agent --detailed-exitcodes`. */
const AGENT_EXIT_MEANINGS: Readonly<Record<number, string>> = {
  0: 'no changes',
  1: 'run failed',
  2: 'changes applied',
  4: 'failures',
  6: 'changes applied, and failures',
};
const AGENT_EXIT_LEGEND = 'detailed exit codes: 0 no changes, 2 changes, 4 failures, 6 both, 1 run failed';

// ---------------------------------------------------------------------------------------------
// output: colour (TTY only), secrets masked, timings

const colour = process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined;
const paint =
  (code: string) =>
  (text: string): string =>
    colour ? `\x1b[${code}m${text}\x1b[0m` : text;
const style = {
  bold: paint('1'),
  dim: paint('2'),
  red: paint('31'),
  green: paint('32'),
  yellow: paint('33'),
  blue: paint('34'),
  magenta: paint('35'),
  cyan: paint('36'),
};

/** Secrets registered so far (the PSK): replaced by their masked form in every printed line. */
const secrets: string[] = [];

/** `AbCd********…`: the first 4 characters, the rest as asterisks. */
function mask(secret: string): string {
  return secret.slice(0, 4) + '*'.repeat(Math.max(0, secret.length - 4));
}

/** Replaces every registered secret and every PEM private key in `text`. */
function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join(mask(secret));
  return out.replace(
    /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----[\s\S]*?-----END \1-----\n?/g,
    (pem, kind: string) => `-----BEGIN ${kind}----- (${Buffer.byteLength(pem)} bytes, not shown)`,
  );
}

/** Set once interrupted: the story stops narrating, only the cleanup speaks. */
let silenced = false;

/** Prints lines (each indented by `indent` spaces), secrets masked; nothing once silenced unless `always`. */
function say(text = '', indent = 0, always = false): void {
  if (silenced && !always) return;
  const pad = ' '.repeat(indent);
  process.stdout.write(`${redact(text).split('\n').map((line) => (line === '' ? line : pad + line)).join('\n')}\n`);
}

/** `850 ms`, `12.3 s`. */
function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Step durations, for the summary. */
const timings: Array<[string, number]> = [];

/** Runs one numbered step: a heading, the body, its duration. */
async function step<T>(id: string, title: string, body: () => Promise<T>): Promise<T> {
  const heading = `${id}. ${title} `;
  say(`\n${style.bold(style.blue(`── ${heading}${'─'.repeat(Math.max(4, 76 - heading.length))}`))}`);
  const started = Date.now();
  try {
    return await body();
  } finally {
    const ms = Date.now() - started;
    timings.push([`${id}. ${title}`, ms]);
    say(style.dim(`   step ${id} took ${seconds(ms)}`));
  }
}

/** Runs one action inside a step: `• label … result [time]`. */
async function action<T>(label: string, body: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
  const started = Date.now();
  const result = await body();
  const detail = describe === undefined ? '' : `: ${describe(result)}`;
  say(`${style.green('•')} ${label}${detail} ${style.dim(`[${seconds(Date.now() - started)}]`)}`, 2);
  return result;
}

/** A dim explanatory line under an action. */
function note(text: string): void {
  say(style.dim(text), 4);
}

// ---------------------------------------------------------------------------------------------
// cleanup: every child process and the work directory, on success, failure or signal

/** What has to be undone, newest last. */
const cleanups: Array<{ what: string; run: () => Promise<void> }> = [];
let cleaning: Promise<void> | undefined;

/** Runs every registered cleanup once, newest first; never rejects. */
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const { what, run } of cleanups.reverse()) {
      try {
        await run();
      } catch (err) {
        say(style.yellow(`cleanup: ${what}: ${(err as Error).message}`), 2, true);
      }
    }
  })();
  return cleaning;
}

// ---------------------------------------------------------------------------------------------
// small helpers

/** Polls `condition` every 25 ms; rejects after `timeoutMs`. */
async function waitFor(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds(timeoutMs)} waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Single-quotes a word for a POSIX shell. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `web01-1.example.test` → `web01-1-<ms>.example.test`: the platform's retry on node_exists. */
function withTimestamp(name: string): string {
  const dot = name.indexOf('.');
  return `${name.slice(0, dot)}-${Date.now()}${name.slice(dot)}`;
}

/** A short, printable form of an answer body: PEMs as one line, never a private key. */
function shortForm(value: unknown, key?: string): unknown {
  if (typeof value === 'string') {
    const pem = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(value);
    const secret = key === 'private_key' || (pem?.[1] ?? '').includes('PRIVATE KEY');
    const bytes = Buffer.byteLength(value);
    if (pem !== null) {
      const count = value.split(`-----BEGIN ${pem[1]}-----`).length - 1;
      const what = count > 1 ? `${count} PEM blocks, ${bytes} bytes` : `${bytes} bytes`;
      return `-----BEGIN ${pem[1]}----- … (${what}${secret ? ', not shown' : ''})`;
    }
    if (secret) return `(${bytes} bytes, not shown)`;
    return value.length > 100 ? `${value.slice(0, 99)}…` : value;
  }
  if (Array.isArray(value)) {
    const shown = value.slice(0, 12).map((v) => shortForm(v));
    return value.length > 12 ? [...shown, `… ${value.length - 12} more`] : shown;
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shortForm(v, k)]));
  }
  return value;
}

/** A body for the narration: one line when short, else one line per top-level key. */
function printable(body: Record<string, unknown>): string {
  const short = shortForm(body) as Record<string, unknown>;
  const compact = JSON.stringify(short);
  if (compact.length <= 150) return compact;
  const entries = Object.entries(short).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{\n${entries.join(',\n')}\n}`;
}

/** One JSON log line of espm, for a person: `[warn] message key=value …`. */
function espmLogLine(line: string): string {
  try {
    const record = JSON.parse(line) as Record<string, unknown>;
    const levels: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
    const level = levels[Number(record['level'])] ?? String(record['level']);
    if (record['msg'] === 'request' || record['msg'] === 'request failed') {
      const text = `[${level}] ${String(record['method'])} ${String(record['path'])} → ${String(record['status'])} (${String(record['ms'])} ms, from ${String(record['remote'])})`;
      return level === 'info' ? style.dim(text) : style.yellow(text);
    }
    const extra = Object.entries(record)
      .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    const text = `[${level}] ${String(record['msg'] ?? '')}${extra === '' ? '' : ` ${extra}`}`;
    return level === 'warn' || level === 'error' || level === 'fatal' ? style.yellow(text) : style.dim(text);
  } catch {
    return style.dim(line);
  }
}

/**
 * What the operator pastes into the platform, read from espm_setup's stdout: the PSK (the line
 * after `Preshared Key:`), the PEM between `Certificate:` and `SHA-256 Fingerprint:`, and the
 * fingerprint. Errors never quote the output (it holds the PSK).
 */
function parseAnnouncement(stdout: string): { psk: string; certificate: string; fingerprint: string } {
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

// ---------------------------------------------------------------------------------------------
// the platform: an HTTPS client pinning espm's certificate, printing curl commands

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  /** SHA-256 fingerprint of the certificate espm presented. */
  peerFingerprint: string;
  ms: number;
}

/** The certificate issued by `POST /v1/certificates` (the service's answer shape). */
type Issued = IssuedCertificateBody;

/** The platform's side: one connection per call, espm's certificate the only trusted CA. */
class Platform {
  private announcedPin = false;

  constructor(
    private readonly port: number,
    private readonly pinned: string,
    private readonly psk: string,
    private readonly fingerprint: string,
  ) {}

  /** `https://127.0.0.1:<port>` */
  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** The curl command doing the same request, with `$PSK` and `--cacert espm.crt`. */
  curl(method: string, path: string, body?: unknown): string {
    const words = ['curl', '--cacert', 'espm.crt'];
    if (path.startsWith('/v1/')) words.push('-H', '"Authorization: Bearer $PSK"');
    if (body !== undefined) words.push('-H', "'Content-Type: application/json'");
    if (method !== 'GET') words.push('-X', method);
    words.push(`${this.url}${path}`);
    let line = words.join(' ');
    if (body !== undefined) line += ` \\\n     -d ${shellQuote(JSON.stringify(body))}`;
    return line;
  }

  /** Prints the curl command, makes the call, prints status and short body. */
  async call(method: string, path: string, body?: unknown): Promise<Answer> {
    say(`${style.cyan('$')} ${style.cyan(this.curl(method, path, body))}`, 4);
    const answer = await this.request(method, path, body);
    const ok = answer.status < 400;
    const status = `${answer.status} ${STATUS_CODES[answer.status] ?? ''}`.trim();
    const headers = ['location', 'etag']
      .filter((h) => typeof answer.headers[h] === 'string')
      .map((h) => `${h === 'etag' ? 'ETag' : 'Location'}: ${String(answer.headers[h])}`);
    say(`${(ok ? style.green : style.yellow)(`← ${status}`)} ${style.dim(`(${answer.ms} ms)`)}${headers.length > 0 ? `  ${headers.join('  ')}` : ''}`, 4);
    if (Object.keys(answer.body).length > 0) say(printable(answer.body), 6);
    if (!this.announcedPin) {
      this.announcedPin = true;
      const pinned = answer.peerFingerprint === this.fingerprint;
      note(`(espm presented the pinned certificate, SHA-256 ${answer.peerFingerprint.slice(0, 23)}…: ${pinned ? 'matches' : 'DOES NOT MATCH'})`);
      if (!pinned) throw new Error('espm presented a certificate other than the one espm_setup printed');
    }
    return answer;
  }

  private request(method: string, path: string, body?: unknown): Promise<Answer> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method,
          ca: this.pinned,
          agent: false,
          timeout: 180_000,
          headers: {
            ...(path.startsWith('/v1/') ? { authorization: `Bearer ${this.psk}` } : {}),
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const peerFingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            let parsed: Record<string, unknown> = {};
            if (text !== '') {
              try {
                parsed = JSON.parse(text) as Record<string, unknown>;
              } catch {
                parsed = { unparsed: text.slice(0, 200) };
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, peerFingerprint, ms: Date.now() - started });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 180 s`)));
      req.on('error', (err) => reject(new Error(`${method} ${path}: ${err.message}`)));
      req.end(payload);
    });
  }
}

/** Throws unless the status is the expected one; the message carries only the problem fields. */
function expectStatus(answer: Answer, expected: number, what: string): void {
  if (answer.status !== expected) {
    const { code, title, detail } = answer.body as { code?: unknown; title?: unknown; detail?: unknown };
    throw new Error(`${what}: expected HTTP ${expected}, got ${answer.status} ${JSON.stringify({ code, title, detail })}`);
  }
}

// ---------------------------------------------------------------------------------------------
// espm as an operator runs it

/** A running `bin/espm`, its log lines kept. */
interface EspmProcess {
  child: ResultPromise;
  lines: string[];
  stderr: () => string;
}

/** Runs `bin/espm_setup` into the work dir and prints its output with the PSK masked. */
async function runEspmSetup(work: string, port: number): Promise<{ configPath: string; certPath: string; psk: string; certificate: string; fingerprint: string; stateDir: string }> {
  const configDir = join(work, 'espm');
  const certDir = join(configDir, 'certs');
  const stateDir = join(work, 'state');
  const args = ['--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(port),
    '-d', configDir, '-c', certDir, '--state-dir', stateDir];
  say(`${style.cyan('$')} ${style.cyan(['espm_setup', ...args].map(shellQuote).join(' '))}`, 4);
  const started = Date.now();
  const setup = await execa(ESPM_SETUP, args, { reject: false, stdin: 'ignore' });
  const stdout = String(setup.stdout);
  // Register the PSK before anything of the output is printed.
  const psk = /^Preshared Key:\n(\S+)\n/m.exec(stdout)?.[1];
  if (psk !== undefined) secrets.push(psk);
  if (setup.exitCode !== 0) {
    throw new Error(`espm_setup exited ${setup.exitCode}: ${redact(String(setup.stderr))}`);
  }
  const announcement = parseAnnouncement(stdout);
  for (const line of stdout.trimEnd().split('\n')) say(style.dim('│ ') + line, 6);
  for (const line of String(setup.stderr).trim().split('\n').filter(Boolean)) say(style.dim(`│ ${line}`), 6);
  note(`(exit ${setup.exitCode} in ${seconds(Date.now() - started)}; the PSK is shown masked: ${announcement.psk.length} characters, first 4 only)`);
  return { configPath: join(configDir, 'espm.ini'), certPath: join(certDir, 'espm.crt'), stateDir, ...announcement };
}

/** Rewrites sections of espm.ini (mode stays 0600) and prints what changed. */
async function editConfig(configPath: string, changes: Record<string, Record<string, string>>): Promise<void> {
  const parsed = ini.parse(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  for (const [section, keys] of Object.entries(changes)) {
    parsed[section] = { ...parsed[section], ...keys };
    say(`[${section}] ${Object.entries(keys).map(([k, v]) => `${k} = ${v}`).join(', ')}`, 6);
  }
  await writeFile(configPath, ini.stringify(parsed, { whitespace: true }), { mode: 0o600 });
  await chmod(configPath, 0o600);
}

/** Starts `bin/espm -c <config>` and waits for its `listening` line. */
async function startEspm(configPath: string): Promise<EspmProcess> {
  say(`${style.cyan('$')} ${style.cyan(`espm -c ${configPath}`)}`, 4);
  const child = execa(ESPM, ['-c', configPath], { reject: false, stdin: 'ignore', buffer: false });
  const lines: string[] = [];
  let partial = '';
  let errText = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    lines.push(...complete.filter((l) => l !== ''));
  });
  child.stderr?.on('data', (chunk: Buffer) => (errText += chunk.toString()));
  let exited = false;
  void child.then(() => (exited = true));
  const espm: EspmProcess = { child, lines, stderr: () => errText };
  cleanups.push({
    what: 'stop espm',
    run: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await child;
      clearTimeout(timer);
    },
  });
  const listening = (): boolean => lines.some((l) => l.includes('"msg":"listening"'));
  await waitFor(() => listening() || exited, 'espm to log "listening"', 30_000);
  if (!listening()) {
    throw new Error(`espm exited before listening (exit ${String((await child).exitCode)}): ${redact(errText.trim() || lines.join('\n'))}`);
  }
  // The start-up lines so far; "console found" may follow a moment later.
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const line of lines) say(espmLogLine(line), 6);
  note(`(espm pid ${child.pid}: one JSON log line per event on stdout; shown here in short form)`);
  return espm;
}

/** SIGTERM to espm, prints its exit code and its last log lines. */
async function stopEspm(espm: EspmProcess): Promise<void> {
  const before = espm.lines.length;
  say(`${style.cyan('$')} ${style.cyan(`kill -TERM ${espm.child.pid}`)}`, 4);
  espm.child.kill('SIGTERM');
  const result = await espm.child;
  for (const line of espm.lines.slice(before)) say(espmLogLine(line), 6);
  const code = result.exitCode;
  say(`espm exited with ${code === 0 ? style.green(`exit code ${code}`) : style.red(`exit code ${String(code)} (signal ${String(result.signal)})`)}`, 4);
  if (code !== 0) throw new Error(`espm exited ${String(code)} after SIGTERM (expected 0): ${redact(espm.stderr().trim())}`);
}

/** Prints espm's request log lines (what the operator sees: method, path, status, ms). */
function printRequestLog(espm: EspmProcess): void {
  const requests = espm.lines.filter((l) => /"msg":"request( failed)?"/.test(l));
  if (requests.length === 0) return;
  say(`espm logged ${requests.length} requests (never headers or bodies):`, 4);
  for (const line of requests) say(espmLogLine(line), 6);
}

// ---------------------------------------------------------------------------------------------
// the story: steps 1–3 and 5 are the same in both modes

/** Step 1: discover groups and classes. */
async function discover(platform: Platform): Promise<void> {
  say('The platform lists what users can pick for a new server (names only; cached by espm):', 2);
  const groups = await platform.call('GET', '/v1/groups');
  expectStatus(groups, 200, 'GET /v1/groups');
  const classes = await platform.call('GET', '/v1/classes');
  expectStatus(classes, 200, 'GET /v1/classes');
  for (const [list, wanted] of [[groups.body['groups'], GROUP], [classes.body['classes'], CLASS]] as const) {
    if (!Array.isArray(list) || !list.includes(wanted)) throw new Error(`the console does not offer ${JSON.stringify(wanted)}`);
  }
  say(`The user picks group ${style.bold(JSON.stringify(GROUP))} and class ${style.bold(CLASS)}.`, 2);
}

/** Step 2: create the node; on 409 node_exists append a ms timestamp and retry. */
async function createNode(platform: Platform, message: string): Promise<string> {
  const base = `web01-${Date.now()}.example.test`;
  let name = base;
  say(`The platform creates the node in the console (ENC), before the server exists:`, 2);
  for (let attempt = 1; ; attempt++) {
    const answer = await platform.call('POST', '/v1/nodes', {
      name,
      groups: [GROUP],
      classes: [CLASS],
      parameters: { motd_message: message },
    });
    if (answer.status === 409 && answer.body['code'] === 'node_exists' && attempt < 5) {
      name = withTimestamp(base);
      say(style.yellow(`node_exists: the platform appends a millisecond timestamp and tries ${name}`), 4);
      continue;
    }
    expectStatus(answer, 201, `POST /v1/nodes ${name}`);
    return name;
  }
}

/** Step 3: pre-sign the certificate; prints and checks what came back. */
async function presign(platform: Platform, name: string): Promise<Issued> {
  say('The platform asks for the node\'s certificate; the answer holds certificate, key and CA, once:', 2);
  const answer = await platform.call('POST', '/v1/certificates', { certname: name });
  expectStatus(answer, 201, `POST /v1/certificates ${name}`);
  const issued = answer.body as unknown as Issued;
  for (const field of ['certificate', 'private_key', 'ca_certificate'] as const) {
    if (typeof issued[field] !== 'string') throw new Error(`POST /v1/certificates: the answer lacks ${field}`);
  }
  const cert = new X509Certificate(issued.certificate);
  const ca = new X509Certificate(issued.ca_certificate);
  const keyKind = /^-----BEGIN ([A-Z ]+)-----/.exec(issued.private_key)?.[1] ?? 'PRIVATE KEY';
  const rows: Array<[string, string]> = [
    ['certificate subject', cert.subject.replace(/\n/g, ', ')],
    ['issuer', cert.issuer.replace(/\n/g, ', ')],
    ['serial', cert.serialNumber],
    ['fingerprint_sha256', issued.fingerprint_sha256],
    ['not_after', issued.not_after],
    ['CA subject', ca.subject.replace(/\n/g, ', ')],
    ['private key', `-----BEGIN ${keyKind}----- (${Buffer.byteLength(issued.private_key)} bytes, not shown)`],
  ];
  for (const [label, value] of rows) say(`${style.dim(`${label}:`.padEnd(21))}${value}`, 4);
  if (cert.subject !== `CN=${name}`) throw new Error(`the certificate's subject is ${cert.subject}, not CN=${name}`);
  if (cert.fingerprint256 !== issued.fingerprint_sha256) throw new Error('fingerprint_sha256 does not match the certificate');
  return issued;
}

/** Checks the certificate as the agent's TLS layer will: signed by the CA, key matching. */
function verifyCertificate(issued: Issued, indent: number): { signed: boolean; keyMatches: boolean } {
  const cert = new X509Certificate(issued.certificate);
  const ca = new X509Certificate(issued.ca_certificate);
  const signed = cert.verify(ca.publicKey);
  const keyMatches = cert.checkPrivateKey(createPrivateKey(issued.private_key));
  say(`X509Certificate.verify(CA public key): ${signed ? style.green('true') : style.red('false')} — signed by ${ca.subject.replace(/\n/g, ', ')}`, indent);
  say(`X509Certificate.checkPrivateKey(key):  ${keyMatches ? style.green('true') : style.red('false')} — the key belongs to the certificate`, indent);
  if (!signed || !keyMatches) throw new Error('the issued certificate does not verify against the CA or does not match its key');
  return { signed, keyMatches };
}

/** Step 5: delete the node and revoke the certificate; both then answer 404. */
async function terminate(platform: Platform, name: string): Promise<void> {
  say('The server is terminated: the platform deletes its node and revokes its certificate:', 2);
  expectStatus(await platform.call('DELETE', `/v1/nodes/${name}`), 204, `DELETE /v1/nodes/${name}`);
  expectStatus(await platform.call('DELETE', `/v1/certificates/${name}`), 204, `DELETE /v1/certificates/${name}`);
  say('espm no longer knows either:', 2);
  expectStatus(await platform.call('GET', `/v1/nodes/${name}`), 404, `GET /v1/nodes/${name}`);
  expectStatus(await platform.call('GET', `/v1/certificates/${name}`), 404, `GET /v1/certificates/${name}`);
}

/** `GET /healthz` and `GET /v1/status`, as README's "Check it". */
async function checkIt(platform: Platform): Promise<void> {
  expectStatus(await platform.call('GET', '/healthz'), 200, 'GET /healthz');
  expectStatus(await platform.call('GET', '/v1/status'), 200, 'GET /v1/status');
}

/** Says what `espm.crt` and `$PSK` stand for in the printed curl commands. */
function explainCurl(platform: Platform, configPath: string, certPath: string): void {
  say('', 0);
  say(style.dim(`In the curl commands below, espm.crt is ${certPath} (the certificate the platform pins) and`), 2);
  say(style.dim(`$PSK the preshared key: PSK=$(awk -F' = ' '$1=="psk"{print $2}' ${configPath}).`), 2);
  say(style.dim(`espm listens on ${platform.url} while the demo runs.`), 2);
}

// ---------------------------------------------------------------------------------------------
// REAL mode

/**
 * Prints the agent's Notice/Warning/Error lines, repeated lines once with a count; Facter's
 * complaints about this machine (e.g. `/proc/1/environ` in a container) are marked as such.
 */
function printAgentLines(output: string): void {
  const counts = new Map<string, number>();
  for (const line of output.split('\n').filter((l) => /^(Notice|Error|Warning):/.test(l))) {
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  for (const [line, count] of counts) {
    const times = count > 1 ? ` (×${count})` : '';
    const facter = line.startsWith('Error: Facter:') || line.startsWith('Warning: Facter:');
    say(style.dim('│ ') + (facter ? style.dim(`${line}${times} — Facter probing this machine, not part of the run`) : `${line}${times}`), 6);
  }
}

/**
 * The REAL story: console double + throw-away puppetserver, espm_setup + espm, steps 1–5 with
 * real agent runs, then espm and puppetserver stopped.
 */
async function realStory(work: string): Promise<void> {
  const rake = (await findRake())!;
  const ruby = (await execa('/bin/sh', ['-c', 'command -v ruby'], { reject: false })).stdout.trim();
  const agentDir = join(work, 'agent');
  const motdFile = join(agentDir, 'motd.txt');
  const message = `Launched by the platform through espm at ${new Date().toISOString()}`;
  let server: RealPuppetserver | undefined;
  let consoleDouble: ConsoleDouble | undefined;

  const prepared = await step('0', 'Set up the Puppet master and espm', async () => {
    consoleDouble = await action(
      'PE console double (the console\'s rake tasks, run by real rake, seeded like a PE 2.x console)',
      async () => {
        const double = await ConsoleDouble.create();
        await double.store();
        return double;
      },
      (double) => double.dir,
    );
    const consoleDir = consoleDouble.dir;
    // puppetserver execs the ENC with the certname only: a wrapper pointing at the console dir.
    const wrapper = join(work, 'enc.sh');
    await writeFile(wrapper, `#!/bin/sh\nexec ${shellQuote(CONSOLE_EXTERNAL_NODE)} --dir ${shellQuote(consoleDir)} "$1"\n`);
    await chmod(wrapper, 0o755);
    await mkdir(agentDir, { recursive: true });
    // Console parameters reach Puppet as top-scope variables: the class defaults to $::motd_message.
    const motd = [
      'class motd (String $message = $::motd_message) {',
      `  file { '${motdFile}': ensure => file, content => "\${message}\\n" }`,
      "  notify { 'motd-applied': message => \"motd applied: ${message}\" }",
      '}',
      '',
    ].join('\n');
    say(`${style.green('•')} starting a throw-away puppetserver (CA setup, then the JVM: 30–60 s) …`, 2);
    server = await action(
      'puppetserver running',
      async () => {
        const started = await startPuppetserver({ port: 0, enc: wrapper, modules: { motd } });
        cleanups.push({ what: 'stop puppetserver', run: () => started.stop() });
        return started;
      },
      (s) => `127.0.0.1:${s.port}, pid ${s.pid}, ENC = the console's external_node, module motd (state in ${s.dir})`,
    );
    note('class motd: writes $motd_message (a console parameter) to agent/motd.txt and notifies "motd applied: …"');

    const espmPort = await freePort();
    say(`${style.green('•')} espm_setup, as the operator runs it (here into the work directory, port ${espmPort}):`, 2);
    const setup = await runEspmSetup(work, espmPort);
    say(`${style.green('•')} point the config at the console double and at puppetserver-ca of this puppetserver:`, 2);
    await editConfig(setup.configPath, {
      classifier: {
        backend: 'dashboard-rake',
        rake,
        rakefile: CONSOLE_RAKEFILE,
        cwd: consoleDir,
        rails_env: 'production',
        ...(ruby.startsWith('/') ? { ruby } : {}),
      },
      ca: {
        backend: 'puppetserver-ca',
        puppetserver: PUPPETSERVER_BIN,
        puppet: '/usr/bin/puppet',
        config: server.confPath,
        ssldir: server.ssldir,
      },
    });
    say(`${style.green('•')} start espm:`, 2);
    const espm = await startEspm(setup.configPath);
    const platform = new Platform(espmPort, setup.certificate, setup.psk, setup.fingerprint);
    explainCurl(platform, setup.configPath, setup.certPath);
    say('Check it:', 2);
    await checkIt(platform);
    return { espm, platform };
  });
  const { espm, platform } = prepared;
  const puppet = server!;

  await step('1', 'Discover', () => discover(platform));
  const name = await step('2', 'Create the node', () => createNode(platform, message));
  const issued = await step('3', 'Pre-sign its certificate', async () => {
    const result = await presign(platform, name);
    verifyCertificate(result, 4);
    return result;
  });

  await step('4', 'Launch the instance: its first puppet agent run', async () => {
    say(`The new server's first boot writes the three PEMs into a fresh agent ssldir (${join(agentDir, 'ssl')}):`, 2);
    await puppet.installAgentCertificate(agentDir, name, {
      certificate: issued.certificate,
      privateKey: issued.private_key,
      caCertificate: issued.ca_certificate,
    });
    for (const [file, mode, what] of [
      [`certs/${name}.pem`, '0644', 'certificate'],
      ['certs/ca.pem', '0644', 'CA certificate'],
      [`private_keys/${name}.pem`, '0640', 'private key (not shown)'],
    ] as const) {
      say(`${file.padEnd(52)} ${mode}  ${what}`, 4);
    }
    say('puppetserver will ask the console\'s ENC for the node; it answers:', 2);
    const enc = await execa(CONSOLE_EXTERNAL_NODE, ['--dir', consoleDouble!.dir, name], { reject: false });
    for (const line of String(enc.stdout).split('\n')) say(style.dim('│ ') + line, 6);

    const csrsBefore = (await puppet.accessLog()).split('\n').filter((l) => l.includes('certificate_request')).length;
    say(`${style.cyan('$')} ${style.cyan(`puppet agent --onetime --no-daemonize --detailed-exitcodes --certname ${name} --server localhost --serverport ${puppet.port}`)}`, 4);
    note(`(plus --confdir/--vardir/--ssldir/--logdir/--rundir under ${agentDir}, --waitforcert 0)`);
    const run = await puppet.agent(name, agentDir);
    const output = `${run.stdout}\n${run.stderr}`;
    printAgentLines(output);
    const meaning = AGENT_EXIT_MEANINGS[run.exitCode] ?? 'unknown';
    const notify = output.split('\n').find((l) => l.includes('motd applied:'))?.trim();
    const content = await readFile(motdFile, 'utf8').catch(() => undefined);
    const csrsAfter = (await puppet.accessLog()).split('\n').filter((l) => l.includes('certificate_request')).length;
    say(`${style.bold('Agent run result')}: exit ${run.exitCode} — ${meaning} ${style.dim(`(${AGENT_EXIT_LEGEND}) [${seconds(run.durationMs)}]`)}`, 4);
    say(`notify:     ${notify ?? style.red('(no "motd applied" line)')}`, 6);
    say(`${motdFile}: ${content === undefined ? style.red('(not written)') : JSON.stringify(content)}`, 6);
    say(`certificate requests sent by the agent: ${csrsAfter - csrsBefore} (the pre-signed certificate needs no signing step)`, 6);
    if (run.exitCode !== 2 || notify === undefined || content !== `${message}\n`) {
      throw new Error(`the agent run did not apply the class (exit ${run.exitCode}, expected 2):\n${redact(output.trim())}`);
    }
    say(style.green(`Exit 2: the console's class ${CLASS} was applied with its parameter motd_message.`), 2);
  });

  await step('5', 'Terminate', async () => {
    await terminate(platform, name);
    await rm(motdFile, { force: true });
    say('The terminated server\'s certificate is now refused by the master; the same agent run again:', 2);
    say(`${style.cyan('$')} ${style.cyan(`puppet agent --onetime --no-daemonize --detailed-exitcodes --certname ${name} --server localhost --serverport ${puppet.port}`)}`, 4);
    const refused = await puppet.agent(name, agentDir);
    const output = `${refused.stdout}\n${refused.stderr}`;
    const tlsLine = output.split('\n').find((l) => /certificate (unknown|revoked)/i.test(l))?.trim()
      ?? output.split('\n').find((l) => l.startsWith('Error:'))?.trim();
    say(`${style.bold('Agent run result')}: exit ${refused.exitCode} — ${AGENT_EXIT_MEANINGS[refused.exitCode] ?? 'unknown'} ${style.dim(`[${seconds(refused.durationMs)}]`)}`, 4);
    say(`TLS error: ${tlsLine ?? '(none found)'}`, 6);
    const written = await readFile(motdFile, 'utf8').then(() => true, () => false);
    say(`${motdFile}: ${written ? style.red('written again') : 'not written'}`, 6);
    if (refused.exitCode !== 1 || written) {
      throw new Error(`the agent was not refused after revocation (exit ${refused.exitCode}, expected 1):\n${redact(output.trim())}`);
    }
    say(style.green('Exit 1: the master refuses the revoked certificate; the server gets no catalog.'), 2);
  });

  await step('6', 'Shut down', async () => {
    printRequestLog(espm);
    await stopEspm(espm);
    await action('puppetserver stopped', () => puppet.stop());
  });
}

// ---------------------------------------------------------------------------------------------
// SANDBOX mode

/**
 * The SANDBOX story: espm_setup + espm with both sandbox backends, the same calls; the agent
 * runs are replaced by the sandbox ENC answer, certificate checks and the revocation record.
 */
async function sandboxStory(work: string): Promise<void> {
  const message = `Launched by the platform through espm at ${new Date().toISOString()}`;

  const prepared = await step('0', 'Set up espm with the sandbox backends', async () => {
    const espmPort = await freePort();
    say(`${style.green('•')} espm_setup, as the operator runs it (here into the work directory, port ${espmPort}):`, 2);
    const setup = await runEspmSetup(work, espmPort);
    say(`${style.green('•')} switch both backends to the sandbox (a pretend PE 2.5 console and a CA of espm's own, in ${join(setup.stateDir, 'sandbox')}):`, 2);
    await editConfig(setup.configPath, { classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } });
    say(`${style.green('•')} start espm:`, 2);
    const espm = await startEspm(setup.configPath);
    const platform = new Platform(espmPort, setup.certificate, setup.psk, setup.fingerprint);
    explainCurl(platform, setup.configPath, setup.certPath);
    say('Check it:', 2);
    await checkIt(platform);
    return { espm, platform, stateDir: setup.stateDir };
  });
  const { espm, platform, stateDir } = prepared;
  const consoleStore = new SandboxClassifier(stateDir);
  const ca = new SandboxCertificateAuthority(stateDir);

  await step('1', 'Discover', () => discover(platform));
  const name = await step('2', 'Create the node', () => createNode(platform, message));
  const issued = await step('3', 'Pre-sign its certificate', () => presign(platform, name));

  await step('4', 'Launch the instance (sandbox: no agent run)', async () => {
    say('No Puppet master here, so no agent run. In its place, what a master would do with the node:', 2);
    say('the ENC answer the sandbox console serves for it (SandboxClassifier.externalNode):', 4);
    const enc = await consoleStore.externalNode(name);
    say(JSON.stringify(enc), 6);
    const classes = enc.classes;
    const parameter = enc.parameters?.['motd_message'];
    if (!classes.includes(CLASS) || parameter !== message) {
      throw new Error(`the sandbox ENC answer lacks class ${CLASS} or motd_message: ${JSON.stringify(enc)}`);
    }
    say('the TLS checks the master would make of the agent\'s certificate (Node\'s crypto):', 4);
    verifyCertificate(issued, 6);
    say(
      `${style.bold('Agent-equivalent result')}: certificate valid and signed by the CA, key matches, ENC classes ` +
        `[${classes.join(', ')}] with motd_message set → a real agent would apply ${CLASS}: exit 2 (changes applied)`,
      4,
    );
  });

  await step('5', 'Terminate', async () => {
    await terminate(platform, name);
    say('The sandbox CA records the revocation (SandboxCertificateAuthority.revocations()):', 2);
    const serial = new X509Certificate(issued.certificate).serialNumber;
    const revoked = (await ca.revocations()).filter((r) => r.certname === name);
    for (const r of revoked) say(JSON.stringify(r), 6);
    const ours = revoked.find((r) => r.fingerprint_sha256 === issued.fingerprint_sha256);
    if (ours === undefined) throw new Error(`the sandbox CA has no revocation of ${name} (serial ${serial})`);
    const enc = await consoleStore.externalNode(name);
    say(`the sandbox console's ENC answer now: ${JSON.stringify(enc)}`, 4);
    if (enc.classes.length !== 0) throw new Error(`the sandbox console still classifies ${name}`);
    say(
      `${style.bold('Agent-equivalent result')}: certificate serial ${ours.serial} revoked at ${ours.revoked_at}, node gone from ` +
        'the ENC → a real agent would be refused by the master: exit 1 (run failed; TLS alert "certificate unknown")',
      4,
    );
  });

  await step('6', 'Shut down', async () => {
    printRequestLog(espm);
    await stopEspm(espm);
  });
}

// ---------------------------------------------------------------------------------------------
// main

/** Options of the `demo` command, as commander parses them. */
interface DemoOptions {
  sandbox?: boolean;
  real?: boolean;
  keep?: boolean;
}

/** What the real mode needs, and what is missing. */
async function realModeAvailability(): Promise<{ available: boolean; missing: string[] }> {
  const missing: string[] = [];
  const server = puppetserverAvailable();
  if (!server.available) missing.push(server.reason ?? 'puppetserver or puppet-agent');
  if ((await findRake()) === undefined) missing.push('rake (not on PATH)');
  return { available: missing.length === 0, missing };
}

/** Chooses the mode, runs its story under one work directory, cleans up; returns the exit status. */
async function run(options: DemoOptions): Promise<number> {
  const started = Date.now();
  try {
    await readFile(DIST_CLI);
  } catch {
    say(style.red(`demo: ${DIST_CLI} is missing: run \`npm run build\` first (npm run demo does it).`));
    return 1;
  }
  const availability = await realModeAvailability();
  if (options.real === true && !availability.available) {
    say(style.red(`demo: --real needs puppetserver, puppet-agent and rake: ${availability.missing.join('; ')}.`));
    say(style.red(`Install them with \`${INSTALL_HINT}\`, or run \`npm run demo -- --sandbox\`.`));
    return 1;
  }
  const real = options.sandbox !== true && availability.available;

  const work = await mkdtemp(join(tmpdir(), 'espm-demo-'));
  // Everything the harness, the console double and the children put in TMPDIR goes under work.
  process.env['TMPDIR'] = work;
  if (options.keep === true) {
    process.env['ESPM_KEEP_PUPPETSERVER'] = '1';
    keepNote = `; kept: ${work}`;
  }
  let workRemoved = false;
  cleanups.push({
    what: 'remove the work directory',
    run: async () => {
      if (options.keep === true) return;
      await rm(work, { recursive: true, force: true });
      workRemoved = true;
    },
  });
  // Last resort should the process end another way: synchronous, nothing asynchronous runs here.
  process.on('exit', () => {
    if (options.keep !== true && !workRemoved) rmSync(work, { recursive: true, force: true });
  });

  say(style.bold('espm demo: a server launched and terminated through espm, as the platform does it'));
  if (real) {
    say(`${style.bold(style.green('Mode: REAL'))} — a throw-away puppetserver (its ENC: the PE console double), espm_setup + espm, a real puppet agent.`);
    say(style.yellow('This takes about 1–2 minutes: puppetserver alone needs 30–60 s to start.'));
  } else {
    say(`${style.bold(style.yellow('Mode: SANDBOX'))} — espm with [classifier] backend = sandbox and [ca] backend = sandbox: no Puppet master, no agent.`);
    if (options.sandbox === true && availability.available) {
      say('(forced by --sandbox; this machine can run the real story: npm run demo)');
    } else {
      say(`The real story needs puppetserver, puppet-agent and rake, which are missing here (${availability.missing.join('; ')}).`);
      say(`To get it: ${style.bold(INSTALL_HINT)}, then ${style.bold('npm run demo')} again.`);
    }
    say('The HTTP calls are identical to the real ones; this takes a few seconds.');
  }
  say(`Work directory: ${work} (${options.keep === true ? 'kept at the end: --keep' : 'removed at the end; --keep keeps it'})`);

  try {
    if (real) await realStory(work);
    else await sandboxStory(work);
  } catch (err) {
    if (interrupted !== undefined) return interruptedExit();
    say(`\n${style.red(style.bold('demo failed:'))} ${style.red(redact((err as Error).message))}`);
    say(style.dim('cleaning up (espm, puppetserver, work directory) …'));
    await cleanupAll();
    if (options.keep === true) say(`kept: ${work}`);
    else say(style.dim('rerun with --keep to look at the work directory afterwards'));
    return 1;
  }
  if (interrupted !== undefined) return interruptedExit();
  await cleanupAll();

  say(`\n${style.bold('Timings')}`);
  for (const [label, ms] of timings) say(`${label.padEnd(52)} ${seconds(ms).padStart(7)}`, 2);
  say(`${'total'.padEnd(52)} ${seconds(Date.now() - started).padStart(7)}`, 2);
  const outcome = real
    ? 'REAL mode: node created, certificate pre-signed, agent run applied motd (exit 2); terminated, agent refused (exit 1)'
    : 'SANDBOX mode: node created, certificate pre-signed and verified; terminated, certificate recorded as revoked';
  say(`\n${style.green(style.bold(`Demo complete (${outcome}).`))}`);
  if (options.keep === true) {
    say(`Kept: ${work} (espm.ini holds the PSK, mode 0600; rm -rf ${work} when done)`);
  } else {
    say(style.dim(`Removed ${work}.`));
  }
  return 0;
}

let interrupted: NodeJS.Signals | undefined;
let interruptedAt = 0;
/** Appended to the last line after an interruption: where the kept work directory is. */
let keepNote = ', work directory removed';

/** Cleans up after a signal; resolves with 130 (SIGINT) or 143. */
function interruptedExit(): Promise<number> {
  return cleanupAll().then(() => (interrupted === 'SIGINT' ? 130 : 143));
}

/**
 * First SIGINT/SIGTERM/SIGHUP: stop every child, remove the work directory, exit 130/143.
 * One Ctrl-C often arrives twice (from the terminal's process group, then relayed by tsx when
 * it did not see this process take it within 30 ms): a repeat within 2 s is the same one.
 * A later one exits at once (execa and the puppetserver harness kill the children on exit).
 */
function onSignal(signal: NodeJS.Signals): void {
  if (interrupted !== undefined) {
    if (Date.now() - interruptedAt < 2000) return;
    say(style.red(`\n${signal} again: exiting now (children are killed on exit)`), 0, true);
    process.exit(130);
  }
  interrupted = signal;
  interruptedAt = Date.now();
  say(style.yellow(`\n${signal} received: stopping espm and puppetserver, removing the work directory … (again to exit at once)`));
  silenced = true;
  void interruptedExit().then((code) => {
    say(style.yellow(`interrupted: every child process stopped${keepNote}`), 0, true);
    process.exit(code);
  });
}

const program = new Command('npm run demo --')
  .description('Launch and terminate a server through espm, narrated step by step, as the platform does it.')
  .addOption(new Option('--sandbox', 'use the sandbox backends even when the real mode is available').conflicts('real'))
  .addOption(new Option('--real', 'require the real mode (fails when puppetserver, puppet-agent or rake is missing)'))
  .option('--keep', 'keep the work directory (config, certificates, state, logs) and print its path')
  .helpOption('-h, --help', 'show this help')
  .addHelpText(
    'after',
    [
      '',
      'Steps (README, "How a launch works"): 0 set up, 1 discover groups and classes, 2 create the',
      'node, 3 pre-sign its certificate, 4 launch (the agent run), 5 terminate, 6 shut down.',
      '',
      'REAL mode, when puppetserver, puppet-agent and rake are installed (1-2 minutes):',
      '  a throw-away puppetserver whose ENC is the PE console double, bin/espm_setup and',
      '  bin/espm, a real `puppet agent --onetime` with the pre-signed certificate.',
      `  Get it with: ${INSTALL_HINT}`,
      'SANDBOX mode, otherwise (a few seconds): the same HTTPS calls to espm with',
      '  [classifier] backend = sandbox and [ca] backend = sandbox; no agent run.',
      '',
      'Everything lives under one temporary directory, removed at the end unless --keep.',
      'The PSK is never printed (first 4 characters only), nor any private key.',
      'Exit status: 0 success, 1 failure, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).',
    ].join('\n'),
  )
  .action(async (options: DemoOptions) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
    const code = await run(options);
    process.exit(code);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  say(style.red(`demo: ${redact((err as Error).message)}`));
  await cleanupAll();
  process.exit(1);
}
