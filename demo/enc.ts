/**
 * The demo's REAL mode on open-source Puppet (issue #14), with no double at all: a throw-away
 * puppetserver whose exec ENC is `bin/espm-enc` (the sh front of `bin/espm enc`), espm_setup (which detects the open-source
 * master and writes `enc` + `puppetserver-api`) and espm, steps 1–5 with a real
 * `puppet agent --onetime` applying a group's class and the node's class with its parameter,
 * a node espm did not create answered by the site's previous ENC, then termination: the name
 * goes back to that ENC and the agent is refused. When PuppetDB is installed (issue #16), the
 * master stores its reports in a throw-away PuppetDB (test/support/puppetdb.ts) and espm has
 * `[puppetdb] url`: after the first run GET shows its `latest_report_status`, and termination
 * deactivates the certname in PuppetDB.
 *
 * @packageDocumentation
 */
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { encClassifierKeys, environmentClassesRule, LEGACY_NODE, makeEncFiles, STORY_ENC_GROUP, STORY_GROUPS_YAML, webserverModule } from '../test/support/enc-rig.js';
import { ESPM_BIN, motdModule } from '../test/support/launch-story.js';
import { freePort } from '../test/support/net.js';
import { puppetdbMissing, startPuppetDbStack, type RealPuppetDb } from '../test/support/puppetdb.js';
import { startPuppetserver, type RealPuppetserver, type StartPuppetserverOptions } from '../test/support/puppetserver.js';
import { action, cleanups, note, redact, say, seconds, step, style } from './narration.js';
import { createNode, discover, narratedConfig, narratedSetup, narratedStop, presign, printRequestLog, startAndCheck, terminate, verifyCertificate } from './platform.js';
import { tokenStory } from './token.js';

const GROUP = STORY_ENC_GROUP;
const CLASS = 'motd';

/** Prints what an ENC printed, one dimmed line each. */
function printEnc(stdout: string): void {
  for (const line of stdout.trimEnd().split('\n')) say(style.dim('│ ') + line, 6);
}

