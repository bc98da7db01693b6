/**
 * bench/launch-burst.ts's reporting: the markdown sections (issue #9's boot runs, issue #8's
 * puppet-cert runs with "Where the time goes") printed and appended to bench/RESULTS.md.
 *
 * @packageDocumentation
 */
import { DEFAULT_CONNECTIONS } from '../../src/puppet-http/client.js';
import { formatSummary, quantile, round, summarize } from '../support.js';
import { showCpu } from './measure.js';
import { caSummary, CONSOLE_SLEEP_TASKS, FLOOR_RATIO_GOAL, seconds, showTally, type CaBurstSummary, type RunResult } from './model.js';

/** The markdown section of issue #9's runs (sandbox CA). */
export function bootSection(results: readonly RunResult[], host: string, command: string, bootS: number, consoleSleepS: number, concurrencies: readonly number[]): string[] {
  const lines = [
    '',
    `## Launch burst — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (issue #9)`,
    '',
    `- Machine: ${host}.`,
    `- Command: \`${command}\`.`,
    `- A launch: \`POST /v1/nodes\` (groups, classes, one parameter → \`node:add\` + \`node:parameters\`), then \`POST /v1/certificates\` (sandbox CA). Console double 1.2.10 with \`boot_sleep: ${bootS}\` (every Rails boot sleeps ${bootS} s)${consoleSleepS > 0 ? ` and ${CONSOLE_SLEEP_TASKS.join(', ')} sleeping ${consoleSleepS} s each (\`faults\`)` : ''}. Fresh console and espm per run; "cold" = espm start-up (task list; with the worker: its boot and self-check) + burst.`,
    '',
    '| mode | in flight | start-up s | burst s | cold total s | ok | launch p50 / p95 / max s | node create p50 / p95 / max s | rake processes | tasks |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.mode} | ${r.concurrency} | ${r.startupS} | ${r.burstS}${r.stopped ? ` (${r.stopped})` : ''} | ${seconds((r.startupS + r.burstS) * 1000)} | ${r.ok}/${r.launches} | ${quantile(r.latenciesS, 0.5)} / ${quantile(r.latenciesS, 0.95)} / ${r.latenciesS[r.latenciesS.length - 1] ?? NaN} | ${quantile(r.createLatenciesS, 0.5)} / ${quantile(r.createLatenciesS, 0.95)} / ${r.createLatenciesS[r.createLatenciesS.length - 1] ?? NaN} | ${r.processes} | ${r.tasks} |`,
    ),
    '',
  ];
  for (const concurrency of concurrencies) {
    const on = results.find((r) => r.mode === 'worker' && r.concurrency === concurrency);
    const off = results.find((r) => r.mode === 'process' && r.concurrency === concurrency);
    if (on === undefined || off === undefined) continue;
    const cold = (r: RunResult) => r.startupS + r.burstS;
    lines.push(
      `- ${concurrency} in flight: burst ${off.burstS} s without the worker / ${on.burstS} s with it = **${(off.burstS / on.burstS).toFixed(1)}×**; ` +
        `cold ${seconds(cold(off) * 1000)} s / ${seconds(cold(on) * 1000)} s = **${(cold(off) / cold(on)).toFixed(1)}×**; ` +
        `goal (cold, with the worker, under 60 s): ${cold(on) < 60 ? 'met' : 'NOT met'}.`,
    );
  }
  lines.push(
    '- Raw launch latencies (s, sorted):',
    ...results.map((r) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.latenciesS.join(' ')}`),
    '- Raw node create latencies (s, sorted):',
    ...results.map((r) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.createLatenciesS.join(' ')}`),
    '',
  );
  return lines;
}

