/**
 * `npm run demo` (issue #5): launch and terminate a server through espm, narrated step by step
 * for a person on a fresh machine.
 *
 * - REAL mode (puppetserver + puppet-agent installed), open-source Puppet with no double at
 *   all (issue #14, demo/enc.ts): a throw-away puppetserver whose exec ENC is `bin/espm enc`,
 *   `bin/espm_setup` and `bin/espm` run as an operator runs them, the platform's HTTPS calls, a
 *   real `puppet agent --onetime` with the pre-signed certificate applying a group's class and
 *   the node's class with its parameter, then termination and the agent refused.
 * - PE mode (`--pe`; also needs rake): the PE 2.x console story (demo/real.ts), puppetserver's
 *   ENC being the PE console double.
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
 * Files: demo/narration.ts (output, secrets masked, steps, cleanup), demo/platform.ts (the
 * platform's pinned calls as curl commands, espm_setup/espm narrated, the shared steps),
 * demo/real.ts and demo/sandbox.ts (the two stories); the set-up itself is the end-to-end
 * test's: test/support/launch-story.ts and test/support/pinned-client.ts.
 *
 * @packageDocumentation
 */
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { missingForRealStory } from '../test/support/launch-story.js';
import { cleanupAll, cleanups, redact, say, seconds, silence, style, timings } from './narration.js';
import { encStory } from './enc.js';
import { realStory } from './real.js';
import { puppetserverAvailable } from '../test/support/puppetserver.js';
import { sandboxStory } from './sandbox.js';

const DIST_CLI = join(fileURLToPath(new URL('../', import.meta.url)), 'dist', 'cli', 'espm.js');
/** How to get the real mode on a Debian/Ubuntu machine. */
const INSTALL_HINT = 'apt-get install puppetserver puppet-agent ruby rake';

/** Options of the `demo` command, as commander parses them. */
interface DemoOptions {
  sandbox?: boolean;
  real?: boolean;
  pe?: boolean;
  keep?: boolean;
}

/** What the real mode needs (the PE story: also rake), and what is missing. */
async function realModeAvailability(pe: boolean): Promise<{ available: boolean; missing: string[] }> {
  const missing = pe ? await missingForRealStory() : [puppetserverAvailable().reason].filter((r): r is string => r !== undefined);
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
  const pe = options.pe === true;
  const availability = await realModeAvailability(pe);
  if ((options.real === true || pe) && !availability.available) {
    say(style.red(`demo: ${pe ? '--pe needs puppetserver, puppet-agent and rake' : '--real needs puppetserver and puppet-agent'}: ${availability.missing.join('; ')}.`));
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
  if (real && !pe) {
    say(`${style.bold(style.green('Mode: REAL'))} — open-source Puppet, no double: a throw-away puppetserver whose ENC is espm enc, espm_setup + espm, a real puppet agent.`);
    say(style.yellow('This takes about 2–3 minutes (measured: 134 s with PuppetDB installed): puppetserver alone needs 30–60 s to start. (--pe: the PE 2.x console story)'));
  } else if (real) {
    say(`${style.bold(style.green('Mode: REAL, PE 2.x'))} — a throw-away puppetserver (its ENC: the PE console double), espm_setup + espm, a real puppet agent.`);
    say(style.yellow('This takes about 1–2 minutes: puppetserver alone needs 30–60 s to start.'));
  } else {
    say(`${style.bold(style.yellow('Mode: SANDBOX'))} — espm with [classifier] backend = sandbox and [ca] backend = sandbox: no Puppet master, no agent.`);
    if (options.sandbox === true && availability.available) {
      say('(forced by --sandbox; this machine can run the real story: npm run demo)');
    } else {
      say(`The real story needs puppetserver and puppet-agent, which are missing here (${availability.missing.join('; ')}).`);
      say(`To get it: ${style.bold(INSTALL_HINT)}, then ${style.bold('npm run demo')} again.`);
    }
    say('The HTTP calls are identical to the real ones; this takes a few seconds.');
  }
  say(`Work directory: ${work} (${options.keep === true ? 'kept at the end: --keep' : 'removed at the end; --keep keeps it'})`);

  try {
    if (real && pe) await realStory(work);
    else if (real) await encStory(work);
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
  const outcome = real && !pe
    ? 'REAL mode, open-source Puppet: espm enc as the ENC, agent run applied the group\'s and the node\'s classes (exit 2); terminated, back to the previous ENC, agent refused (exit 1)'
    : real
    ? 'REAL mode, PE 2.x: node created, certificate pre-signed, agent run applied motd (exit 2); terminated, agent refused (exit 1)'
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
  silence();
  void interruptedExit().then((code) => {
    say(style.yellow(`interrupted: every child process stopped${keepNote}`), 0, true);
    process.exit(code);
  });
}

const program = new Command('npm run demo --')
  .description('Launch and terminate a server through espm, narrated step by step, as the platform does it.')
  .addOption(new Option('--sandbox', 'use the sandbox backends even when the real mode is available').conflicts('real'))
  .addOption(new Option('--real', 'require the real mode (fails when puppetserver or puppet-agent is missing)'))
  .addOption(new Option('--pe', 'the PE 2.x console story (puppetserver\'s ENC: the PE console double; also needs rake)').conflicts('sandbox'))
  .option('--keep', 'keep the work directory (config, certificates, state, logs) and print its path')
  .helpOption('-h, --help', 'show this help')
  .addHelpText(
    'after',
    [
      '',
      'Steps (README, "How a launch works"): 0 set up, 1 discover groups and classes, 2 create the',
      'node, 3 pre-sign its certificate, 4 launch (the agent run), 5 terminate, 6 shut down.',
      '',
      'REAL mode, when puppetserver and puppet-agent are installed (2–3 minutes): open-source',
      '  Puppet with no double, a throw-away puppetserver whose ENC is bin/espm enc, bin/espm_setup',
      '  and bin/espm, a real `puppet agent --onetime` with the pre-signed certificate applying a',
      '  group\'s class and the node\'s class with its parameter.',
      '--pe: the PE 2.x console story instead (the PE console double as ENC; also needs rake).',
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
