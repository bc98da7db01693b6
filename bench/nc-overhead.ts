/**
 * espm's overhead per call with `[classifier] backend = pe-node-classifier` (issue #19; not run
 * in CI): for list, create and delete, the latency of the espm call (HTTPS, keep-alive, pinned
 * certificate, against a spawned `bin/espm`) vs the SAME Node Classifier requests sent directly
 * to the double with undici (the client certificate espm uses, keep-alive), interleaved call by
 * call. "The same requests": recorded from the double's request log while espm serves each
 * call; the direct call replays the requests of espm's latest call of that kind with the node's
 * name (and, for a delete, its group's id) substituted — so the direct side sends exactly what
 * espm sends, nothing more (espm's sequences, and how often each occurred, are reported).
 *
 * The double (test/fixtures/node-classifier/, built from the published Node Classifier API v1
 * docs) runs in this process and answers every request after `--delay` ms (default 100, as in
 * bench/nc-requests.ts and bench 3: a console's classifier service is a JVM behind TLS, not a
 * loopback no-op). Goal: espm p50 / direct p50 ≤ 1.10 for every operation; the added
 * milliseconds (espm − direct p50) are reported too, since they do not depend on the delay.
 *
 *   npm run build && npx tsx bench/nc-overhead.ts [--calls 50] [--delay 100]
 *
 * bench/run.ts runs it as `nc-overhead` ({@link ncOverheadBench}). Loopback only; bounded by
 * the call count.
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { Agent, request } from 'undici';
import { startNodeClassifier } from '../test/support/node-classifier.js';
import { Daemon, formatSummary, interleaved, msSince, round, runAlone, summarize, type Answer, type BenchResult } from './support.js';

/** One Node Classifier request as the double logged it (path below `/classifier-api`). */
interface Sent {
  method: string;
  path: string;
  body: unknown;
}

/** The name the recorded requests carry, replaced by each call's own. */
const TEMPLATE_NAME = 'nco-template.example.test';
/** Stands for the id of the node's own group in a recorded delete. */
const GROUP_ID = ':group-id';
/** Groups, classes and a parameter of every create (as in bench/nc-requests.ts). */
const NODE = { groups: ['default', 'puppet_master'], classes: ['ntp'], parameters: { role: 'web' } };

/** `text` with every `from` replaced by `to`. */
const swap = (text: string, from: string, to: string): string => text.split(from).join(to);

/**
 * Runs the bench.
 *
 * @param calls - calls per operation and side (list, create, delete)
 * @param delayMs - ms the double takes per request
 * @param goal - espm p50 / direct p50 at most this
 * @returns the p50 ratio of each operation vs the goal, raw order statistics
 * @throws when espm answers a call with an unexpected status, or a direct request is not answered as espm's was
 */
