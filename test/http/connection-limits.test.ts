/**
 * Holding the door (issue #18): what a peer without the PSK can hold before it authenticates.
 * A real daemon (`bin/espm`, sandbox backends) with small limits and timeouts:
 * - thousands of idle TLS connections from one address: the excess is refused at accept time,
 *   espm's RSS stays bounded, and a request from another address is answered at once throughout;
 * - every address together is capped too (`max_connections`);
 * - slow headers, a slow body, an idle connection after its handshake and a half-done
 *   handshake are closed at their timeouts (within one checking interval);
 * - an address outside `[server] allow` is refused before any handshake, while a request read
 *   on an already open connection of a removed address still gets 403 problem+json;
 * - refusals are counted in `GET /v1/status` and logged as one summary line, never one per
 *   connection; after a flood of ≈ 900 connections, once they are closed, espm gives the freed
 *   memory back (`[server] release_memory_after`, `malloc_trim(0)`): file descriptors are back at
 *   their idle count and RSS within 15 MB of idle (glibc alone would keep ≈ 30–40 MB of it).
 *
 * Source addresses: Linux routes all of 127.0.0.0/8 to loopback (test/support/connection-daemon.ts
 * binds client sockets to them). The flood is opened in batches
 * and never holds more than 900 descriptors, so it runs under the default soft `ulimit -n` of
 * 1024: it exceeds the configured limits, not the process's.
 */
import { once } from 'node:events';
import { access } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { closedAfter, connectionClient, sleep, startDaemon, type Counts, type Daemon } from '../support/connection-daemon.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The connection limits under test (espm.ini `[server]`); timeouts long enough for a flood. */
const LIMITS = { max_connections: 900, max_connections_per_address: 100 };
/** Addresses that fill `max_connections` together, `max_connections_per_address` each. */
const FILLERS = Array.from({ length: LIMITS.max_connections / LIMITS.max_connections_per_address }, (_, i) => `127.0.0.${3 + i}`);
/**
 * `[server] release_memory_after` of the flood daemon, connections: each flood below reaches it.
 * ESPM_TEST_RELEASE_MEMORY_AFTER=0 turns the release off, to see the RSS test fail without it.
 */
const RELEASE_MEMORY_AFTER = Number(process.env['ESPM_TEST_RELEASE_MEMORY_AFTER'] ?? 50);
/** How long espm waits after a flood before releasing memory, s (src/http/memory-release.ts SETTLE_MS). */
const SETTLE_S = 5;
/**
 * After the release, espm's RSS is back within this of its idle RSS, MB. Measured here: 5–11 MB
 * above idle after the release (V8's heap, grown during the flood, keeps some pages); 30–39 MB
 * above without it (ESPM_TEST_RELEASE_MEMORY_AFTER=0).
 */
const RSS_NEAR_IDLE_MB = 15;
/** The timeouts under test (espm.ini `[server]`, seconds), on a second daemon. */
const TIMEOUTS = { handshake_timeout: 2, first_request_timeout: 2, headers_timeout: 3, request_timeout: 5, keepalive_timeout: 5 };
/** Timeouts of the flood daemon: longer than the flood takes, s. */
const LONG_TIMEOUTS = { handshake_timeout: 60, first_request_timeout: 60, headers_timeout: 60, request_timeout: 60 };
/** Node checks the headers and request timeouts this often, s (src/http/connection-guard.ts). */
const CHECK_INTERVAL_S = 1;
/** Slack on top of a timeout for a loaded CI machine, s. */
const SLACK_S = 1.5;
/** Addresses allowed to connect: 127.0.0.0 – 127.0.0.15. */
const ALLOW = '127.0.0.0/28';
const PLATFORM = '127.0.0.1';
const FLOODER = '127.0.0.2';
const OUTSIDER = '127.0.0.20';

/** The flood daemon (limits, long timeouts) and the timeouts daemon (short timeouts, allow-list). */
let flooded: Daemon;
let timing: Daemon;
/** The daemon the helpers below talk to. */
let espm: Daemon;
/** The flood daemon's RSS (MB) and fds before its first flood. */
let floodIdle: { rss: number; fds: number };

const { rssMb, fds, openTls, flood, call, counts } = connectionClient(() => espm, PLATFORM);

