/**
 * The demo's platform side and the steps both modes share (README, "How a launch works"):
 * every HTTP call goes through the pinned client (test/support/pinned-client.ts) and is
 * printed as the curl command a platform engineer could copy (`$PSK` and `--cacert espm.crt`
 * stand for the secrets), then its status and a short form of its body; espm_setup and espm
 * run through the launch story (test/support/launch-story.ts) and are narrated here.
 *
 * @packageDocumentation
 */
import { STATUS_CODES } from 'node:http';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import {
  editEspmConfig,
  runEspmSetup,
  startEspmProcess,
  stopEspmProcess,
  STORY_CLASS,
  STORY_GROUP,
  withTimestamp,
  type ConfigChanges,
  type EspmProcess,
  type EspmSetup,
} from '../test/support/launch-story.js';
import { expectStatus, pinnedClient, type PinnedAnswer, type PinnedCall } from '../test/support/pinned-client.js';
import { addSecret, cleanups, espmLogLine, note, printable, redact, say, seconds, shellQuote, style } from './narration.js';

/** The certificate `POST /v1/certificates` answers (docs/openapi.yaml, IssuedCertificate). */
export interface IssuedCertificateBody {
  certname: string;
  certificate: string;
  private_key: string;
  ca_certificate: string;
  fingerprint_sha256: string;
  not_after: string;
}

/** The platform's side: one connection per call, espm's certificate the only trusted CA. */
export class Platform {
  private announcedPin = false;
  private readonly request: PinnedCall;

  /**
   * @param port - espm's port on 127.0.0.1
   * @param pinned - espm's certificate (PEM) as espm_setup printed it
   * @param psk - the preshared key
   * @param fingerprint - the SHA-256 fingerprint espm_setup printed
   */
  constructor(
    private readonly port: number,
    pinned: string,
    psk: string,
    private readonly fingerprint: string,
  ) {
    this.request = pinnedClient({ port, certificate: pinned, psk });
  }

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
  async call(method: string, path: string, body?: unknown): Promise<PinnedAnswer> {
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
}

// ---------------------------------------------------------------------------------------------
// espm as an operator runs it, narrated

/** Runs `bin/espm_setup` into the work dir and prints its output with the PSK masked. */
export async function narratedSetup(work: string, port: number): Promise<EspmSetup> {
  const setup = await runEspmSetup(work, port, addSecret).catch((err: Error) => {
    throw new Error(redact(err.message));
  });
  say(`${style.cyan('$')} ${style.cyan(['espm_setup', ...setup.args].map(shellQuote).join(' '))}`, 4);
  for (const line of setup.stdout.trimEnd().split('\n')) say(style.dim('│ ') + line, 6);
  for (const line of setup.stderr.trim().split('\n').filter(Boolean)) say(style.dim(`│ ${line}`), 6);
  note(`(exit 0 in ${seconds(setup.ms)}; the PSK is shown masked: ${setup.psk.length} characters, first 4 only)`);
  return setup;
}

/** Rewrites sections of espm.ini (mode stays 0600) and prints what changed. */
export async function narratedConfig(configPath: string, changes: ConfigChanges): Promise<void> {
  for (const [section, keys] of Object.entries(changes)) {
    say(`[${section}] ${Object.entries(keys).map(([k, v]) => `${k} = ${v}`).join(', ')}`, 6);
  }
  await editEspmConfig(configPath, changes);
}

/** Starts `bin/espm -c <config>`, registers its stop as a cleanup, prints its start-up lines. */
export async function narratedStart(configPath: string): Promise<EspmProcess> {
  say(`${style.cyan('$')} ${style.cyan(`espm -c ${configPath}`)}`, 4);
  const espm = await startEspmProcess(configPath).catch((err: Error) => {
    throw new Error(redact(err.message));
  });
  cleanups.push({ what: 'stop espm', run: async () => void (await stopEspmProcess(espm)) });
  // The start-up lines so far; "console found" may follow a moment later.
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const line of espm.lines) say(espmLogLine(line), 6);
  note(`(espm pid ${espm.child.pid}: one JSON log line per event on stdout; shown here in short form)`);
  return espm;
}

/**
 * Starts espm as set up, builds the platform's pinned client for it, shows the curl form of the
 * calls, and checks it (`/healthz`, `/v1/status`): the last step of every story's preparation.
 *
 * @param setup - what `narratedSetup` returned (config, certificate, PSK, fingerprint)
 * @param port - espm's port, as given to espm_setup
 * @param what - the line announcing the start, e.g. `start espm:`
 * @returns the running espm and the platform's client
 * @throws when espm does not start or does not answer
 */
export async function startAndCheck(setup: EspmSetup, port: number, what = 'start espm:'): Promise<{ espm: EspmProcess; platform: Platform }> {
  say(`${style.green('•')} ${what}`, 2);
  const espm = await narratedStart(setup.configPath);
  const platform = new Platform(port, setup.certificate, setup.psk, setup.fingerprint);
  explainCurl(platform, setup.configPath, setup.certPath);
  say('Check it:', 2);
  await checkIt(platform);
  return { espm, platform };
}

