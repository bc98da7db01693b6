/**
 * The demo's REAL mode: the PE console double and a throw-away puppetserver whose ENC it is,
 * espm_setup + espm, steps 1–5 with real `puppet agent --onetime` runs (the pre-signed
 * certificate applied, then refused after revocation), then espm and puppetserver stopped.
 * The set-up and the agent run are the launch story's (test/support/launch-story.ts).
 *
 * @packageDocumentation
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  firstAgentRun,
  realBackendConfig,
  startConsoleDouble,
  startMaster,
  STORY_CLASS,
  type StoryMaster,
} from '../test/support/launch-story.js';
import { freePort } from '../test/support/net.js';
import { action, cleanups, note, redact, say, seconds, step, style } from './narration.js';
import { createNode, discover, narratedConfig, narratedSetup, narratedStop, presign, printRequestLog, startAndCheck, terminate, verifyCertificate } from './platform.js';

/** `puppet agent --detailed-exitcodes`. */
const AGENT_EXIT_MEANINGS: Readonly<Record<number, string>> = {
  0: 'no changes',
  1: 'run failed',
  2: 'changes applied',
  4: 'failures',
  6: 'changes applied, and failures',
};
const AGENT_EXIT_LEGEND = 'detailed exit codes: 0 no changes, 2 changes, 4 failures, 6 both, 1 run failed';


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
export async function realStory(work: string): Promise<void> {
  const message = `Launched by the platform through espm at ${new Date().toISOString()}`;
  let master: StoryMaster | undefined;

  const prepared = await step('0', 'Set up the Puppet master and espm', async () => {
    const consoleDouble = await action(
      'PE console double (the console\'s rake tasks, run by real rake, seeded like a PE 2.x console)',
      async () => {
        const double = await startConsoleDouble();
        cleanups.push({ what: 'remove the console double', run: () => double.remove() });
        return double;
      },
      (double) => double.dir,
    );
    say(`${style.green('•')} starting a throw-away puppetserver (CA setup, then the JVM: 30–60 s) …`, 2);
    master = await action(
      'puppetserver running',
      async () => {
        const started = await startMaster(work, consoleDouble);
        cleanups.push({ what: 'stop puppetserver', run: () => started.server.stop() });
        return started;
      },
      (m) => `127.0.0.1:${m.server.port}, pid ${m.server.pid}, ENC = the console's external_node, module motd (state in ${m.server.dir})`,
    );
    note('class motd: writes $motd_message (a console parameter) to agent/motd.txt and notifies "motd applied: …"');

    const espmPort = await freePort();
    say(`${style.green('•')} espm_setup, as the operator runs it (here into the work directory, port ${espmPort}):`, 2);
    const setup = await narratedSetup(work, espmPort);
    say(`${style.green('•')} point the config at the console double and at puppetserver-ca of this puppetserver:`, 2);
    await narratedConfig(setup.configPath, await realBackendConfig(master));
    const { espm, platform } = await startAndCheck(setup, espmPort);
    return { espm, platform };
  });
  const { espm, platform } = prepared;
  const story = master!;
  const puppet = story.server;
  const { agentDir, motdFile } = story;

  await step('1', 'Discover', () => discover(platform));
  const name = await step('2', 'Create the node', () => createNode(platform, message));
  const issued = await step('3', 'Pre-sign its certificate', async () => {
    const result = await presign(platform, name);
    verifyCertificate(result, 4);
    return result;
  });

  await step('4', 'Launch the instance: its first puppet agent run', async () => {
    say(`The new server's first boot writes the three PEMs into a fresh agent ssldir (${join(agentDir, 'ssl')}):`, 2);
    for (const [file, mode, what] of [
      [`certs/${name}.pem`, '0644', 'certificate'],
      ['certs/ca.pem', '0644', 'CA certificate'],
      [`private_keys/${name}.pem`, '0640', 'private key (not shown)'],
    ] as const) {
      say(`${file.padEnd(52)} ${mode}  ${what}`, 4);
    }
    say('puppetserver will ask the console\'s ENC for the node; it answers:', 2);
    const enc = await story.enc(name);
    for (const line of enc.stdout.trimEnd().split('\n')) say(style.dim('│ ') + line, 6);

    const csrsBefore = (await puppet.accessLog()).split('\n').filter((l) => l.includes('certificate_request')).length;
    say(`${style.cyan('$')} ${style.cyan(`puppet agent --onetime --no-daemonize --detailed-exitcodes --certname ${name} --server localhost --serverport ${puppet.port}`)}`, 4);
    note(`(plus --confdir/--vardir/--ssldir/--logdir/--rundir under ${agentDir}, --waitforcert 0)`);
    const run = await firstAgentRun(story, name, issued);
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
    say(style.green(`Exit 2: the console's class ${STORY_CLASS} was applied with its parameter motd_message.`), 2);
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
    await narratedStop(espm);
    await action('puppetserver stopped', () => puppet.stop());
  });
}