beforeAll(async () => {
  await access(join(ROOT, 'dist', 'cli', 'espm.js')).catch(() => {
    throw new Error('dist/cli/espm.js is missing: run `npm run build` first');
  });
  flooded = await startDaemon({ ...LIMITS, ...LONG_TIMEOUTS, release_memory_after: RELEASE_MEMORY_AFTER });
  timing = await startDaemon({ allow: ALLOW, ...TIMEOUTS });
}, 60_000);

afterAll(async () => {
  for (const d of [flooded, timing]) {
    if (d === undefined) continue;
    d.child.kill('SIGTERM');
    await d.child;
    await d.setup.remove();
  }
});

describe('connection limits before authentication (bin/espm)', () => {
  beforeAll(() => {
    espm = flooded;
  });

  it('a flood of idle TLS connections from one address: the excess refused, RSS bounded, another address answered at once throughout; afterwards fds back at idle, RSS within a bound of idle', async () => {
    await call(PLATFORM, '/v1/status');
    await sleep(1000);
    const idle = { rss: await rssMb(), fds: await fds() };
    floodIdle = idle;

    // The platform's address calls every 100 ms while the flood runs.
    const latencies: number[] = [];
    const statuses: number[] = [];
    let flooding = true;
    const platform = (async () => {
      while (flooding) {
        const res = await call(PLATFORM, '/v1/status');
        statuses.push(res.status);
        latencies.push(res.ms);
        await sleep(100);
      }
    })();
    let peakRss = idle.rss;
    const sampler = setInterval(() => void rssMb().then((mb) => (peakRss = Math.max(peakRss, mb)), () => undefined), 100);

    const attempts = 3000;
    const { kept, refused } = await flood(FLOODER, attempts);
    peakRss = Math.max(peakRss, await rssMb());
    const during = await counts();
    await sleep(300);
    flooding = false;
    await platform;
    clearInterval(sampler);

    expect({ kept: kept.length, refused }).toEqual({ kept: LIMITS.max_connections_per_address, refused: attempts - LIMITS.max_connections_per_address });
    expect(during.refused.per_address_limit).toBe(attempts - LIMITS.max_connections_per_address);
    expect(during.open).toBeGreaterThanOrEqual(LIMITS.max_connections_per_address);
    expect(statuses.length).toBeGreaterThanOrEqual(5);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // "At once": a new TLS connection and an answer each time, never queued behind the flood
    // (the bound leaves room for a loaded CI machine: this process does the flood's TLS too).
    expect(Math.max(...latencies)).toBeLessThan(2000);
    // 100 idle TLS connections cost a few MB (measured ≈ 55 KB each); 40 MB is the bound.
    expect(peakRss - idle.rss).toBeLessThan(40);

    // The idle flood is closed: fds come back to idle at once; RSS within a bound of idle (the
    // memory release runs only 5 s after the count settles: the test after the next checks it).
    for (const s of kept) s.destroy();
    await sleep(2000);
    const after = { rss: await rssMb(), fds: await fds() };
    expect(after.fds).toBeLessThanOrEqual(idle.fds + 2);
    expect(after.rss - idle.rss).toBeLessThan(30);
    console.info(
      `flood of ${attempts} from one address: kept ${kept.length}, refused ${refused}; espm RSS idle ${idle.rss.toFixed(1)} MB, peak ${peakRss.toFixed(1)} MB, after ${after.rss.toFixed(1)} MB; fds idle ${idle.fds}, after ${after.fds}; platform p50/max ${[...latencies].sort((a, b) => a - b)[Math.floor(latencies.length / 2)]}/${Math.max(...latencies)} ms`,
    );
  }, 120_000);

  it('every address together is capped at max_connections; a slot freed is usable again', async () => {
    const before = await counts();
    const held: TLSSocket[] = [];
    for (const from of FILLERS) held.push(...(await flood(from, LIMITS.max_connections_per_address)).kept);
    // Up to 900 in all; one more address (and the platform's) is refused now.
    expect(held.length).toBeGreaterThan(LIMITS.max_connections - 5);
    const another = await flood(`127.0.0.${3 + FILLERS.length}`, 20, 20);
    expect(another.kept).toHaveLength(0);
    for (const s of held.splice(0, 10)) s.destroy();
    await sleep(300);
    const res = await call(PLATFORM, '/v1/status');
    expect(res.status).toBe(200);
    const now = res.body['connections'] as Counts;
    expect(now.refused.total_limit - before.refused.total_limit).toBeGreaterThanOrEqual(20);
    for (const s of held) s.destroy();
  }, 60_000);

  it('after a flood the freed memory is given back once: RSS and fds back near their idle values, the release logged and counted', async () => {
    const before = await counts();
    const held: TLSSocket[] = [];
    for (const from of FILLERS) held.push(...(await flood(from, LIMITS.max_connections_per_address)).kept);
    expect(held.length).toBeGreaterThan(LIMITS.max_connections - 5);
    const peak = await rssMb();
    for (const s of held) s.destroy();
    // The release runs SETTLE_S after the count fell back (to a quarter of release_memory_after).
    const deadline = Date.now() + (SETTLE_S + 10) * 1000;
    let now = await counts();
    while (now.memory_releases === before.memory_releases && Date.now() < deadline) {
      await sleep(250);
      now = await counts();
    }
    const after = { rss: await rssMb(), fds: await fds() };
    console.info(
      `release_memory_after ${RELEASE_MEMORY_AFTER}: ${held.length} connections held; espm RSS idle ${floodIdle.rss.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, after ${after.rss.toFixed(1)} MB; fds idle ${floodIdle.fds}, after ${after.fds}; memory releases ${now.memory_releases - before.memory_releases}`,
    );
    // Back near idle (without the release glibc keeps the freed TLS memory: RSS stays ≈ 15–50 MB up).
    expect(after.rss - floodIdle.rss).toBeLessThan(RSS_NEAR_IDLE_MB);
    expect(after.fds).toBeLessThanOrEqual(floodIdle.fds + 2);
    expect(now.memory_releases - before.memory_releases).toBe(1);
    const releases = espm
      .output()
      .split('\n')
      .filter((l) => l.includes('freed memory released to the system'))
      .map((l) => JSON.parse(l) as { level: number; rss_before_mb: number; rss_after_mb: number; gc_ms: number; trim_ms: number });
    const last = releases.at(-1)!;
    expect(last.level).toBe(30);
    expect(last.rss_after_mb).toBeLessThan(last.rss_before_mb);
    expect(last.trim_ms).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('refusals and timeouts are logged as a summary at most every 10 s, never one line per connection', async () => {
    // The first summary is written 10 s after the first refusal of its window.
    const deadline = Date.now() + 15_000;
    while (!espm.output().includes('connections refused or timed out') && Date.now() < deadline) await sleep(100);
    const lines = espm
      .output()
      .split('\n')
      .filter((l) => l.includes('connections refused or timed out'))
      .map((l) => JSON.parse(l) as { level: number; time: number; refused: Record<string, number>; addresses: Array<{ address: string; count: number }> });
    expect(lines.length).toBeGreaterThanOrEqual(1);
    // Thousands of refusals in the tests above, a handful of lines.
    expect(lines.length).toBeLessThanOrEqual(8);
    expect(lines[0]!.level).toBe(40);
    expect(lines.some((l) => l.refused['per_address_limit']! > 1000)).toBe(true);
    expect(lines.some((l) => l.addresses.some((a) => a.address === FLOODER))).toBe(true);
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.time - lines[i - 1]!.time).toBeGreaterThanOrEqual(9_900);
    // No line per refused connection: no TLS error lines for them at info level.
    expect(espm.output().split('TLS handshake failed').length - 1).toBeLessThan(5);
  }, 30_000);
});

describe('timeouts and the allow-list before authentication (bin/espm)', () => {
  beforeAll(() => {
    espm = timing;
  });

  it('slow headers, a slow body, idle after the handshake and a half-done handshake are closed at their timeouts', async () => {
    const before = await counts();
    const started = Date.now();

    // Half-done handshake: TCP connected, a partial ClientHello, then nothing.
    const half = netConnect({ host: '127.0.0.1', port: espm.port, localAddress: '127.0.0.7' });
    half.on('error', () => undefined);
    await once(half, 'connect');
    half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));

    // Idle after the handshake: never a byte of a request.
    const idle = (await openTls('127.0.0.8'))!;
    idle.on('error', () => undefined);
    const idleSince = Date.now();

    // Slow headers: a request line, then one header line every 500 ms (each resets no timer).
    const slow = (await openTls('127.0.0.9'))!;
    slow.on('error', () => undefined);
    const slowSince = Date.now();
    let slowAnswer = '';
    slow.on('data', (c: Buffer) => (slowAnswer += c.toString()));
    slow.write('GET /v1/status HTTP/1.1\r\nHost: localhost\r\n');
    const drip = setInterval(() => slow.writable && slow.write(`X-Drip-${Date.now()}: 1\r\n`), 500);

    // Slow body: complete headers with the PSK and Content-Length 100, then 10 bytes.
    const body = (await openTls('127.0.0.10'))!;
    body.on('error', () => undefined);
    const bodySince = Date.now();
    let bodyAnswer = '';
    body.on('data', (c: Buffer) => (bodyAnswer += c.toString()));
    body.write(
      `POST /v1/nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${espm.setup.plan.psk}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":"x`,
    );

    const [halfS, idleS, slowS, bodyS] = await Promise.all([
      closedAfter(half, started, 10),
      closedAfter(idle, idleSince, 10),
      closedAfter(slow, slowSince, 10),
      closedAfter(body, bodySince, 12),
    ]);
    clearInterval(drip);

    expect(halfS).toBeGreaterThanOrEqual(TIMEOUTS.handshake_timeout - 0.1);
    expect(halfS).toBeLessThan(TIMEOUTS.handshake_timeout + SLACK_S);
    expect(idleS).toBeGreaterThanOrEqual(TIMEOUTS.first_request_timeout - 0.1);
    expect(idleS).toBeLessThan(TIMEOUTS.first_request_timeout + SLACK_S);
    expect(slowS).toBeGreaterThanOrEqual(TIMEOUTS.headers_timeout - 0.1);
    expect(slowS).toBeLessThan(TIMEOUTS.headers_timeout + CHECK_INTERVAL_S + SLACK_S);
    expect(bodyS).toBeGreaterThanOrEqual(TIMEOUTS.request_timeout - 0.1);
    expect(bodyS).toBeLessThan(TIMEOUTS.request_timeout + CHECK_INTERVAL_S + SLACK_S);
    // Where a request was being read, the answer is 408 problem+json.
    expect(slowAnswer).toMatch(/^HTTP\/1\.1 408 /);
    expect(slowAnswer).toContain('application/problem+json');
    expect(bodyAnswer).toMatch(/^HTTP\/1\.1 408 /);

    const after = await counts();
    expect({
      handshake: after.timed_out.handshake - before.timed_out.handshake,
      first_request: after.timed_out.first_request - before.timed_out.first_request,
      request: after.timed_out.request - before.timed_out.request,
    }).toEqual({ handshake: 1, first_request: 1, request: 2 });
  }, 60_000);

  it('an address outside [server] allow is refused before any handshake; a request on an open connection of a removed address gets 403 problem+json', async () => {
    const before = await counts();
    // Refused at accept: reset without a single byte from espm, whatever the client sends.
    const outsider = netConnect({ host: '127.0.0.1', port: espm.port, localAddress: OUTSIDER });
    let received = 0;
    outsider.on('data', (c: Buffer) => (received += c.length));
    const error = new Promise<string>((resolve) => {
      outsider.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? ''));
      outsider.once('close', () => resolve('closed'));
    });
    const since = Date.now();
    // The reset may even beat the client's own `connect` event (seen under load: connect ECONNRESET).
    const connected = await new Promise<boolean>((resolve) => {
      outsider.once('connect', () => resolve(true));
      outsider.once('error', () => resolve(false));
    });
    if (connected) outsider.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x01]));
    expect(await error).toMatch(/ECONNRESET|EPIPE|closed/);
    expect(received).toBe(0);
    expect(Date.now() - since).toBeLessThan(1000);
    expect((await openTls(OUTSIDER)) === null).toBe(true);
    const after = await counts();
    expect(after.refused.not_allowed - before.refused.not_allowed).toBe(2);

    // A keep-alive connection opened while its address was allowed; then SIGHUP removes it.
    const kept = (await openTls('127.0.0.11'))!;
    let answer = '';
    kept.on('data', (c: Buffer) => (answer += c.toString()));
    await espm.setup.editConfig({ server: { allow: '127.0.0.0/29' } });
    const reloads = espm.output().split('config reloaded').length;
    process.kill(espm.pid, 'SIGHUP');
    const deadline = Date.now() + 10_000;
    while (espm.output().split('config reloaded').length === reloads && Date.now() < deadline) await sleep(25);
    kept.write(`GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${espm.setup.plan.psk}\r\n\r\n`);
    const answered = Date.now() + 5000;
    while (!answer.includes('"code"') && Date.now() < answered) await sleep(25);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('application/problem+json');
    expect(answer).toContain('"code":"forbidden"');
    kept.destroy();
    // The same address is now refused at accept time.
    expect(await openTls('127.0.0.11')).toBeNull();
  }, 60_000);
});