/** Where a puppet-cert run's wall time went, against its floor (markdown lines); `consoleSleepS`: the console's per-task sleep, or the Node Classifier's per-request delay, s. */
function whereTheTimeGoes(r: RunResult, s: CaBurstSummary, cores: number, consoleSleepS: number): string[] {
  const ca = r.ca!;
  const t = ca.timeline;
  const f = ca.floor;
  const n = Math.max(1, t.calls);
  const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const ms = (x: number): number => round(x, 0);
  // Per direct CA call, s: the whole call, the process's own logged time, and the rest (spawn + Ruby start-up + exit).
  const directCall = mean(f.callsS);
  const directBusy = mean(f.selfS);
  const directOutside = directCall - directBusy;
  const over = (burstS: number, floorS: number): string => `${burstS - floorS >= 0 ? '+' : '−'}${round(Math.abs(burstS - floorS), 1)} s`;
  const missed = !(s.ratio <= FLOOR_RATIO_GOAL && s.ok === s.launches);
  const creates = r.createLatenciesS;
  const nc = r.mode === 'pe-node-classifier';
  const lines = [
    `- **${r.mode}** (${s.ratio.toFixed(3)}×, goal ≤ ${FLOOR_RATIO_GOAL}: ${missed ? 'missed' : 'met'}): wall ${s.wallS} s = ` +
      `CA idle, no certificate request waiting ${seconds(t.starvedMs)} s (first create answered after ${seconds(t.firstCreateMs)} s${Number.isNaN(t.listsDoneMs) ? '' : `; the cold-cache group and class lists done after ${seconds(t.listsDoneMs)} s`}) + ` +
      `CA processes running ${seconds(t.busyMs)} s (${t.calls} × ${ms(t.busyMs / n)} ms) + ` +
      `between CA processes with a request waiting ${seconds(t.handoffMs)} s (${ms(t.handoffMs / n)} ms per call) + ` +
      `after the last CA process ${seconds(t.tailMs)} s. ` +
      `Floor ${s.floorS} s = direct create ${round(f.createS, 2)} s + ${s.launches} × ${ms(directCall * 1000)} ms (the CA process itself ${ms(directBusy * 1000)} ms, spawn + Ruby start-up + exit ${ms(directOutside * 1000)} ms).`,
    `  - Against the floor: waiting for creates ${over(t.starvedMs / 1000, f.createS)} (vs the direct create), CA work ${over(t.busyMs / 1000, directBusy * s.launches)} (${ms(t.busyMs / n)} vs ${ms(directBusy * 1000)} ms per call), ` +
      `between calls ${over(t.handoffMs / 1000, directOutside * s.launches)} (${ms(t.handoffMs / n)} vs ${ms(directOutside * 1000)} ms per call), after the last ${over(t.tailMs / 1000, 0)}.`,
    `  - Between CA calls, per call: espm's runner starting the command → the double's first log line ${ms(t.spawnToStartMs / n)} ms (direct ${ms(mean(f.spawnToStartS) * 1000)} ms: spawn + Ruby start-up); its last log line → the runner returning ${ms(t.endToReturnMs / n)} ms (direct ${ms(mean(f.endToReturnS) * 1000)} ms); ` +
      (t.handoffPairs > 0
        ? `espm's own work from one CA command returning to starting the next ${ms(t.espmBetweenMs / t.handoffPairs)} ms (over the ${t.handoffPairs} call${t.handoffPairs === 1 ? '' : 's'} whose request was already waiting: reading the certificate, key and CA certificate, removing the key, parsing the certificate, the mutex hand-off, the next request's check of the CA's signed copy; none in the direct loop).`
        : `espm's own work from one CA command returning to starting the next: not seen (no certificate request was ever waiting when a CA command returned).`),
    `  - Machine: CPU during the burst ${showCpu(ca.cpu, cores)}; during its floor ${showCpu(f.cpu, cores)}. Load average ${ca.loadBefore} before the burst, ${ca.loadAfter} after.${nc ? '' : ` On average ${round(t.rakeAlongsideCa, 1)} rake processes ran alongside each CA process.`}`,
    (nc
      ? `  - Node Classifier: ${s.ncRequests ?? 0} requests (${showTally(r.tasksByName)}) at ${consoleSleepS * 1000} ms each.`
      : `  - Console: ${Object.values(r.tasksByName).reduce((a, b) => a + b, 0)} tasks (${showTally(r.tasksByName)}), at most ${t.maxTasksInFlight} running at once, ${seconds(t.consoleTaskMs)} s of task time in all; ${r.processes} rake processes.`) +
      ` Node creates answered after ${creates[0] ?? NaN} s (first) / ${quantile(creates, 0.5)} s (p50) / ${creates[creates.length - 1] ?? NaN} s (last).`,
  ];
  if (!missed) return lines;
  const excessS = s.wallS - s.floorS;
  const starvedExcessS = t.starvedMs / 1000 - f.createS;
  if (nc) {
    if (starvedExcessS > 0.5 * excessS) {
      lines.push(
        `  - Why: the first certificate could start only after ${seconds(t.firstCreateMs)} s (its create; ${round(f.createS, 2)} s direct: ${round(f.addS, 2)} s group create + ${round(f.parametersS, 2)} s pin). The ${s.launches} creates start together and their ${s.ncRequests ?? 0} Node Classifier requests (${showTally(r.tasksByName)}) share espm's Puppet HTTPS client to the service (at most ${DEFAULT_CONNECTIONS} connections, src/puppet-http/client.ts), so each create's requests queue behind the others' and the creates are answered together — between ${creates[0] ?? NaN} and ${creates[creates.length - 1] ?? NaN} s. What would close it: more connections to the Node Classifier (src/puppet-http/client.ts); concurrent creates already share one groups read (src/classifier/nc-groups-read.ts).`,
      );
    }
  } else if (t.maxTasksInFlight > 1 && consoleSleepS > 0 && ((s.nodeAdd + s.parameters + s.lists) * consoleSleepS) / t.maxTasksInFlight > 0.9 * s.floorS) {
    const tasks = s.nodeAdd + s.parameters + s.lists;
    const boundS = (tasks * consoleSleepS) / t.maxTasksInFlight;
    const needed = Math.ceil((tasks * consoleSleepS) / (0.9 * s.floorS));
    lines.push(
      `  - Why: the console's own throughput bounds the burst. ${tasks} tasks of ${consoleSleepS} s each, at most ${t.maxTasksInFlight} at once (\`[classifier] workers\`; 0, the default, = the ${cores} cores + 1), take ≥ ${round(boundS, 1)} s end to end — ${(boundS / s.floorS).toFixed(2)}× the floor by themselves — and the last certificate can start only after the last create. ` +
        `The cap near the core count is deliberate (issue #19): a real console task is CPU-bound Ruby (Rails, ActiveRecord), so more tasks at once than cores would only share the cores; the double's tasks sleep instead, which is why more would help here and not on a real console. ` +
        `What would close it on this bench: \`[classifier] workers = ${needed}\` or more (measured separately: bench/launch-burst.ts --workers N), or fewer tasks per launch.`,
    );
  } else if (t.maxTasksInFlight <= 1 && starvedExcessS > 0.5 * excessS) {
    const tasks = s.nodeAdd + s.parameters + s.lists;
    lines.push(
      `  - Why: the console worker runs one task at a time (issue #9's design: one warm Rails process), so ${tasks} tasks of ${consoleSleepS} s each take ≥ ${round(tasks * consoleSleepS, 0)} s end to end whatever the CA does — more than the whole floor — and each certificate waits for its own create. ` +
        `Its queue is first come, first served: every launch's node:add (all queued at once, behind the lists) runs before the first node:parameters, so the first create is answered only after ${seconds(t.firstCreateMs)} s and the CA sat idle ${seconds(t.starvedMs)} s in all (another order would start the CA sooner, not end the burst sooner: the ${round(tasks * consoleSleepS, 0)} s of console work in one queue bound it). ` +
        `The worker pays a slow Rails boot once (issue #9) but serializes a slow task. What would close it (src/, not changed here): run console tasks concurrently when one is already running — a small pool of warm workers, or a rake process for a task that would otherwise queue behind the worker (a Rails boot each, which is what the worker saves).`,
    );
  } else if (starvedExcessS > 0.5 * excessS) {
    lines.push(
      `  - Why: the first certificate could start only after ${seconds(t.firstCreateMs)} s (its create; ${round(f.createS, 2)} s direct). The ${s.launches} creates start together${s.lists > 0 ? `, behind the cold-cache group and class lists (one after the other: done after ${seconds(t.listsDoneMs)} s)` : ''}, and their ${s.nodeAdd + s.parameters} rake processes (up to ${t.maxTasksInFlight} console tasks at once) share ${cores} cores: each Ruby + rake start-up is CPU-bound, the kernel shares the cores among all of them, so they progress together and the creates are answered together — between ${creates[0] ?? NaN} and ${creates[creates.length - 1] ?? NaN} s — instead of one after another. ` +
        `The CA, which needs just one create to start, idles meanwhile. What would close it (src/, not changed here): cap the rake processes running at once (about the number of cores) so that creates finish in order from about the direct create's time on and the CA starts after the first; more than one warm worker would do the same without the start-ups; a warm list cache at burst time (the platform's discovery calls within cache_ttl) takes the lists off the front.`,
    );
  }
  if (!Number.isNaN(t.listsDoneMs) && t.maxTasksInFlight > 1) {
    lines.push(
      `  - The cold-cache lists alone put ${seconds(t.listsDoneMs)} s in front of every create; with a warm cache the wall would be ≈ ${round(s.wallS - t.listsDoneMs / 1000, 1)} s ≈ ${((s.wallS - t.listsDoneMs / 1000) / s.floorS).toFixed(3)}× the floor (an estimate: this run's wall minus the lists, not measured).`,
    );
  }
  if (t.busyMs / n > directBusy * 1000 * 1.05) {
    lines.push(
      `  - The CA's own work (its processes, mostly Ruby start-up and RSA key generation) took ${round((t.busyMs / n / (directBusy * 1000) - 1) * 100, 0)}% longer per call than in the floor: it shared ${cores} cores with ${round(t.rakeAlongsideCa, 1)} rake processes on average and with other jobs (${round((100 * ca.cpu.othersMs) / Math.max(1, ca.cpu.wallMs * cores), 0)}% of the machine during the burst, ${round((100 * f.cpu.othersMs) / Math.max(1, f.cpu.wallMs * cores), 0)}% during the floor).`,
    );
  }
  const perCallExtraMs = t.handoffMs / n - directOutside * 1000;
  if (perCallExtraMs > 20) {
    lines.push(
      `  - Between CA calls espm spends ${ms(perCallExtraMs)} ms per call more than the bare spawn of the floor (× ${s.launches} = ${round((perCallExtraMs * s.launches) / 1000, 1)} s). Per call: ${t.handoffPairs > 0 ? `espm's own work between one CA command returning and the next starting ${ms(t.espmBetweenMs / t.handoffPairs)} ms, ` : ''}spawn + Ruby start-up ${ms(t.spawnToStartMs / n - mean(f.spawnToStartS) * 1000)} ms more than direct, exit ${ms(t.endToReturnMs / n - mean(f.endToReturnS) * 1000)} ms more (both stretch with the machine's load); ` +
        `and once, the first certificate's way from its create's answer to its CA process, ${seconds(t.firstHandoffMs)} s (the certificate request on a new TLS connection from the bench's client, the ledger's write-ahead with fsync, the spawn — while the other creates' rake processes still ran) = ${ms(t.firstHandoffMs / n)} ms per call.`,
    );
  }
  return lines;
}