/** The REAL story on open-source Puppet. */
export async function encStory(work: string): Promise<void> {
  const message = `Launched by the platform through espm at ${new Date().toISOString()}`;
  const agentDir = join(work, 'agent');
  const motdFile = join(agentDir, 'motd.txt');
  const webFile = join(agentDir, 'web.txt');
  await mkdir(agentDir, { recursive: true });
  const files = await makeEncFiles(STORY_GROUPS_YAML);
  cleanups.push({ what: 'remove the groups file and the previous ENC', run: () => files.remove() });
  // The external_nodes line espm_setup prints: the classification file only (the previous ENC is [classifier] fallback_enc's alone).
  const encLine = `${join(dirname(ESPM_BIN), 'espm-enc')} -f ${files.classificationFile}`;
  const espmEnc = async (name: string) => {
    const [file, ...args] = encLine.split(' ') as [string, ...string[]];
    return execa(file, [...args, name], { reject: false, stripFinalNewline: false });
  };
  let puppet: RealPuppetserver | undefined;
  let puppetdb: RealPuppetDb | undefined;
  const withPuppetDb = puppetdbMissing() === undefined;

  const prepared = await step('0', 'Set up the Puppet master and espm', async () => {
    say(`${style.green('•')} the operator's groups file (${files.groupsFile}) and the site's previous ENC (${files.fallbackEnc}, it classifies ${LEGACY_NODE}):`, 2);
    printEnc(STORY_GROUPS_YAML);
    const serverOptions: StartPuppetserverOptions = {
      port: 0,
      enc: encLine,
      authRules: [environmentClassesRule('localhost')],
      modules: { motd: motdModule(motdFile), webserver: webserverModule(webFile), dbserver: 'class dbserver { }\n' },
      // espm_setup writes this policy executable below (token signing, step 4b).
      autosign: join(work, 'autosign', 'policy'),
    };
    if (withPuppetDb) {
      await chmod(work, 0o711); // PostgreSQL (user postgres) must traverse it: docs/reference/real-puppetdb.md
      say(`${style.green('•')} starting a throw-away puppetserver storing its reports in PuppetDB, then PostgreSQL and PuppetDB (1–2 min) …`, 2);
      const stack = await action(
        'puppetserver and PuppetDB running',
        async () => {
          const started = await startPuppetDbStack(serverOptions);
          cleanups.push({ what: 'stop PuppetDB and puppetserver', run: () => started.stop() });
          return started;
        },
        (s) => `puppetserver 127.0.0.1:${s.server.port}, PuppetDB ${s.puppetdb.url} (reports = puppetdb, storeconfigs)`,
      );
      puppet = stack.server;
      puppetdb = stack.puppetdb;
    } else {
      say(`${style.green('•')} starting a throw-away puppetserver (CA setup, then the JVM: 30–60 s) …`, 2);
      note('PuppetDB is not installed (apt-get install puppetdb puppet-terminus-puppetdb postgresql-15): the PuppetDB steps are left out');
      puppet = await action(
        'puppetserver running',
        async () => {
          const started = await startPuppetserver(serverOptions);
          cleanups.push({ what: 'stop puppetserver', run: () => started.stop() });
          return started;
        },
        (m) => `127.0.0.1:${m.port}, pid ${m.pid}, modules motd, webserver, dbserver (state in ${m.dir})`,
      );
    }
    say('its puppet.conf [server] and auth.conf hold what espm_setup tells the operator to add:', 4);
    say(style.dim('│ ') + 'node_terminus = exec', 6);
    say(style.dim('│ ') + `external_nodes = ${encLine}`, 6);
    say(style.dim('│ ') + `autosign = ${join(work, 'autosign', 'policy')}`, 6);
    say(style.dim('│ ') + '{ match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }, allow: "localhost", … }', 6);

    const espmPort = await freePort();
    say(`${style.green('•')} espm_setup, as the operator runs it (it finds an open-source puppetserver: enc + puppetserver-api):`, 2);
    const setup = await narratedSetup(work, espmPort);
    say(`${style.green('•')} point the config at this throw-away master (its puppet.conf, the groups file, the previous ENC):`, 2);
    const keys = encClassifierKeys(puppet, files);
    await narratedConfig(setup.configPath, {
      classifier: keys,
      ca: { backend: 'puppetserver-api', puppet: '/usr/bin/puppet', config: puppet.confPath, ssldir: puppet.ssldir },
      ...(puppetdb === undefined ? {} : { puppetdb: { url: puppetdb.url, puppet: '/usr/bin/puppet', config: puppet.confPath } }),
    });
    const { espm, platform } = await startAndCheck(setup, espmPort, `start espm (it writes ${files.classificationFile} for espm enc):`);
    return { espm, platform };
  });
  const { espm, platform } = prepared;
  const master = puppet!;

  await step('1', 'Discover', async () => {
    note('groups: the groups file\'s keys; classes: GET /puppet/v3/environment_classes on the master');
    await discover(platform, GROUP, CLASS);
  });
  const name = await step('2', 'Create the node', () => createNode(platform, message, GROUP, CLASS));
  const issued = await step('3', 'Pre-sign its certificate', async () => {
    const result = await presign(platform, name);
    verifyCertificate(result, 4);
    return result;
  });

  await step('4', 'Launch the instance: its first puppet agent run', async () => {
    say(`puppetserver runs ${style.bold('espm-enc')} for the node (as it will for every catalog compile); espm created it, so ${style.bold('espm enc')} answers:`, 2);
    say(`${style.cyan('$')} ${style.cyan(`${encLine} ${name}`)}`, 4);
    printEnc(String((await espmEnc(name)).stdout));
    say(`and for a node espm did not create, the previous ENC's answer ([classifier] fallback_enc, which the daemon wrote into owned/.fallback), byte for byte, run by the sh front without Node.js (${LEGACY_NODE}):`, 2);
    const [mine, before] = await Promise.all([espmEnc(LEGACY_NODE), execa(files.fallbackEnc, [LEGACY_NODE], { stripFinalNewline: false })]);
    printEnc(String(mine.stdout));
    const same = mine.stdout === before.stdout && mine.exitCode === before.exitCode;
    say(`same bytes and exit status as ${files.fallbackEnc} alone: ${same ? style.green('yes') : style.red('NO')}`, 4);
    if (!same) throw new Error(`espm enc answered ${LEGACY_NODE} differently from the previous ENC`);

    await master.installAgentCertificate(agentDir, name, { certificate: issued.certificate, privateKey: issued.private_key, caCertificate: issued.ca_certificate });
    say(`${style.cyan('$')} ${style.cyan(`puppet agent --onetime --no-daemonize --detailed-exitcodes --certname ${name} --server localhost --serverport ${master.port}`)}`, 4);
    const run = await master.agent(name, agentDir);
    const output = `${run.stdout}\n${run.stderr}`;
    for (const line of output.split('\n').filter((l) => /^Notice: .*(applied|defined 'content')/.test(l))) say(style.dim('│ ') + line, 6);
    const motd = await readFile(motdFile, 'utf8').catch(() => undefined);
    const web = await readFile(webFile, 'utf8').catch(() => undefined);
    say(`${style.bold('Agent run result')}: exit ${run.exitCode} ${style.dim(`[${seconds(run.durationMs)}]`)}`, 4);
    say(`${motdFile}: ${motd === undefined ? style.red('(not written)') : JSON.stringify(motd)}  ← the node's class, its parameter`, 6);
    say(`${webFile}: ${web === undefined ? style.red('(not written)') : JSON.stringify(web)}  ← the group's class and variable`, 6);
    if (run.exitCode !== 2 || motd !== `${message}\n` || web !== 'port=8080 tier=web\n') {
      throw new Error(`the agent run did not apply the group's and the node's classes (exit ${run.exitCode}, expected 2):\n${redact(output.trim())}`);
    }
    say(style.green(`Exit 2: group ${GROUP}'s class webserver and the node's class ${CLASS} (with motd_message) applied; no double anywhere.`), 2);
    if (puppetdb !== undefined) {
      say('the platform sees from the master that the first run happened and how it ended (PuppetDB\'s latest report):', 2);
      const node = await platform.call('GET', `/v1/nodes/${name}`);
      const view = node.body['puppetdb'] as { state?: string; latest_report_status?: string } | null | undefined;
      say(`puppetdb: state ${style.bold(String(view?.state))}, latest_report_status ${style.bold(String(view?.latest_report_status))}`, 4);
      if (view?.state !== 'active' || view.latest_report_status !== 'changed') throw new Error(`GET /v1/nodes/${name} did not show the first run in PuppetDB: ${JSON.stringify(view)}`);
    }
  });

  await step('4b', 'Token signing: a second server makes its own key', () => tokenStory(platform, master, work, message, GROUP, CLASS));

  await step('5', 'Terminate', async () => {
    await terminate(platform, name);
    if (puppetdb !== undefined) {
      const node = (await puppetdb.get(`/pdb/query/v4/nodes/${name}`)).body as { deactivated?: string | null };
      say(`PuppetDB (GET /pdb/query/v4/nodes/${name}): deactivated ${style.bold(String(node.deactivated))} — its exported resources no longer reach other nodes`, 2);
      if (typeof node.deactivated !== 'string') throw new Error(`${name} is still active in PuppetDB after termination`);
    }
    say(`the name is back with the previous ENC (what ${name} got before espm created it):`, 2);
    say(`${style.cyan('$')} ${style.cyan(`${encLine} ${name}`)}`, 4);
    printEnc(String((await espmEnc(name)).stdout));
    const refused = await master.agent(name, agentDir);
    say(`the terminated server's agent run: exit ${refused.exitCode} (${refused.exitCode === 1 ? 'refused: its certificate is revoked' : style.red('not refused')})`, 4);
    if (refused.exitCode !== 1) throw new Error(`the agent was not refused after revocation (exit ${refused.exitCode}, expected 1)`);
  });

  await step('6', 'Shut down', async () => {
    printRequestLog(espm);
    await narratedStop(espm);
    await action('puppetserver stopped', () => master.stop());
  });
}
