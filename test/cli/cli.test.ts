/**
 * bin/espm_setup and bin/espm as a new operator runs them: real processes, real signals.
 * Needs `npm run build` (the test command's pretest does it).
 */
import { once } from 'node:events';
import { readFile, readdir, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import ini from 'ini';
import { DEFAULTS, loadConfig, parseConfig } from '../../src/config.js';
import { SETUP_CA_BACKENDS } from '../../src/setup/detect.js';
import { generatePsk } from '../../src/setup/psk.js';
import { freePort } from '../support/net.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');
const ESPM_SETUP = join(ROOT, 'bin', 'espm_setup');

/** Output of espm_setup, split as an operator reads it. */
function parseAnnouncement(stdout: string): { psk: string; certificate: string; fingerprint: string } {
  const lines = stdout.split('\n');
  const end = lines.indexOf('-----END CERTIFICATE-----');
  return {
    psk: lines[1]!,
    certificate: `${lines.slice(4, end + 1).join('\n')}\n`,
    fingerprint: lines[end + 2]!,
  };
}

function call(
  port: number,
  path: string,
  options: { ca: string; psk?: string; method?: string; body?: string; onRequest?: (req: import('node:http').ClientRequest) => void },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        ca: options.ca,
        headers: {
          ...(options.psk === undefined ? {} : { authorization: `Bearer ${options.psk}` }),
          ...(options.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(options.body) }),
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    if (options.onRequest !== undefined) options.onRequest(req);
    else req.end(options.body);
  });
}