/** The markdown section of bench 3 (puppet-cert CA). */
export function caSection(results: readonly RunResult[], host: string, cores: number, command: string, settings: { bootS: number; consoleSleepS: number; caSleepS: number; floorCalls: number; launches: number; ncDelayMs: number }): string[] {
  const summaries = results.filter((r) => r.ca !== undefined).map((r) => ({ r, s: caSummary(r, settings.caSleepS) }));
  const nc = results.some((r) => r.mode === 'pe-node-classifier');
  const caText = `\`[ca] backend = puppet-cert\`: the Puppet 2.7 \`puppet cert\` double, 2048-bit keys, \`sleep\` ${settings.caSleepS} s for every action; \`[ca] ssldir\` set, as espm_setup writes it`;
  const floorCalls = `${settings.floorCalls === settings.launches ? `${settings.launches} direct` : `${settings.floorCalls} direct (the sum scaled × ${round(settings.launches / settings.floorCalls, 2)} to ${settings.launches})`} \`puppet cert generate N --color false --config puppet.conf\` one after the other, with espm's runner (src/exec). Wall = first launch sent → last answered.`;
  const lines = [
    '',
    `## Launch burst with the puppet cert CA${nc ? ' and the Node Classifier' : ''} — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${nc ? 'issue #19' : 'issue #8'}, bench 3)`,
    '',
    `- Machine: ${host}.`,
    `- Command: \`${command}\`.`,
    ...(nc
      ? [
          `- A launch: \`POST /v1/nodes\` (group \`default\`, class \`ntp\`, one parameter → \`[classifier] backend = pe-node-classifier\`: the per-node group, then its pin), then \`POST /v1/certificates\` (${caText}). The Node Classifier double (test/fixtures/node-classifier/, in the bench's process) answers every request after ${settings.ncDelayMs} ms. Fresh Node Classifier, CA and espm per run, espm's list cache cold at the start of the burst.`,
          `- Floor, measured right before the burst on the same Node Classifier and CA: one direct create (\`POST /v1/groups\` with espm's per-node group, then \`POST /v1/groups/<default>/pin\`, undici with the same client certificate) + ${floorCalls}`,
        ]
      : [
    `- A launch: \`POST /v1/nodes\` (groups, classes, one parameter → \`node:add\` + \`node:parameters\`), then \`POST /v1/certificates\` (${caText}). ` +
      `Console double 1.2.10: ${CONSOLE_SLEEP_TASKS.join(', ')} each sleep ${settings.consoleSleepS} s (the per-task \`faults\` knob: "1 s per call" both in the worker and in a rake process)${settings.bootS > 0 ? `, \`boot_sleep: ${settings.bootS}\`` : ', no boot sleep'}. Fresh console, CA and espm per run, espm's list cache cold at the start of the burst.`,
    `- Floor, measured right before each burst on the same console and CA: one direct create (\`rake -s -f Rakefile RAILS_ENV=production node:add name=N groups=default classes=ntp\`, then \`node:parameters name=N parameters=role=web\`) + ${settings.floorCalls === settings.launches ? `${settings.launches} direct` : `${settings.floorCalls} direct (the sum scaled × ${round(settings.launches / settings.floorCalls, 2)} to ${settings.launches})`} \`puppet cert generate N --color false --config puppet.conf\` one after the other, with espm's runner (src/exec). Wall = first launch sent → last answered.`,
        ]),
    '',
    `| mode | in flight | wall s | floor s (create + CA calls) | wall / floor | ok | ${nc ? 'Node Classifier requests' : 'node:add | parameters | lists | other tasks | rake processes'} | CA processes (by action) | CA serialized | launch p50 / p95 / max s | node create p50 / p95 / max s |`,
    `|---|---|---|---|---|---|${nc ? '---|' : '---|---|---|---|---|'}---|---|---|---|`,
    ...summaries.map(
      ({ r, s }) =>
        `| ${r.mode} | ${r.concurrency} | ${s.wallS}${r.stopped ? ` (${r.stopped})` : ''} | ${s.floorS} (${round(r.ca!.floor.createS, 2)} + ${round(r.ca!.floor.caS, 2)}) | **${s.ratio.toFixed(3)}×** | ${s.ok}/${s.launches} | ${nc ? `${s.ncRequests ?? 0} (${showTally(r.tasksByName)})` : `${s.nodeAdd} | ${s.parameters} | ${s.lists} | ${s.otherTasks} | ${s.rakeProcesses}`} | ${showTally(r.ca!.caByAction)} | ${s.serialized ? 'yes' : '**no**'} | ${quantile(r.latenciesS, 0.5)} / ${quantile(r.latenciesS, 0.95)} / ${r.latenciesS[r.latenciesS.length - 1] ?? NaN} | ${quantile(r.createLatenciesS, 0.5)} / ${quantile(r.createLatenciesS, 0.95)} / ${r.createLatenciesS[r.createLatenciesS.length - 1] ?? NaN} |`,
    ),
    '',
  ];
  for (const { r, s } of summaries) {
    const f = r.ca!.floor;
    const perLaunch = s.caGenerate === s.launches && s.caOther === 0;
    if (nc) {
      lines.push(
        `- ${r.mode}: wall ${s.wallS} s / floor ${s.floorS} s = **${s.ratio.toFixed(3)}×** (goal ≤ ${FLOOR_RATIO_GOAL}: ${s.ratio <= FLOOR_RATIO_GOAL && s.ok === s.launches ? 'met' : 'NOT met'}); ` +
          `Node Classifier requests ${s.ncRequests ?? 0} = ${round((s.ncRequests ?? 0) / Math.max(1, s.launches), 2)} per launch (${showTally(r.tasksByName)}; the minimum: 1 group create + 1 pin per launch, plus the cold-cache lists); ` +
          `CA processes ${s.caGenerate + s.caOther}: ${showTally(r.ca!.caByAction)} (goal one generate per launch, nothing else: ${perLaunch ? 'met' : 'NOT met'}); CA processes never overlapped: ${s.serialized ? 'yes' : 'NO'}.`,
        `  - floor: direct create ${round(f.createS, 2)} s (group create ${round(f.addS, 2)} s + pin ${round(f.parametersS, 2)} s); direct CA calls ${formatSummary(summarize(f.callsS.map((x) => x * 1000)))}; the CA processes' own logged time ${formatSummary(summarize(f.selfS.map((x) => x * 1000)))}.`,
      );
      continue;
    }
    lines.push(
      `- ${r.mode}: wall ${s.wallS} s / floor ${s.floorS} s = **${s.ratio.toFixed(3)}×** (goal ≤ ${FLOOR_RATIO_GOAL}: ${s.ratio <= FLOOR_RATIO_GOAL && s.ok === s.launches ? 'met' : 'NOT met'}); ` +
        `node:add ${s.nodeAdd}, parameters ${s.parameters} (goal ${s.launches} each: ${s.nodeAdd === s.launches && s.parameters === s.launches ? 'met' : 'NOT met'}), lists ${s.lists} (espm's group/class check, once per cache_ttl); ` +
        `CA processes ${s.caGenerate + s.caOther}: ${showTally(r.ca!.caByAction)} (goal one generate per launch, nothing else: ${perLaunch ? 'met' : 'NOT met'}); espm's runner spawned ${r.ca!.caSpawned} CA processes in the burst, ${r.ca!.caAtStartup} between its start and the burst; CA processes never overlapped: ${s.serialized ? 'yes' : 'NO'}.`,
      `  - floor: direct create ${round(f.createS, 2)} s (node:add ${round(f.addS, 2)} s + node:parameters ${round(f.parametersS, 2)} s); direct CA calls ${formatSummary(summarize(f.callsS.map((x) => x * 1000)))}; the CA processes' own logged time ${formatSummary(summarize(f.selfS.map((x) => x * 1000)))}.`,
    );
  }
  lines.push(
    '- Raw launch latencies (s, sorted):',
    ...summaries.map(({ r }) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.latenciesS.join(' ')}`),
    '- Raw node create latencies (s, sorted):',
    ...summaries.map(({ r }) => `  - ${r.mode}, ${r.concurrency} in flight: ${r.createLatenciesS.join(' ')}`),
    '- Raw direct CA call times of the floor (s, in order):',
    ...summaries.map(({ r }) => `  - ${r.mode}: ${r.ca!.floor.callsS.map((x) => round(x, 3)).join(' ')}`),
    '',
    '### Where the time goes',
    '',
    '- The wall time splits exactly, from the CA\'s side (its invocations.log against the client\'s clock): before each CA process, the time no certificate request was waiting (the CA idle while creates ran) and the time one was (espm between CA calls); the CA processes; after the last one. The floor has the same parts: the direct create, and per CA call the process itself and its spawn + Ruby start-up.',
    ...summaries.flatMap(({ r, s }) => whereTheTimeGoes(r, s, cores, nc ? settings.ncDelayMs / 1000 : settings.consoleSleepS)),
    '',
  );
  return lines;
}
