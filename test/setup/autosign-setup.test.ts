/**
 * What espm_setup writes for token signing (src/setup/autosign.ts): the site's previous autosign
 * executable (read from puppet.conf with the ini library) becomes `[autosign] fallback` — never an
 * allow-list file, `true` or a missing path; the policy executable is one path that runs
 * `espm autosign` with the socket and the certname (puppetserver passes no other argument), in a
 * directory root:puppet 0750 beside the state directory.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execa } from 'execa';
import { autosignPlan, policyScript, previousPolicy } from '../../src/setup/autosign.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'espm-autosign-setup-'));
  await writeFile(join(dir, 'policy.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  await writeFile(join(dir, 'autosign.conf'), '*.example.com\n', { mode: 0o644 });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function conf(text: string): Promise<string> {
  const path = join(dir, `puppet-${Math.random()}.conf`);
  await writeFile(path, text);
  return path;
}

describe('previousPolicy', () => {
  it('finds an executable in [server], then [master], then [main]', async () => {
    expect(previousPolicy(await conf(`[server]\nautosign = ${dir}/policy.sh\n`))).toBe(`${dir}/policy.sh`);
    expect(previousPolicy(await conf(`[master]\nautosign = ${dir}/policy.sh\n`))).toBe(`${dir}/policy.sh`);
    expect(previousPolicy(await conf(`[main]\nautosign = ${dir}/policy.sh\n[server]\ncertname = x\n`))).toBe(`${dir}/policy.sh`);
  });

  it.each([
    ['an allow-list file', (d: string) => `[server]\nautosign = ${d}/autosign.conf\n`],
    ['true', () => '[server]\nautosign = true\n'],
    ['a missing path', (d: string) => `[server]\nautosign = ${d}/none\n`],
    ['no setting', () => '[server]\n'],
  ])('keeps nothing for %s', async (_what, text) => {
    expect(previousPolicy(await conf(text(dir)))).toBeUndefined();
  });

  it('keeps nothing when puppet.conf cannot be read', () => {
    expect(previousPolicy(join(dir, 'no-such.conf'))).toBeUndefined();
  });
});

describe('the policy executable', () => {
  it('runs espm autosign with the socket and the certname, the CSR passed on stdin', async () => {
    // A stand-in for node that prints the arguments it was given, then its stdin.
    const fakeNode = join(dir, 'fake-node');
    await writeFile(fakeNode, '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\ncat\n', { mode: 0o755 });
    const path = join(dir, 'policy');
    await writeFile(path, policyScript(fakeNode, "/opt/o'dd/espm", '/opt/espm/autosign/espm.sock'));
    await chmod(path, 0o755);
    const run = await execa(path, ['web01.example.test'], { input: 'CSR' });
    expect(run.stdout.split('\n')).toEqual(["/opt/o'dd/espm", 'autosign', '-s', '/opt/espm/autosign/espm.sock', 'web01.example.test', 'CSR']);
  });

  it('is planned in <dir>/autosign with the [autosign] keys and the puppet.conf line', async () => {
    const plan = autosignPlan(join(dir, 'autosign'), await conf(`[server]\nautosign = ${dir}/policy.sh\n`), '/opt/espm/bin/espm', '/usr/bin/node');
    expect(plan.values).toEqual({ token_ttl: 7200, fallback: `${dir}/policy.sh`, fallback_timeout: 30, socket: join(dir, 'autosign', 'espm.sock') });
    expect(plan.policy.path).toBe(join(dir, 'autosign', 'policy'));
    expect(plan.instructions).toContain(`    autosign = ${join(dir, 'autosign', 'policy')}\n`);
    expect(plan.instructions).toContain(`The previous autosign executable ${dir}/policy.sh is kept as [autosign] fallback`);
  });
});

describe('the directory', () => {
  it('is made root:puppet 0750 by writeSetup (checked in test/setup/open-source-setup.test.ts layout)', async () => {
    const { planSetup, writeSetup } = await import('../../src/setup/setup.js');
    const { detectBackends, rootedProbe } = await import('../../src/setup/detect.js');
    const { mkdir } = await import('node:fs/promises');
    const root = join(dir, 'root');
    for (const d of ['usr/bin', 'etc/puppet', 'etc/puppet/puppetserver/conf.d', 'var/lib/puppet/ssl']) await mkdir(join(root, d), { recursive: true });
    for (const bin of ['puppetserver', 'puppet']) await writeFile(join(root, 'usr/bin', bin), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const plan = planSetup(
      { configDir: join(dir, 'etc'), certDir: join(dir, 'etc', 'certs'), stateDir: join(dir, 'var'), host: '127.0.0.1', port: 8443, hostname: 'localhost', ips: [] },
      detectBackends(rootedProbe(root)),
    );
    await writeSetup(plan);
    const info = await stat(join(dir, 'autosign'));
    expect(info.mode & 0o777).toBe(0o750);
    const puppetGid = (await readFile('/etc/group', 'utf8')).split('\n').find((l) => l.startsWith('puppet:'))?.split(':')[2];
    if (process.getuid?.() === 0 && puppetGid !== undefined) expect(info.gid).toBe(Number(puppetGid));
    expect((await stat(join(dir, 'autosign', 'policy'))).mode & 0o777).toBe(0o755);
    expect(await readFile(join(dir, 'etc', 'espm.ini'), 'utf8')).toContain(`socket = ${join(dir, 'autosign', 'espm.sock')}`);
  });
});
