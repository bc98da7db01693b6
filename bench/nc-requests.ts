/**
 * Node Classifier requests per launch and per termination (issue #19; not run in CI): espm
 * with `[classifier] backend = pe-node-classifier` against the Node Classifier double
 * (test/fixtures/node-classifier/, every request answered after `--delay` ms, default 100),
 * one launch at a time on a warm list cache. Counted from the double's request log, by method
 * and path: what one create (2 groups, 1 class, 1 parameter) and one delete send.
 * Goal (the minimum): a launch = 1 group create + 1 pin per chosen group; a termination =
 * its unpins + 1 group delete; nothing else (no reads).
 *
 *   npx tsx bench/nc-requests.ts [--launches 5] [--delay 100]
 *
 * Prints the figures; bench/run.ts runs it as `nc-requests` ({@link ncRequestsBench}).
 *
 * @packageDocumentation
 */
import { Command } from 'commander';
import { startNodeClassifier } from '../test/support/node-classifier.js';
import { apiClient, startEspm } from '../test/support/espm.js';
import { runAlone, type BenchResult } from './support.js';

/** What one launch or termination sent, by `METHOD path-shape` (ids replaced by `:id`). */
export type RequestCounts = Record<string, number>;

/** Counts log entries by method and path shape (UUIDs and node names replaced). */
function shapes(entries: ReadonlyArray<{ method: string; path: string }>): RequestCounts {
  const counts: RequestCounts = {};
  for (const { method, path } of entries) {
    const key = `${method} ${path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id').replace(/\?.*$/, '')}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Sums request counts. */
function summed(all: readonly RequestCounts[]): RequestCounts {
  const sum: RequestCounts = {};
  for (const c of all) for (const [k, n] of Object.entries(c)) sum[k] = (sum[k] ?? 0) + n;
  return sum;
}

const total = (c: RequestCounts): number => Object.values(c).reduce((a, b) => a + b, 0);

/**
 * Runs `launches` launches and terminations one at a time against the double.
 *
 * @param launches - how many
 * @param delayMs - ms the double takes per request
 * @returns each launch's and each termination's requests
 * @throws when a create or delete does not answer 201 / 204
 */
export async function measureNcRequests(launches: number, delayMs: number): Promise<{ perLaunch: RequestCounts[]; perTermination: RequestCounts[] }> {
  const rig = await startNodeClassifier();
  rig.nc.faults.push(...['GET', 'POST', 'PUT', 'DELETE'].map((method) => ({ method, path: /./, action: 'delay' as const, ms: delayMs })));
  const espm = await startEspm({ classifier: { ...rig.config } });
  try {
    const api = apiClient(espm);
    await api.get('/v1/groups');
    await api.get('/v1/classes');
    const perLaunch: RequestCounts[] = [];
    const perTermination: RequestCounts[] = [];
    for (let i = 0; i < launches; i += 1) {
      const name = `nc${i}.example.test`;
      let from = rig.nc.log.length;
      const created = await api.post('/v1/nodes', { name, groups: ['default', 'puppet_master'], classes: ['ntp'], parameters: { role: 'web' } });
      if (created.status !== 201) throw new Error(`create ${name}: ${created.status} ${JSON.stringify(created.body)}`);
      perLaunch.push(shapes(rig.nc.log.slice(from)));
      from = rig.nc.log.length;
      const deleted = await api.delete(`/v1/nodes/${name}`);
      if (deleted.status !== 204) throw new Error(`delete ${name}: ${deleted.status}`);
      perTermination.push(shapes(rig.nc.log.slice(from)));
    }
    return { perLaunch, perTermination };
  } finally {
    await espm.stop();
    await rig.teardown();
  }
}

/**
 * The bench as bench/run.ts runs it: 5 launches, the double at 100 ms per request.
 *
 * @returns the worst launch's and termination's request counts against the minimum (3 each: 2 groups chosen)
 */
export async function ncRequestsBench(launches = 5, delayMs = 100): Promise<BenchResult> {
  const { perLaunch, perTermination } = await measureNcRequests(launches, delayMs);
  const launchN = perLaunch.map(total);
  const termN = perTermination.map(total);
  return {
    name: 'nc-requests',
    title: 'Node Classifier requests per launch and termination (bench/nc-requests.ts)',
    command: `npx tsx bench/nc-requests.ts --launches ${launches} --delay ${delayMs}`,
    figures: [
      { label: 'requests per launch (2 groups; most of any launch)', value: Math.max(...launchN), unit: '', goal: '≤ 3 (1 group create + 1 pin per group)', met: Math.max(...launchN) <= 3 },
      { label: 'requests per termination (most of any)', value: Math.max(...termN), unit: '', goal: '≤ 3 (2 unpins + 1 delete)', met: Math.max(...termN) <= 3 },
    ],
    raw: [
      `${launches} launches one at a time (2 groups, 1 class, 1 parameter), the double answering after ${delayMs} ms, warm list cache.`,
      `- per launch: ${launchN.join(', ')}; by kind, summed: \`${JSON.stringify(summed(perLaunch))}\``,
      `- per termination: ${termN.join(', ')}; by kind, summed: \`${JSON.stringify(summed(perTermination))}\``,
    ],
    analysis: [],
  };
}

runAlone(import.meta.url, () => {
  const o = new Command('nc-requests').option('--launches <n>', 'launches measured', '5').option('--delay <ms>', 'ms the double takes per request', '100').parse().opts<{ launches: string; delay: string }>();
  return ncRequestsBench(Number(o.launches), Number(o.delay));
});
