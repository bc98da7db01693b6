/**
 * Bench 6 (issue #16, for issue #19): what `[puppetdb] url` adds to a DELETE. A REAL PuppetDB
 * 7.12.1 on PostgreSQL 15 beside a real puppetserver (test/support/puppetdb.ts; the server only
 * provides the CA and the master's certificate espm talks to PuppetDB with), and two espm
 * daemons from `bin/espm` (sandbox classifier and CA): one with `[puppetdb] url` set, one
 * without. Every name is made active in PuppetDB first (a `replace facts` command, as an
 * agent's first run would), then each daemon creates and deletes its names, the DELETEs
 * interleaved call by call. Goal: added p50 (on − off) ≤ 30 ms, and per DELETE at most one
 * PuppetDB query and one command (PuppetDB's access log).
 *
 *   npm run build && npx tsx bench/puppetdb.ts [--deletes 30]
 *
 * Skips, saying why, when PuppetDB / PostgreSQL / puppetserver are not installed. Loopback only;
 * bounded by the count (starting puppetserver and PuppetDB takes 1–2 min).
 *
 * @packageDocumentation
 */
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { Command } from 'commander';
import { puppetdbMissing, startPuppetDbStack, type PuppetDbStack } from '../test/support/puppetdb.js';
import { Daemon, formatSummary, loadAverage, round, runAlone, summarize, type BenchResult } from './support.js';

/** Options of {@link puppetdbBench}. */
export interface PuppetDbBenchOptions {
  /** DELETEs per daemon (default 30). */
  deletes?: number;
  /** Goal: added p50, ms (default 30). */
  goalMs?: number;
}