describe('espm_setup and espm, as a new operator runs them', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-cli-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  /**
   * An environment whose PATH holds node only: espm_setup detects no puppetserver and writes the
   * PE 2.x/3.x defaults (dashboard-rake), whatever this machine has installed.
   */
  const peMasterEnv = async (): Promise<{ PATH: string }> => {
    const bin = join(dir, 'pe-bin');
    await mkdir(bin, { recursive: true });
    await symlink(process.execPath, join(bin, 'node')).catch(() => undefined);
    return { PATH: bin };
  };

  it('espm_setup --help and espm --help describe every option; --version prints the version', async () => {
    const setupHelp = await execa(ESPM_SETUP, ['--help']);
    for (const option of ['--config-dir', '--cert-dir', '--port', '--host', '--hostname', '--ip', '--state-dir', '--ca-backend', '--print-config']) {
      expect(setupHelp.stdout).toContain(option);
    }
    expect(setupHelp.stdout).toContain('(default: "/opt/espm/etc")');
    expect(setupHelp.stdout).toMatch(
      /--ca-backend <name>[^]*no\s+process\s+per\s+certificate[^]*pp_cli_auth[^]*\(choices:\s+"puppet-cert",\s+"puppetserver-ca",\s+"puppetserver-api"\)/,
    );
    const help = await execa(ESPM, ['--help']);
    expect(help.stdout).toMatch(/-c, --config <path>[\s\S]*\(default:\s+"\/opt\/espm\/etc\/espm.ini"\)/);
    expect(help.stdout).toMatch(/SIGHUP reloads/);
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await execa(ESPM, ['--version'])).stdout).toBe(pkg.version);
    expect((await execa(ESPM_SETUP, ['--version'])).stdout).toBe(pkg.version);
  });

  it('espm_setup rejects a bad port or IP before doing anything', async () => {
    const port = await execa(ESPM_SETUP, ['-d', dir, '-p', '99999'], { reject: false });
    expect(port.exitCode).not.toBe(0);
    expect(port.stderr).toContain('must be a port between 1 and 65535');
    const ip = await execa(ESPM_SETUP, ['-d', dir, '--ip', 'localhost'], { reject: false });
    expect(ip.stderr).toContain('must be an IPv4 or IPv6 address');
    expect(await readFile(join(dir, 'espm.ini')).catch(() => 'absent')).toBe('absent');
  });

  it('espm_setup --print-config writes nothing', async () => {
    const result = await execa(ESPM_SETUP, ['-d', join(dir, 'etc'), '--print-config']);
    expect(ini.parse(result.stdout)).toHaveProperty('server.psk');
    await expect(stat(join(dir, 'etc'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each(SETUP_CA_BACKENDS)('espm_setup --print-config --ca-backend %s shows a config of that backend', async (backend) => {
    const result = await execa(ESPM_SETUP, ['-d', join(dir, 'etc'), '--hostname', 'localhost', '--ca-backend', backend, '--print-config']);
    const parsed = ini.parse(result.stdout) as { ca: Record<string, unknown> };
    expect(parseConfig(parsed, 'stdout').ca.backend).toBe(backend);
    const apiKeys = { key_bits: String(DEFAULTS.ca.key_bits), key_pool: String(DEFAULTS.ca.key_pool), api_url: '', api_cert: '', api_key: '', api_ca: '' };
    if (backend === 'puppetserver-api') expect(parsed.ca).toMatchObject(apiKeys);
    else for (const key of Object.keys(apiKeys)) expect(parsed.ca).not.toHaveProperty(key);
    await expect(stat(join(dir, 'etc'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each(['nope', 'sandbox'])('espm_setup --ca-backend %s is refused by name, nothing written', async (name) => {
    const result = await execa(ESPM_SETUP, ['-d', dir, '--hostname', 'localhost', '--ca-backend', name], { reject: false });
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      `error: option '--ca-backend <name>' argument '${name}' is invalid. Allowed choices are puppet-cert, puppetserver-ca, puppetserver-api.`,
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it('espm_setup\'s summary: enc + puppetserver-api on an open-source Puppet master (and its Puppet steps), or the operator\'s --ca-backend', async () => {
    // PATH of one directory: node (for the shebang) and, for a Puppet >= 6 master, puppetserver and puppet stand-ins.
    const bin = join(dir, 'bin');
    const bare = join(dir, 'bare');
    await Promise.all([mkdir(bin), mkdir(bare)]);
    await Promise.all([symlink(process.execPath, join(bin, 'node')), symlink(process.execPath, join(bare, 'node'))]);
    for (const name of ['puppetserver', 'puppet']) await writeFile(join(bin, name), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const setup = async (name: string, path: string, extra: string[] = []) => {
      const result = await execa(ESPM_SETUP, ['-d', join(dir, name), '--state-dir', join(dir, name, 'var'), '--hostname', 'localhost', ...extra], {
        env: { PATH: path },
      });
      return { summary: result.stderr.trim(), config: loadConfig(join(dir, name, 'espm.ini')) };
    };

    const detected = await setup('detected', bin);
    expect(detected.summary).toMatch(
      new RegExp(`^espm_setup: open-source Puppet / OpenVox master found \\(${bin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/puppetserver, no PE console\\): ` +
        'classifier enc \\(espm enc as puppetserver\'s ENC for the nodes espm creates\\), CA puppetserver-api with /\\S+/puppet\\.conf\n'),
    );
    expect(detected.summary).toContain('node_terminus = exec');
    expect(detected.config.classifier).toMatchObject({ backend: 'enc', puppet: join(bin, 'puppet') });
    expect(detected.config.ca).toMatchObject({ backend: 'puppetserver-api', puppetserver: join(bin, 'puppetserver'), puppet: join(bin, 'puppet') });

    const cli = await setup('cli', bin, ['--ca-backend', 'puppetserver-ca']);
    expect(cli.summary).toMatch(/^espm_setup: open-source Puppet \/ OpenVox master found \(.*\): classifier enc .*CA puppetserver-ca \(chosen with --ca-backend instead of puppetserver-api\) with /);
    expect(cli.config.ca).toMatchObject({ backend: 'puppetserver-ca', puppetserver: join(bin, 'puppetserver') });
    // puppetserver-ca signs tokens too (its CA API as the master): the policy executable's line is printed.
    expect(cli.summary).toMatch(/^ {4}autosign = \S+\/autosign\/policy$/m);
    const api = await setup('api', bin);
    expect(api.config.ca).toMatchObject({
      backend: 'puppetserver-api',
      puppetserver: join(bin, 'puppetserver'),
      keyBits: DEFAULTS.ca.key_bits,
      keyPool: DEFAULTS.ca.key_pool,
      apiUrl: undefined,
      apiCert: undefined,
      apiKey: undefined,
      apiCa: undefined,
    });

    const none = await setup('none', bare, ['--ca-backend', 'puppetserver-ca']);
    expect(none.summary.split('\n')[0]).toBe(
      'espm_setup: neither a PE console nor puppetserver found: CA puppetserver-ca (chosen with --ca-backend), ' +
        'otherwise PE 2.x/3.x defaults written, edit them to match this master',
    );
    expect(none.summary).toMatch(/^ {4}autosign = \S+\/none\/autosign\/policy$/m);
    expect(none.config.ca.backend).toBe('puppetserver-ca');
  });

  it('espm exits 2 naming the key on a bad config, and 2 when the config is missing', async () => {
    const setup = await execa(ESPM_SETUP, ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost']);
    expect(setup.exitCode).toBe(0);
    const text = (await readFile(join(dir, 'espm.ini'), 'utf8')).replace(/^port = .*$/m, 'port = eighty');
    await import('node:fs/promises').then((fs) => fs.writeFile(join(dir, 'espm.ini'), text, { mode: 0o600 }));
    const bad = await execa(ESPM, ['-c', join(dir, 'espm.ini')], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/\[server\] port/);
    const missing = await execa(ESPM, ['-c', join(dir, 'nope.ini')], { reject: false });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(join(dir, 'nope.ini'));
  });

  it('setup → serve → status → refuse a second setup → HUP swaps the PSK → TERM drains and exits 0', async () => {
    const port = await freePort();
    const setupArgs = ['-d', dir, '-c', join(dir, 'certs'), '--state-dir', join(dir, 'var'),
      '--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(port)];
    const setup = await execa(ESPM_SETUP, setupArgs, { env: await peMasterEnv() });
    expect(setup.exitCode).toBe(0);
    const { psk, certificate, fingerprint } = parseAnnouncement(setup.stdout);
    expect(setup.stdout.split('\n').slice(0, 4)).toEqual(['Preshared Key:', psk, '', 'Certificate:']);
    expect(setup.stdout).toContain(`SHA-256 Fingerprint:\n${fingerprint}\n`);
    expect(setup.stdout.trimEnd().split('\n').at(-1)).toBe(`Writing config to: ${join(dir, 'espm.ini')}`);
    expect(await readFile(join(dir, 'certs', 'espm.crt'), 'utf8')).toBe(certificate);

    const again = await execa(ESPM_SETUP, setupArgs, { reject: false, env: await peMasterEnv() });
    expect(again.exitCode).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toContain(`refusing to overwrite existing files: ${join(dir, 'certs', 'espm.key')}`);
    expect(await readFile(join(dir, 'certs', 'espm.crt'), 'utf8')).toBe(certificate);

    const espm: ResultPromise = execa(ESPM, ['-c', join(dir, 'espm.ini')], { reject: false });
    let out = '';
    espm.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      await waitFor(() => out.includes('"msg":"listening"'));
      expect((await call(port, '/healthz', { ca: certificate })).body).toBe('{"status":"ok"}');
      const status = await call(port, '/v1/status', { ca: certificate, psk });
      expect(status.status).toBe(200);
      expect(JSON.parse(status.body)).toMatchObject({ classifier: { backend: 'dashboard-rake' } });

      const newPsk = generatePsk();
      const config = await readFile(join(dir, 'espm.ini'), 'utf8');
      await import('node:fs/promises').then((fs) =>
        fs.writeFile(join(dir, 'espm.ini'), config.replace(psk, newPsk), { mode: 0o600 }),
      );
      espm.kill('SIGHUP');
      await waitFor(() => out.includes('"msg":"config reloaded"'));
      expect((await call(port, '/v1/status', { ca: certificate, psk })).status).toBe(401);
      expect((await call(port, '/v1/status', { ca: certificate, psk: newPsk })).status).toBe(200);

      // An in-flight request (body not yet complete) when SIGTERM arrives is still answered.
      const body = JSON.stringify({ certname: 'x' });
      let sendRest!: () => void;
      const inFlight = call(port, '/v1/status', {
        ca: certificate,
        psk: newPsk,
        method: 'POST',
        body,
        onRequest: (req) => {
          req.write(body.slice(0, 5));
          sendRest = () => req.end(body.slice(5));
        },
      });
      // Let the headers and the first bytes of the body reach espm before the signal.
      await new Promise((r) => setTimeout(r, 300));
      espm.kill('SIGTERM');
      await waitFor(() => out.includes('"msg":"stopping: draining in-flight requests"'));
      sendRest();
      expect((await inFlight).status).toBe(404);
      const result = await espm;
      expect(result.exitCode).toBe(0);
      expect(out).toContain('"msg":"stopped"');
      await expect(call(port, '/healthz', { ca: certificate })).rejects.toThrow(/ECONNREFUSED/);

      const records = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.map((r) => r['msg'])).toEqual(
        expect.arrayContaining(['starting espm', 'listening', 'request', 'config reloaded', 'signal received', 'stopped']),
      );
      expect(records.find((r) => r['msg'] === 'starting espm')).toMatchObject({ version: expect.any(String), classifier: 'dashboard-rake' });
      for (const secret of [psk, newPsk, 'PRIVATE KEY', 'Bearer', 'authorization']) expect(out).not.toContain(secret);
    } finally {
      espm.kill('SIGKILL');
    }
  }, 60_000);

  it('espm --check-config validates the config and the TLS files, then exits', async () => {
    await execa(ESPM_SETUP, ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost'], { env: await peMasterEnv() });
    const ok = await execa(ESPM, ['--check-config', '-c', join(dir, 'espm.ini')]);
    expect(ok.stdout.startsWith(`${join(dir, 'espm.ini')}: OK`)).toBe(true);
    expect(ok.stdout).toMatch(/: OK \(listen 0\.0\.0\.0:8443, classifier dashboard-rake, ca (puppet-cert|puppetserver-ca), state .*\/var\)$/);
    const { chmod } = await import('node:fs/promises');
    await chmod(join(dir, 'certs', 'espm.key'), 0o644);
    const insecure = await execa(ESPM, ['--check-config', '-c', join(dir, 'espm.ini')], { reject: false });
    expect(insecure.exitCode).toBe(2);
    expect(insecure.stderr).toMatch(/\[server\] key .*espm\.key is readable or writable by group\/others \(mode 0644\)/);
  });

  it('[log] format = text writes readable lines for a person', async () => {
    const port = await freePort();
    await execa(ESPM_SETUP, ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost', '--host', '127.0.0.1', '-p', String(port)]);
    const text = (await readFile(join(dir, 'espm.ini'), 'utf8')).replace(/^format = json$/m, 'format = text');
    await import('node:fs/promises').then((fs) => fs.writeFile(join(dir, 'espm.ini'), text, { mode: 0o600 }));
    const espm = execa(ESPM, ['-c', join(dir, 'espm.ini')], { reject: false });
    let out = '';
    espm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await waitFor(() => out.includes('listening'));
      espm.kill('SIGTERM');
      expect((await espm).exitCode).toBe(0);
      expect(out).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [^\]]*\] INFO: starting espm$/m);
      expect(out).toMatch(/INFO: listening/);
      expect(out).not.toMatch(/^\{/m);
    } finally {
      espm.kill('SIGKILL');
    }
  });

  it('SIGTERM while several backend commands run drains them all and exits 0', async () => {
    const port = await freePort();
    await execa(ESPM_SETUP, ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(port)], { env: await peMasterEnv() });
    const fs = await import('node:fs/promises');
    const slowRake = join(dir, 'slow-rake');
    await fs.writeFile(slowRake, '#!/bin/sh\nsleep 2\necho default\n', { mode: 0o755 });
    const text = (await readFile(join(dir, 'espm.ini'), 'utf8'))
      .replace(/^rake = .*$/m, `rake = ${slowRake}`)
      .replace(/^cwd = .*$/m, `cwd = ${dir}`)
      .replace(/^worker = .*$/m, 'worker = off');
    await fs.writeFile(join(dir, 'espm.ini'), text, { mode: 0o600 });
    const { psk, certificate } = await (async () => {
      const lines = (await readFile(join(dir, 'espm.ini'), 'utf8')).match(/^psk = (.*)$/m)!;
      return { psk: lines[1]!, certificate: await readFile(join(dir, 'certs', 'espm.crt'), 'utf8') };
    })();
    const espm = execa(ESPM, ['-c', join(dir, 'espm.ini')], { reject: false });
    let out = '';
    espm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await waitFor(() => out.includes('"msg":"listening"'));
      await waitFor(() => out.includes('console'), 15_000);
      const calls = ['/v1/groups', '/v1/classes', '/v1/groups?refresh=true'].map((path) => call(port, path, { ca: certificate, psk }));
      await new Promise((r) => setTimeout(r, 500));
      espm.kill('SIGTERM');
      const answers = await Promise.all(calls);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      const result = await espm;
      expect([result.exitCode, result.signal]).toEqual([0, undefined]);
    } finally {
      espm.kill('SIGKILL');
    }
  }, 30_000);

  it('espm exits 1 with a clear message when the port is taken', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as { port: number };
    try {
      await execa(ESPM_SETUP, ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost', '--host', '127.0.0.1', '-p', String(port)]);
      const result = await execa(ESPM, ['-c', join(dir, 'espm.ini')], { reject: false, timeout: 10_000 });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain('EADDRINUSE');
    } finally {
      blocker.close();
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