/** SIGTERM to espm, prints its exit code and its last log lines; throws unless it exits 0. */
export async function narratedStop(espm: EspmProcess): Promise<void> {
  const before = espm.lines.length;
  say(`${style.cyan('$')} ${style.cyan(`kill -TERM ${espm.child.pid}`)}`, 4);
  const { exitCode: code, signal } = await stopEspmProcess(espm);
  for (const line of espm.lines.slice(before)) say(espmLogLine(line), 6);
  say(`espm exited with ${code === 0 ? style.green(`exit code ${code}`) : style.red(`exit code ${String(code)} (signal ${String(signal)})`)}`, 4);
  if (code !== 0) throw new Error(`espm exited ${String(code)} after SIGTERM (expected 0): ${redact(espm.stderr().trim())}`);
}

/** Prints espm's request log lines (what the operator sees: method, path, status, ms). */
export function printRequestLog(espm: EspmProcess): void {
  const requests = espm.lines.filter((l) => /"msg":"request( failed)?"/.test(l));
  if (requests.length === 0) return;
  say(`espm logged ${requests.length} requests (never headers or bodies):`, 4);
  for (const line of requests) say(espmLogLine(line), 6);
}

// ---------------------------------------------------------------------------------------------
// the story: steps 1–3 and 5 are the same in both modes

/** Step 1: discover groups and classes. */
export async function discover(platform: Platform, group: string = STORY_GROUP, klass: string = STORY_CLASS): Promise<void> {
  say('The platform lists what users can pick for a new server (names only; cached by espm):', 2);
  const groups = await platform.call('GET', '/v1/groups');
  expectStatus(groups, 200, 'GET /v1/groups');
  const classes = await platform.call('GET', '/v1/classes');
  expectStatus(classes, 200, 'GET /v1/classes');
  for (const [list, wanted] of [[groups.body['groups'], group], [classes.body['classes'], klass]] as const) {
    if (!Array.isArray(list) || !list.includes(wanted)) throw new Error(`the console does not offer ${JSON.stringify(wanted)}`);
  }
  say(`The user picks group ${style.bold(JSON.stringify(group))} and class ${style.bold(klass)}.`, 2);
}

/** Step 2: create the node; on 409 node_exists append a ms timestamp and retry. */
export async function createNode(platform: Platform, message: string, group: string = STORY_GROUP, klass: string = STORY_CLASS): Promise<string> {
  const base = `web01-${Date.now()}.example.test`;
  let name = base;
  say(`The platform creates the node in the console (ENC), before the server exists:`, 2);
  for (let attempt = 1; ; attempt++) {
    const answer = await platform.call('POST', '/v1/nodes', {
      name,
      groups: [group],
      classes: [klass],
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
export async function presign(platform: Platform, name: string): Promise<IssuedCertificateBody> {
  say('The platform asks for the node\'s certificate; the answer holds certificate, key and CA, once:', 2);
  const answer = await platform.call('POST', '/v1/certificates', { certname: name });
  expectStatus(answer, 201, `POST /v1/certificates ${name}`);
  const issued = answer.body as unknown as IssuedCertificateBody;
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
export function verifyCertificate(issued: IssuedCertificateBody, indent: number): { signed: boolean; keyMatches: boolean } {
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
export async function terminate(platform: Platform, name: string): Promise<void> {
  say('The server is terminated: the platform deletes its node and revokes its certificate:', 2);
  expectStatus(await platform.call('DELETE', `/v1/nodes/${name}`), 204, `DELETE /v1/nodes/${name}`);
  expectStatus(await platform.call('DELETE', `/v1/certificates/${name}`), 204, `DELETE /v1/certificates/${name}`);
  say('espm no longer knows either:', 2);
  expectStatus(await platform.call('GET', `/v1/nodes/${name}`), 404, `GET /v1/nodes/${name}`);
  expectStatus(await platform.call('GET', `/v1/certificates/${name}`), 404, `GET /v1/certificates/${name}`);
}

/** `GET /healthz` and `GET /v1/status`, as README's "Check it". */
export async function checkIt(platform: Platform): Promise<void> {
  expectStatus(await platform.call('GET', '/healthz'), 200, 'GET /healthz');
  expectStatus(await platform.call('GET', '/v1/status'), 200, 'GET /v1/status');
}

/** Says what `espm.crt` and `$PSK` stand for in the printed curl commands. */
export function explainCurl(platform: Platform, configPath: string, certPath: string): void {
  say('', 0);
  say(style.dim(`In the curl commands below, espm.crt is ${certPath} (the certificate the platform pins) and`), 2);
  say(style.dim(`$PSK the preshared key: PSK=$(awk -F' = ' '$1=="psk"{print $2}' ${configPath}).`), 2);
  say(style.dim(`espm listens on ${platform.url} while the demo runs.`), 2);
}