/**
 * Bench 5 (issue #8): the CA backends on a REAL puppetserver 7.9.5 (test/support/puppetserver.ts,
 * its own port and temp dir). Two espm daemons on the same server — `[ca] backend =
 * puppetserver-ca` (one `puppetserver ca` process per operation) and `puppetserver-api` (key +
 * CSR in process, the CA's HTTP API), both making 4096-bit keys (the CLI's size; checked on the
 * certificates returned) — each issue and then revoke 20 certificates through espm's HTTP API,
 * interleaved call by call. Goal: the API backend ≥ 5× faster per certificate (issue + revoke,
 * p50). The API daemon runs with its default node key pool (`[ca] key_pool`), filled before
 * the measurement (its `node key pool ready` log line); then, to show a burst larger than the
 * pool, it issues the same number back to back with nothing in between.
 *
 * Where the time goes, per operation: the HTTP requests each one made to the CA and the time
 * the server spent on them (the server's access log, `%D` ms), the CLI's fixed cost (`puppetserver
 * ca list` of one name: Ruby start-up + one request), and the in-process 4096-bit key + CSR
 * generation (src/ca/puppetserver-api.ts `generateNodeRequest`, timed here in the bench
 * process) that the key pool takes off the request path.
 *
 *   npm run build && npx tsx bench/ca.ts [--certificates 20]
 *
 * Skips, saying why, when puppetserver is not installed. Loopback only; bounded by the count
 * (the server start takes 20–60 s).
 *
 * @packageDocumentation
 */
import { X509Certificate } from 'node:crypto';
import { stat, open, readFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { Command } from 'commander';
import { NODE_KEY_POOL_READY } from '../src/ca/node-key-pool.js';
import { generateNodeRequest } from '../src/ca/puppetserver-api.js';
import { DEFAULTS } from '../src/config.js';
import { puppetserverAvailable, startPuppetserver, type RealPuppetserver } from '../test/support/puppetserver.js';
import { Daemon, formatSummary, msSince, round, runAlone, summarize, type BenchResult, type EspmClient } from './support.js';

/** Options of {@link caBench}. */
export interface CaOptions {
  /** Certificates issued and revoked per backend (default 20). */
  certificates?: number;
  /** Goal: CLI time per certificate / API time per certificate at least this (default 5). */
  goal?: number;
  /** In-process key + CSR generations timed for the breakdown (default 10). */
  keygens?: number;
}

type Backend = 'puppetserver-ca' | 'puppetserver-api';
const BACKENDS: readonly Backend[] = ['puppetserver-ca', 'puppetserver-api'];

/** One espm operation: client latency, and the CA requests it caused (access log). */
interface Op {
  ms: number;
  requests: string[];
  serverMs: number;
}

/** Reads what the access log gained since `from` (bytes). */
async function accessLogSince(path: string, from: number): Promise<{ lines: string[]; size: number }> {
  const size = (await stat(path).catch(() => ({ size: 0 }))).size;
  if (size <= from) return { lines: [], size };
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(size - from);
    await handle.read(buffer, 0, buffer.length, from);
    return { lines: buffer.toString('utf8').split('\n').filter((l) => l !== ''), size };
  } finally {
    await handle.close();
  }
}

/** `GET /puppet-ca/v1/certificate/NAME` → `GET certificate`, and the `%D` ms at the end. */
function parseAccessLine(line: string): { request: string; ms: number } {
  const m = /"(\w+) \/puppet-ca\/v1\/([a-z_]+)[^"]*" (\d+) \S+ (\d+)$/.exec(line);
  if (m === null) return { request: line.slice(0, 80), ms: 0 };
  return { request: `${m[1]} ${m[2]} ${m[3]}`, ms: Number(m[4]) };
}

