/**
 * The demo's token-signing step (issue #17), on the open-source story's real puppetserver
 * (demo/enc.ts): a second server makes its own key; the platform gets a one-time challenge
 * and the node's csr_attributes.yaml — no key, no certificate — and the master's policy
 * executable (`espm autosign`, asking the daemon) signs the node's CSR during its first
 * agent run. Then a wrong challenge is refused, and the node is terminated.
 *
 * @packageDocumentation
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { RealPuppetserver } from '../test/support/puppetserver.js';
import { addSecret, mask, redact, say, seconds, style } from './narration.js';
import { createNode, terminate, type Platform } from './platform.js';

/** `pp_role` in a certificate: Puppet's registered extension 1.3.6.1.4.1.34380.1.1.13. */
const PP_ROLE_OID = '1.3.6.1.4.1.34380.1.1.13';

/**
 * Token signing, told as the platform and the new server live it.
 *
 * @param platform - espm's client
 * @param master - the real puppetserver (its `[server] autosign` is espm's policy executable)
 * @param work - the demo's work directory
 * @param message - the motd the node's class writes
 * @param group - the group the node joins
 * @param klass - the node's class
 */
export async function tokenStory(platform: Platform, master: RealPuppetserver, work: string, message: string, group: string, klass: string): Promise<void> {
  const name = await createNode(platform, message, group, klass);
  say('The platform asks for a signing token instead of a key (the key will never leave the new server):', 2);
  const answer = await platform.call('POST', '/v1/certificates', { certname: name, signing: 'token', extensions: { pp_role: 'web' } });
  if (answer.status !== 201) throw new Error(`POST /v1/certificates (token) answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  const body = answer.body as { challenge_password: string; expires_at: string; csr_attributes: string };
  addSecret(body.challenge_password);
  say(`members: ${Object.keys(answer.body).join(', ')} — ${'private_key' in answer.body ? style.red('a private key!') : 'no private key, no certificate'}`, 4);
  say(`challenge_password ${mask(body.challenge_password)} (one use, until ${body.expires_at})`, 4);
  const agentDir = join(work, 'agent-token');
  await mkdir(join(agentDir, 'etc'), { recursive: true });
  await writeFile(join(agentDir, 'etc', 'csr_attributes.yaml'), body.csr_attributes);
  say(`the new server's first boot writes csr_attributes.yaml (${join(agentDir, 'etc')}):`, 2);
  for (const line of redact(body.csr_attributes).trimEnd().split('\n')) say(style.dim('│ ') + line, 6);

  say('a look-alike with a wrong challenge first: refused, and espm removes its CSR so it cannot block the real one:', 2);
  const impostorDir = join(work, 'agent-impostor');
  await mkdir(join(impostorDir, 'etc'), { recursive: true });
  await writeFile(join(impostorDir, 'etc', 'csr_attributes.yaml'), body.csr_attributes.replace(body.challenge_password, '0'.repeat(48)));
  const impostor = await master.agent(name, impostorDir);
  say(`impostor's agent run: exit ${impostor.exitCode} ${impostor.exitCode === 1 ? '(refused: no certificate)' : style.red('(not refused!)')}`, 4);
  if (impostor.exitCode !== 1) throw new Error(`a wrong challenge was not refused (exit ${impostor.exitCode})`);
  await new Promise((resolve) => setTimeout(resolve, 2000));

  say(`${style.cyan('$')} ${style.cyan(`puppet agent --onetime --no-daemonize --detailed-exitcodes --certname ${name} --waitforcert 0 …`)}`, 4);
  const run = await master.agent(name, agentDir);
  say(`${style.bold('Agent run result')}: exit ${run.exitCode} ${style.dim(`[${seconds(run.durationMs)}]`)}`, 4);
  if (run.exitCode !== 2) throw new Error(`the token node's agent run failed (exit ${run.exitCode}, expected 2):\n${redact(`${run.stdout}\n${run.stderr}`.trim())}`);
  const certificate = await readFile(join(agentDir, 'ssl', 'certs', `${name}.pem`), 'utf8');
  const text = (await execa('openssl', ['x509', '-noout', '-text'], { input: certificate })).stdout;
  const role = text.includes(PP_ROLE_OID) && /\.\.web|web$/m.test(text.slice(text.indexOf(PP_ROLE_OID)));
  say(`openssl x509 -text of the node's certificate: ${PP_ROLE_OID} (pp_role) = web ${role ? style.green('present') : style.red('missing')}`, 4);
  const state = await platform.call('GET', `/v1/certificates/${name}`);
  say(`GET /v1/certificates/${name}: state ${String(state.body['state'])}`, 4);
  if (!role || state.body['state'] !== 'signed') throw new Error('the token certificate does not carry pp_role, or espm does not show it signed');
  say(style.green('Exit 2: signed by the master\'s policy with the node\'s own key; $trusted[\'extensions\'][\'pp_role\'] = web.'), 2);
  await terminate(platform, name);
}