export async function ncOverheadBench(calls = 50, delayMs = 100, goal = 1.1): Promise<BenchResult> {
  const result: BenchResult = {
    name: 'nc-overhead',
    title: 'Node Classifier overhead: espm vs the same requests sent directly (bench/nc-overhead.ts)',
    command: `npx tsx bench/nc-overhead.ts --calls ${calls} --delay ${delayMs}`,
    figures: [],
    raw: [],
    analysis: [],
  };
  const rig = await startNodeClassifier();
  rig.nc.faults.push(...['GET', 'POST', 'PUT', 'DELETE'].map((method) => ({ method, path: /./, action: 'delay' as const, ms: delayMs })));
  const agent = new Agent({ connect: { cert: rig.pki.clientCert, key: rig.pki.clientKey, ca: rig.pki.ca, servername: 'localhost' } });
  let daemon: Daemon | undefined;
  try {
    daemon = await Daemon.start({ config: { classifier: { ...rig.config, cache_ttl: 3600 }, ca: { backend: 'sandbox' } }, waitForLog: 'console found' });
    const client = daemon.client({ maxSockets: 1 });
    const expect = (answer: Answer, status: number, what: string): number => {
      if (answer.status !== status) throw new Error(`espm ${what} answered ${answer.status}: ${answer.body.slice(0, 500)}`);
      return answer.ms;
    };
    /** Sends one recorded request directly; the status espm got for it is expected; resolves with its Location. */
    const send = async (r: Sent, status: number): Promise<string | undefined> => {
      const answer = await request(`${rig.nc.url}${r.path}`, {
        method: r.method as 'GET',
        dispatcher: agent,
        ...(r.body === undefined ? {} : { body: JSON.stringify(r.body), headers: { 'content-type': 'application/json' } }),
      });
      await answer.body.text();
      if (answer.statusCode !== status) throw new Error(`direct ${r.method} ${r.path} answered ${answer.statusCode}, espm's ${status}`);
      const location = answer.headers['location'];
      return typeof location === 'string' ? location : undefined;
    };
    type Recorded = Array<Sent & { status: number }>;
    const latest = new Map<string, Recorded>();
    const seen = new Map<string, Map<string, number>>();
    /** Runs an espm call, records what it sent the double (with `name` → the template name, `groupId` → {@link GROUP_ID}) as `op`'s latest sequence. */
    const recorded = async (op: string, call: () => Promise<number>, name = TEMPLATE_NAME, groupId = GROUP_ID): Promise<number> => {
      const from = rig.nc.log.length;
      const ms = await call();
      const sequence = rig.nc.log.slice(from).map(({ method, path, body, status }) => ({
        method,
        path: swap(swap(path, name, TEMPLATE_NAME), groupId, GROUP_ID),
        body: body === undefined ? undefined : (JSON.parse(swap(JSON.stringify(body), name, TEMPLATE_NAME)) as unknown),
        status,
      }));
      latest.set(op, sequence);
      const shape = sequence.map((r) => `${r.method} ${r.path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id')}`).join(', ');
      const counts = seen.get(op) ?? new Map<string, number>();
      seen.set(op, counts.set(shape, (counts.get(shape) ?? 0) + 1));
      return ms;
    };
    /** Replays `op`'s latest recorded sequence directly, one request after the other, with `name` (and the group id) put in. */
    const replay = async (op: string, name: string, groupId = ''): Promise<{ ms: number; location?: string }> => {
      const sequence = latest.get(op) ?? [];
      const t = process.hrtime.bigint();
      let location: string | undefined;
      for (const r of sequence) {
        const path = swap(swap(r.path, TEMPLATE_NAME, name), GROUP_ID, groupId);
        const body = r.body === undefined ? undefined : (JSON.parse(swap(JSON.stringify(r.body), TEMPLATE_NAME, name)) as unknown);
        location = (await send({ method: r.method, path, body }, r.status)) ?? location;
      }
      return { ms: msSince(t), ...(location === undefined ? {} : { location }) };
    };
    const espmGroupId = (name: string): string => {
      const id = rig.nc.byName(`espm: ${name}`)?.id;
      if (id === undefined) throw new Error(`espm's create of ${name} left no group "espm: ${name}" in the double`);
      return id;
    };
    const directIds = new Map<string, string>();
    const groupIdOf = (location: string | undefined, name: string): string => {
      const id = /\/v1\/groups\/([^/]+)$/.exec(location ?? '')?.[1];
      if (id === undefined) throw new Error(`direct create of ${name}: no group id in Location ${String(location)}`);
      return id;
    };
    const operations = [
      {
        name: 'list',
        espm: () => recorded('list', async () => expect(await client.request('GET', '/v1/groups?refresh=true'), 200, 'GET /v1/groups?refresh=true')),
        direct: async () => (await replay('list', TEMPLATE_NAME)).ms,
      },
      {
        name: 'create',
        espm: (i: number) => recorded('create', async () => expect(await client.request('POST', '/v1/nodes', { name: `nco-e${i}.example.test`, ...NODE }), 201, 'POST /v1/nodes'), `nco-e${i}.example.test`),
        direct: async (i: number) => {
          const name = `nco-d${i}.example.test`;
          const sent = await replay('create', name);
          directIds.set(name, groupIdOf(sent.location, name));
          return sent.ms;
        },
      },
      {
        name: 'delete',
        espm: (i: number) => {
          const name = `nco-e${i}.example.test`;
          return recorded('delete', async () => expect(await client.request('DELETE', `/v1/nodes/${name}`), 204, 'DELETE /v1/nodes'), name, espmGroupId(name));
        },
        direct: async (i: number) => (await replay('delete', `nco-d${i}.example.test`, directIds.get(`nco-d${i}.example.test`))).ms,
      },
    ];
    // Warm-up (not measured): one call of each kind on each side (espm's first also records the sequence).
    for (const op of operations) {
      await op.espm(100_000);
      await op.direct(100_000);
    }
    seen.clear();
    const rows: string[] = [];
    for (const op of operations) {
      const cpuBefore = await daemon.cpuMs();
      // The direct side replays espm's latest call: this one's or, when it goes first, the previous one's.
      const { espmMs, directMs } = await interleaved(calls, op.espm, op.direct);
      const cpuPerCall = ((await daemon.cpuMs()) - cpuBefore) / calls;
      const espm = summarize(espmMs);
      const direct = summarize(directMs);
      const ratio = espm.p50 / direct.p50;
      result.figures.push({ label: `${op.name}: espm p50 / direct p50 (${round(espm.p50)} / ${round(direct.p50)} ms, +${round(espm.p50 - direct.p50)} ms)`, value: ratio.toFixed(3), unit: '×', goal: `≤ ${goal.toFixed(2)}`, met: ratio <= goal });
      rows.push(
        `| ${op.name} | ${[...(seen.get(op.name) ?? new Map<string, number>())].map(([shape, n]) => `${n} × ${swap(swap(shape, TEMPLATE_NAME, 'N'), GROUP_ID, ':own-group')}`).join('; ')} | ${calls} | ${round(espm.p50)} / ${round(espm.p99)} | ${round(direct.p50)} / ${round(direct.p99)} | ${ratio.toFixed(3)} | ${round(espm.p50 - direct.p50)} | ${round(cpuPerCall)} |`,
      );
      result.raw.push(`- ${op.name}: espm ${formatSummary(espm)}; direct ${formatSummary(direct)}.`);
      process.stdout.write(`  nc-overhead ${op.name}: espm p50 ${round(espm.p50)} ms, direct p50 ${round(direct.p50)} ms, ratio ${ratio.toFixed(3)}\n`);
    }
    client.close();
    result.raw.unshift(
      `- The Node Classifier double in the bench's process, every request answered after ${delayMs} ms; espm spawned from \`bin/espm\` (\`[classifier] backend = pe-node-classifier\`, certificate authentication, \`cache_ttl = 3600\`; sandbox CA), one keep-alive TLS connection from the bench; the direct side: undici with espm's client certificate, keep-alive. ${calls} calls per operation and side, alternating which goes first. A create: 2 groups, 1 class, 1 parameter.`,
      '',
      '| operation | Node Classifier requests espm sent per call (× calls; replayed directly) | n | espm p50 / p99 ms | direct p50 / p99 ms | ratio p50 | espm − direct p50 ms | espm CPU per call ms |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    );
    const missed = result.figures.filter((f) => f.met === false);
    if (missed.length > 0) {
      const ledger = (await readFile(join(daemon.setup.dir, 'var', 'ledger.json'), 'utf8').catch(() => '')).length;
      result.analysis.push(
        `- Goal missed for ${missed.map((f) => f.label.split(':')[0]).join(', ')}. espm's share per call is the column "espm − direct": the bench's HTTPS request to espm (TLS on loopback, PSK check, JSON), the ledger written twice with fsync for a create or a delete (${ledger} bytes now), and espm's own client to the double (undici too); its CPU per call is in the last column. It does not grow with the double's delay: with a real console's tens to hundreds of ms per request it is a smaller share.`,
      );
    }
  } finally {
    await daemon?.stop();
    await agent.close();
    await rig.teardown();
  }
  return result;
}

runAlone(import.meta.url, () => {
  const o = new Command('nc-overhead')
    .option('--calls <n>', 'calls per operation and side (list, create, delete)', '50')
    .option('--delay <ms>', 'ms the double takes per request', '100')
    .parse()
    .opts<{ calls: string; delay: string }>();
  return ncOverheadBench(Number(o.calls), Number(o.delay));
});
