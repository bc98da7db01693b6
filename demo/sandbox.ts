/**
 * The demo's SANDBOX mode: espm_setup + espm with `[classifier] backend = sandbox` and
 * `[ca] backend = sandbox`, the same calls as the real mode; the agent runs are replaced by
 * what the sandbox console serves as ENC, certificate checks and the revocation record.
 *
 * @packageDocumentation
 */
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { SandboxCertificateAuthority } from '../src/ca/sandbox.js';
import { SandboxClassifier } from '../src/classifier/sandbox.js';
import { STORY_CLASS } from '../test/support/launch-story.js';
import { freePort } from '../test/support/net.js';
import { say, step, style } from './narration.js';
import { createNode, discover, narratedConfig, narratedSetup, narratedStop, presign, printRequestLog, startAndCheck, terminate, verifyCertificate } from './platform.js';


/**
 * The SANDBOX story: espm_setup + espm with both sandbox backends, the same calls; the agent
 * runs are replaced by the sandbox ENC answer, certificate checks and the revocation record.
 */
export async function sandboxStory(work: string): Promise<void> {
  const message = `Launched by the platform through espm at ${new Date().toISOString()}`;

  const prepared = await step('0', 'Set up espm with the sandbox backends', async () => {
    const espmPort = await freePort();
    say(`${style.green('•')} espm_setup, as the operator runs it (here into the work directory, port ${espmPort}):`, 2);
    const setup = await narratedSetup(work, espmPort);
    say(`${style.green('•')} switch both backends to the sandbox (a pretend PE 2.5 console and a CA of espm's own, in ${join(setup.stateDir, 'sandbox')}):`, 2);
    await narratedConfig(setup.configPath, { classifier: { backend: 'sandbox' }, ca: { backend: 'sandbox' } });
    const { espm, platform } = await startAndCheck(setup, espmPort);
    return { espm, platform, stateDir: setup.stateDir };
  });
  const { espm, platform, stateDir } = prepared;
  const consoleStore = new SandboxClassifier(stateDir);
  const ca = new SandboxCertificateAuthority(stateDir);

  await step('1', 'Discover', () => discover(platform));
  const name = await step('2', 'Create the node', () => createNode(platform, message));
  const issued = await step('3', 'Pre-sign its certificate', () => presign(platform, name));

  await step('4', 'Launch the instance (sandbox: no agent run)', async () => {
    say('No Puppet master here, so no agent run. In its place, what a master would do with the node:', 2);
    say('the ENC answer the sandbox console serves for it (SandboxClassifier.externalNode):', 4);
    const enc = await consoleStore.externalNode(name);
    say(JSON.stringify(enc), 6);
    const classes = enc.classes;
    const parameter = enc.parameters?.['motd_message'];
    if (!classes.includes(STORY_CLASS) || parameter !== message) {
      throw new Error(`the sandbox ENC answer lacks class ${STORY_CLASS} or motd_message: ${JSON.stringify(enc)}`);
    }
    say('the TLS checks the master would make of the agent\'s certificate (Node\'s crypto):', 4);
    verifyCertificate(issued, 6);
    say(
      `${style.bold('Agent-equivalent result')}: certificate valid and signed by the CA, key matches, ENC classes ` +
        `[${classes.join(', ')}] with motd_message set → a real agent would apply ${STORY_CLASS}: exit 2 (changes applied)`,
      4,
    );
  });

  await step('5', 'Terminate', async () => {
    await terminate(platform, name);
    say('The sandbox CA records the revocation (SandboxCertificateAuthority.revocations()):', 2);
    const serial = new X509Certificate(issued.certificate).serialNumber;
    const revoked = (await ca.revocations()).filter((r) => r.certname === name);
    for (const r of revoked) say(JSON.stringify(r), 6);
    const ours = revoked.find((r) => r.fingerprint_sha256 === issued.fingerprint_sha256);
    if (ours === undefined) throw new Error(`the sandbox CA has no revocation of ${name} (serial ${serial})`);
    const enc = await consoleStore.externalNode(name);
    say(`the sandbox console's ENC answer now: ${JSON.stringify(enc)}`, 4);
    if (enc.classes.length !== 0) throw new Error(`the sandbox console still classifies ${name}`);
    say(
      `${style.bold('Agent-equivalent result')}: certificate serial ${ours.serial} revoked at ${ours.revoked_at}, node gone from ` +
        'the ENC → a real agent would be refused by the master: exit 1 (run failed; TLS alert "certificate unknown")',
      4,
    );
  });

  await step('6', 'Shut down', async () => {
    printRequestLog(espm);
    await narratedStop(espm);
  });
}