/** The master's client identity (it carries pp_cli_auth), for requests to the CA API from the bench. */
async function caApiAgent(server: RealPuppetserver): Promise<https.Agent> {
  const [cert, key, ca] = await Promise.all(
    [join(server.ssldir, 'certs', 'localhost.pem'), join(server.ssldir, 'private_keys', 'localhost.pem'), join(server.ssldir, 'certs', 'ca.pem')].map((p) => readFile(p, 'utf8')),
  );
  return new https.Agent({ keepAlive: true, maxSockets: 1, cert, key, ca, servername: 'localhost' });
}

/** One request to the CA API; resolves with the status. */
function caApi(server: RealPuppetserver, agent: https.Agent, method: string, path: string, body?: { text: string; type: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: `localhost:${server.port}`, Accept: 'application/json, text/plain' };
    if (body !== undefined) {
      headers['Content-Type'] = body.type;
      headers['Content-Length'] = String(Buffer.byteLength(body.text));
    }
    const req = https.request({ host: '127.0.0.1', port: server.port, method, path: `/puppet-ca/v1${path}`, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body?.text);
  });
}

/**
 * Runs bench 5.
 *
 * @param options - number of certificates, goal
 * @returns figures (per-certificate speed-up of the API backend) vs the goal, raw numbers and
 *   the breakdown; `skipped` when puppetserver is not installed
 */