/** POSTs a command to PuppetDB as the master, waiting for it to be processed. */
async function pdbCommand(stack: PuppetDbStack, command: string, version: number, certname: string, payload: unknown): Promise<void> {
  const ssl = stack.server.ssldir;
  const [cert, key, ca] = await Promise.all(['certs/localhost.pem', 'private_keys/localhost.pem', 'certs/ca.pem'].map((p) => readFile(join(ssl, p))));
  const body = JSON.stringify(payload);
  const path = `/pdb/cmd/v1?command=${command}&version=${version}&certname=${certname}&secondsToWaitForCompletion=10`;
  await new Promise<void>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', servername: 'localhost', port: stack.puppetdb.port, method: 'POST', path, cert, key, ca, headers: { host: `localhost:${stack.puppetdb.port}`, 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${command} for ${certname}: HTTP ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Runs the bench.
 *
 * @returns the added p50 and the PuppetDB requests per DELETE vs the goals, raw numbers
 */
export async function puppetdbBench(options: PuppetDbBenchOptions = {}): Promise<BenchResult> {
  const n = options.deletes ?? 30;
  const goalMs = options.goalMs ?? 30;
  const result: BenchResult = {
    name: 'puppetdb',
    title: '6. DELETE with PuppetDB on vs off (real PuppetDB 7.12.1)',
    command: `npx tsx bench/puppetdb.ts --deletes ${n}`,
    figures: [],
    raw: [],
    analysis: [],
  };
  const missing = puppetdbMissing();
  if (missing !== undefined) return { ...result, skipped: missing };
  const stack = await startPuppetDbStack({ port: 0 });
  const daemons: Daemon[] = [];
  try {
    const sandboxes = { classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } };
    const ssl = stack.server.ssldir;
    const off = await Daemon.start({ config: sandboxes });
    daemons.push(off);
    const on = await Daemon.start({
      config: { ...sandboxes, puppetdb: { url: stack.puppetdb.url, cert: join(ssl, 'certs/localhost.pem'), key: join(ssl, 'private_keys/localhost.pem'), ca: join(ssl, 'certs/ca.pem') } },
    });
    daemons.push(on);
    const clients = { on: on.client({ maxSockets: 1 }), off: off.client({ maxSockets: 1 }) };
    const name = (side: string, i: number) => `bench-${side}-${i}.example.test`;
    const now = new Date().toISOString();
    for (let i = -1; i < n; i += 1) {
      for (const side of ['on', 'off'] as const) {
        const certname = name(side, i);
        await pdbCommand(stack, 'replace_facts', 5, certname, { certname, environment: 'production', producer_timestamp: now, producer: 'localhost', values: { bench: 'espm' } });
        const created = await clients[side].request('POST', '/v1/nodes', { name: certname });
        if (created.status !== 201) throw new Error(`POST /v1/nodes ${certname}: ${created.status} ${created.body.slice(0, 300)}`);
      }
    }
    const accessBefore = (await stack.puppetdb.accessLog()).split('\n').filter((l) => l !== '').length;
    const ms = { on: [] as number[], off: [] as number[] };
    for (let i = -1; i < n; i += 1) {
      // i = -1 warms both daemons (connections, identity); alternate which side goes first.
      for (const side of i % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const answer = await clients[side].request('DELETE', `/v1/nodes/${name(side, i)}`);
        if (answer.status !== 204) throw new Error(`DELETE ${name(side, i)}: ${answer.status} ${answer.body.slice(0, 300)}`);
        if (i >= 0) ms[side].push(answer.ms);
      }
    }
    const accessLines = (await stack.puppetdb.accessLog()).split('\n').filter((l) => l !== '').slice(accessBefore);
    const queryLines = accessLines.filter((l) => l.includes('"GET /pdb/query/v4/nodes/'));
    const commandLines = accessLines.filter((l) => l.includes('"POST /pdb/cmd/v1?command=deactivate_node'));
    const queries = queryLines.length;
    const commands = commandLines.length;
    // `%D` (the last field): the time PuppetDB's Jetty spent on the request, ms.
    const serverMs = (lines: string[]) => summarize(lines.slice(1).map((l) => Number(l.split(' ').at(-1))));
    const warm = 1; // the warm-up DELETE of the `on` daemon is in the log too
    const perDeleteQueries = round((queries - warm) / n, 2);
    const perDeleteCommands = round((commands - warm) / n, 2);
    const sOn = summarize(ms.on);
    const sOff = summarize(ms.off);
    const added = round(sOn.p50 - sOff.p50);
    result.figures.push(
      { label: 'DELETE /v1/nodes: p50 with PuppetDB − p50 without', value: added, unit: 'ms', goal: `≤ ${goalMs} ms`, met: added <= goalMs },
      { label: 'PuppetDB requests per DELETE (query + deactivate command)', value: `${perDeleteQueries} + ${perDeleteCommands}`, unit: '', goal: '≤ 1 + 1', met: perDeleteQueries <= 1 && perDeleteCommands <= 1 },
    );
    const deactivated = (await stack.puppetdb.get(`/pdb/query/v4/nodes/${name('on', 0)}`)).body as { deactivated?: string | null };
    result.raw.push(
      `- puppetserver 7.9.5 and PuppetDB 7.12.1 on PostgreSQL 15 (Debian packages) started by the test harness; two espm daemons (sandbox classifier and CA), one with \`[puppetdb] url\`; every name made active in PuppetDB with \`replace facts\` v5 first; ${n} DELETEs per daemon after one warm-up each, interleaved (which goes first alternates), one connection each.`,
      `- DELETE /v1/nodes, PuppetDB on: ${formatSummary(sOn)}`,
      `- DELETE /v1/nodes, PuppetDB off: ${formatSummary(sOff)}`,
      `- PuppetDB access log during the DELETEs: ${queries} node queries, ${commands} deactivate_node commands (warm-up included); ${name('on', 0)} afterwards: deactivated = ${String(deactivated.deactivated)}.`,
      `- Time PuppetDB spent (access log %D, warm-up left out): node query ${formatSummary(serverMs(queryLines))}; deactivate_node ${formatSummary(serverMs(commandLines))}.`,
    );
    const inPuppetDb = serverMs(queryLines).p50 + serverMs(commandLines).p50;
    result.analysis.push(
      `- ${added <= goalMs ? 'Goal met' : 'Goal missed'} (${added} ms added at p50). Of it, PuppetDB's own time is ≈ ${round(inPuppetDb)} ms (query p50 + command p50, its access log); espm's share — one more durable ledger write (the step owed, before PuppetDB is asked), TLS requests on a kept-alive connection, parsing — is the remaining ≈ ${round(added - inPuppetDb)} ms. The command waits for PuppetDB to process it (\`secondsToWaitForCompletion\`), so that a 204 means PuppetDB already shows the name deactivated; sending it without waiting would save part of the command's time. PuppetDB's times grow with the machine's load (load average ${loadAverage()} at the end).`,
    );
    clients.on.close();
    clients.off.close();
  } finally {
    for (const d of daemons) await d.stop();
    await stack.stop();
  }
  return result;
}

runAlone(import.meta.url, async () => {
  const o = new Command('puppetdb').option('--deletes <n>', 'DELETEs per daemon', '30').parse().opts<{ deletes: string }>();
  return puppetdbBench({ deletes: Number(o.deletes) });
});