export async function caBench(options: CaOptions = {}): Promise<BenchResult> {
  const n = options.certificates ?? 20;
  const goal = options.goal ?? 5;
  const keygens = options.keygens ?? 10;
  const started = Date.now();
  const result: BenchResult = {
    name: 'ca',
    title: '5. CA on a real puppetserver: puppetserver-ca (CLI) vs puppetserver-api',
    command: `npx tsx bench/ca.ts --certificates ${n}`,
    figures: [],
    raw: [],
    analysis: [],
  };
  const availability = puppetserverAvailable();
  if (!availability.available) return { ...result, skipped: availability.reason ?? 'puppetserver not available' };

  let server: RealPuppetserver | undefined;
  const daemons = new Map<Backend, Daemon>();
  try {
    server = await startPuppetserver({ port: 0 });
    const common = { classifier: { backend: 'sandbox', worker: 'off' }, log: { level: 'info' } };
    const caKeys = { puppet: '/usr/bin/puppet', config: server.confPath, ssldir: '', timeout: 120 };
    daemons.set('puppetserver-ca', await Daemon.start({ config: { ...common, ca: { ...caKeys, backend: 'puppetserver-ca', puppetserver: '/usr/bin/puppetserver' } } }));
    daemons.set('puppetserver-api', await Daemon.start({ config: { ...common, ca: { ...caKeys, backend: 'puppetserver-api', key_bits: 4096 } }, waitForLog: NODE_KEY_POOL_READY }));
    const clients = new Map<Backend, EspmClient>(BACKENDS.map((b) => [b, daemons.get(b)!.client({ maxSockets: 1 })]));
    let logOffset = (await accessLogSince(server.accessLogPath, 0)).size;

    const operation = async (backend: Backend, method: 'POST' | 'DELETE', certname: string): Promise<Op & { body: string }> => {
      const client = clients.get(backend)!;
      const answer =
        method === 'POST'
          ? await client.request('POST', '/v1/certificates', { certname })
          : await client.request('DELETE', `/v1/certificates/${certname}`);
      const want = method === 'POST' ? 201 : 204;
      if (answer.status !== want) throw new Error(`${backend}: ${method} ${certname} answered ${answer.status}: ${answer.body.slice(0, 800)}`);
      await new Promise((r) => setTimeout(r, 20)); // let the server's access log catch up
      const log = await accessLogSince(server!.accessLogPath, logOffset);
      logOffset = log.size;
      const parsed = log.lines.map(parseAccessLine);
      return { ms: answer.ms, requests: parsed.map((p) => p.request), serverMs: parsed.reduce((a, p) => a + p.ms, 0), body: answer.body };
    };

    // Warm-up, not measured: each espm's first CA call looks up puppet's settings (one
    // `puppet config print`), the API backend opens its TLS connection.
    for (const b of BACKENDS) {
      await operation(b, 'POST', `warm-${b}.example.test`);
      await operation(b, 'DELETE', `warm-${b}.example.test`);
    }

    const issued = new Map<Backend, Op[]>(BACKENDS.map((b) => [b, []]));
    const revoked = new Map<Backend, Op[]>(BACKENDS.map((b) => [b, []]));
    const keyBits = new Map<Backend, Set<number>>(BACKENDS.map((b) => [b, new Set()]));
    const name = (b: Backend, i: number): string => `${b === 'puppetserver-ca' ? 'cli' : 'api'}-${i}.example.test`;
    const order = (i: number): readonly Backend[] => (i % 2 === 0 ? BACKENDS : [...BACKENDS].reverse());
    for (let i = 0; i < n; i++) {
      for (const b of order(i)) {
        const op = await operation(b, 'POST', name(b, i));
        const body = JSON.parse(op.body) as { certificate: string };
        keyBits.get(b)!.add(new X509Certificate(body.certificate).publicKey.asymmetricKeyDetails?.modulusLength ?? 0);
        issued.get(b)!.push(op);
      }
    }
    for (let i = 0; i < n; i++) {
      for (const b of order(i)) revoked.get(b)!.push(await operation(b, 'DELETE', name(b, i)));
    }

    // A burst larger than the pool: the API backend alone, back to back (the pool refilled
    // during the CLI's revocations above; it drains after key_pool issues).
    const burst: Op[] = [];
    for (let i = 0; i < n; i++) burst.push(await operation('puppetserver-api', 'POST', `burst-${i}.example.test`));
    for (let i = 0; i < n; i++) await operation('puppetserver-api', 'DELETE', `burst-${i}.example.test`);
    for (const c of clients.values()) c.close();

    // Breakdown: the CLI's fixed cost (one request, no key), the API backend's key + CSR.
    const cliFloor: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await server.caCli(['list', '--certname', 'localhost', '--format', 'json']);
      if (r.exitCode !== 0) throw new Error(`puppetserver ca list exited ${r.exitCode}: ${r.stderr}`);
      cliFloor.push(r.durationMs);
    }
    const keygen: number[] = [];
    const requests: Awaited<ReturnType<typeof generateNodeRequest>>[] = [];
    for (let i = 0; i < keygens; i++) {
      const t = process.hrtime.bigint();
      requests.push(await generateNodeRequest(`keygen-${i}.example.test`, [], 4096));
      keygen.push(msSince(t));
    }
    // An issue with the key already made (what a key pool would leave): the API backend's
    // requests alone, sent from here with those CSRs; then their clean.
    const agent = await caApiAgent(server);
    const pooledIssue: number[] = [];
    const pooledClean: number[] = [];
    for (const [i, r] of requests.entries()) {
      const certname = `keygen-${i}.example.test`;
      const t = process.hrtime.bigint();
      const statuses = [
        await caApi(server, agent, 'GET', '/certificate/ca'),
        await caApi(server, agent, 'PUT', `/certificate_request/${certname}`, { text: r.csrPem, type: 'text/plain' }),
        await caApi(server, agent, 'PUT', `/certificate_status/${certname}`, { text: '{"desired_state":"signed"}', type: 'application/json' }),
        await caApi(server, agent, 'GET', `/certificate/${certname}`),
      ];
      pooledIssue.push(msSince(t));
      if (statuses.some((st) => st < 200 || st > 299)) throw new Error(`CA API round trip for ${certname}: statuses ${statuses.join(' ')}`);
      const c = process.hrtime.bigint();
      await caApi(server, agent, 'GET', `/certificate_status/${certname}`);
      await caApi(server, agent, 'PUT', '/clean', { text: JSON.stringify({ certnames: [certname] }), type: 'application/json' });
      pooledClean.push(msSince(c));
    }
    agent.destroy();

    const s = (ops: Op[]) => summarize(ops.map((o) => o.ms));
    const perCert = (b: Backend) => s(issued.get(b)!).p50 + s(revoked.get(b)!).p50;
    const ratio = perCert('puppetserver-ca') / perCert('puppetserver-api');
    const issueRatio = s(issued.get('puppetserver-ca')!).p50 / s(issued.get('puppetserver-api')!).p50;
    const revokeRatio = s(revoked.get('puppetserver-ca')!).p50 / s(revoked.get('puppetserver-api')!).p50;
    // A burst's cost is its total: the mean, not the p50 (which the pool's first keys decide).
    const burstPerCert = s(burst).mean + s(revoked.get('puppetserver-api')!).p50;
    const burstRatio = perCert('puppetserver-ca') / burstPerCert;
    result.figures.push(
      {
        label: `per certificate (issue p50 + revoke p50): puppetserver-ca ${Math.round(perCert('puppetserver-ca'))} ms / puppetserver-api ${Math.round(perCert('puppetserver-api'))} ms`,
        value: ratio.toFixed(2),
        unit: '×',
        goal: `≥ ${goal}×`,
        met: ratio >= goal,
      },
      {
        label: `the same with the API's ${n} issues back to back, a burst over its ${DEFAULTS.ca.key_pool}-key pool (issue mean + revoke p50): ${Math.round(perCert('puppetserver-ca'))} ms / ${Math.round(burstPerCert)} ms`,
        value: burstRatio.toFixed(2),
        unit: '×',
        goal: '(shown, not a goal)',
      },
    );
    const requestMix = (ops: Op[]): string => {
      const counts = new Map<string, number>();
      for (const o of ops) for (const r of o.requests) counts.set(r, (counts.get(r) ?? 0) + 1);
      return [...counts].map(([r, c]) => `${r} ×${round(c / ops.length, 2)}`).join(', ') || 'none';
    };
    const serverMs = (ops: Op[]) => summarize(ops.map((o) => o.serverMs));
    result.raw.push(
      `- puppetserver 7.9.5 (Debian package) started by the test harness in ${round(server.startupMs / 1000, 1)} s, TLS 1.2, one JRuby; two espm daemons from \`bin/espm\` (sandbox classifier), each warmed with one issue + revoke; the API daemon's node key pool (\`key_pool = ${DEFAULTS.ca.key_pool}\`, the default) full before the warm-up; ${n} issues then ${n} revocations per backend, interleaved call by call (which goes first alternates), so the pool refills while the CLI works; then ${n} API issues back to back, then their revocations. Key sizes of the certificates returned: puppetserver-ca ${[...keyBits.get('puppetserver-ca')!].join('/')} bits, puppetserver-api ${[...keyBits.get('puppetserver-api')!].join('/')} bits.`,
      '',
      '| backend | issue p50 / p99 ms | revoke p50 / p99 ms | per certificate ms | CA requests per issue | per revoke | server time per issue / revoke p50 ms |',
      '|---|---|---|---|---|---|---|',
      ...BACKENDS.map((b) => {
        const i = s(issued.get(b)!);
        const r = s(revoked.get(b)!);
        return `| ${b} | ${round(i.p50)} / ${round(i.p99)} | ${round(r.p50)} / ${round(r.p99)} | ${Math.round(i.p50 + r.p50)} | ${requestMix(issued.get(b)!)} | ${requestMix(revoked.get(b)!)} | ${serverMs(issued.get(b)!).p50} / ${serverMs(revoked.get(b)!).p50} |`;
      }),
      '',
      `- Speed-up of the API backend: issue ${issueRatio.toFixed(2)}×, revoke ${revokeRatio.toFixed(2)}×, per certificate ${ratio.toFixed(2)}×.`,
      ...BACKENDS.flatMap((b) => [
        `- ${b} issue: ${formatSummary(s(issued.get(b)!))}; raw ${issued.get(b)!.map((o) => Math.round(o.ms)).join(' ')}.`,
        `- ${b} revoke: ${formatSummary(s(revoked.get(b)!))}; raw ${revoked.get(b)!.map((o) => Math.round(o.ms)).join(' ')}.`,
      ]),
      `- puppetserver-api issues back to back: ${formatSummary(s(burst))}; raw ${burst.map((o) => Math.round(o.ms)).join(' ')} (the first ${DEFAULTS.ca.key_pool} from the pool, the rest wait for a key made on the spot while the refill runs beside them).`,
      `- \`puppetserver ca list --certname localhost --format json\` run directly (the CLI's fixed cost: Ruby start-up, settings, one TLS request): ${formatSummary(summarize(cliFloor))}.`,
      `- 4096-bit RSA key + CSR in process (\`generateNodeRequest\`, Node ${process.version}, the API backend's own work per issue): ${formatSummary(summarize(keygen))}.`,
      `- The API backend's issue requests (GET certificate/ca, PUT certificate_request, PUT certificate_status, GET certificate) sent from the bench with those CSRs, i.e. an issue whose key was made beforehand: ${formatSummary(summarize(pooledIssue))}; its revoke requests (GET certificate_status, PUT clean): ${formatSummary(summarize(pooledClean))}.`,
    );
    {
      const cliIssue = s(issued.get('puppetserver-ca')!).p50;
      const cliRevoke = s(revoked.get('puppetserver-ca')!).p50;
      const apiIssue = s(issued.get('puppetserver-api')!).p50;
      const apiRevoke = s(revoked.get('puppetserver-api')!).p50;
      const kg = summarize(keygen);
      const floor = summarize(cliFloor).p50;
      const pooled = summarize(pooledIssue).p50;
      const projected = (cliIssue + cliRevoke) / (pooled + apiRevoke);
      result.analysis.push(
        `- ${ratio >= goal ? 'Goal met' : 'Goal missed'} (${ratio.toFixed(2)}×; issue ${issueRatio.toFixed(2)}×, revoke ${revokeRatio.toFixed(2)}×). The revoke is where the processes cost: espm's puppetserver-ca revoke runs two (\`puppetserver ca list\` for the ownership fingerprint check, then \`clean\`), each ≈ ${Math.round(floor)} ms of Ruby start-up and settings before its request, against ${Math.round(apiRevoke)} ms for the API backend's two requests.`,
        `- An issue without a pool is dominated by generating the 4096-bit RSA key, on both backends: in process it took ${Math.round(kg.min)}–${Math.round(kg.max)} ms (p50 ${Math.round(kg.p50)} ms; a random prime search, so it varies widely), while the API backend's CA requests take ${Math.round(pooled)} ms (p50) once the key exists. The CLI makes the same kind of key in Ruby's OpenSSL inside its process, so it pays it on every issue. The key pool takes it off the request path: API issue p50 ${Math.round(apiIssue)} ms against ${Math.round(pooled)} ms for the bare requests (≈ ${projected.toFixed(1)}× projected from those).`,
        `- A burst larger than the pool: back to back the API backend's issue p50 is ${Math.round(s(burst).p50)} ms and its mean ${Math.round(s(burst).mean)} ms (${burstRatio.toFixed(2)}× per certificate on the mean); after ${DEFAULTS.ca.key_pool} issues each waits for a key made on the spot. Where bursts are larger, raise \`[ca] key_pool\` (memory only, ~3 KB per key; ~1 s of one core per 4096-bit key to refill), or \`[ca] key_bits = 2048\` where policy allows.`,
      );
    }
  } finally {
    for (const d of daemons.values()) await d.stop();
    await server?.stop();
  }
  result.wallS = round((Date.now() - started) / 1000);
  return result;
}

runAlone(import.meta.url, async () => {
  const o = new Command('ca').option('--certificates <n>', 'certificates issued and revoked per backend', '20').parse().opts<{ certificates: string }>();
  return caBench({ certificates: Number(o.certificates) });
});
