/**
 * Proves the fidelity of test/fixtures/puppet-cert/puppet, the Puppet 2.7.12 (PE 2.5)
 * `puppet cert` double, against docs/reference/puppet-ca.md: exact output lines
 * (coloured by default, plain with --color false), exit codes, the ssldir layout, real X.509
 * checked with the openssl CLI, the CRL, the knobs and the invocation log.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, execaSync } from 'execa';

const PUPPET = fileURLToPath(new URL('../fixtures/puppet-cert/puppet', import.meta.url));
const OPENSSL = existsSync('/usr/bin/openssl') ? '/usr/bin/openssl' : 'openssl';
const MASTER = 'master.example.test';
const NODE = 'web01.example.test';

const CYAN = '\u001b[0;36m';
const MAGENTA = '\u001b[1;35m';
const RESET = '\u001b[0m';

function rubyAvailability(): { available: boolean; reason: string } {
  try {
    const r = execaSync('ruby', ['-ropenssl', '-rjson', '-rfileutils', '-e', 'exit 0'], { reject: false });
    if (r.exitCode === 0) return { available: true, reason: '' };
    return { available: false, reason: `\`ruby -ropenssl\` failed (${r.exitCode ?? 'spawn'}): ${r.stderr || r.message}` };
  } catch (error) {
    return { available: false, reason: `ruby is not runnable: ${(error as Error).message}` };
  }
}

const ruby = rubyAvailability();
if (!ruby.available) {
  console.warn(`SKIPPING puppet-cert double tests: ${ruby.reason}`);
}
const describeRuby = ruby.available ? describe : describe.skip;

interface Env {
  dir: string;
  conf: string;
  ssldir: string;
}

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  lines: string[];
}

const dirs: string[] = [];

async function makeEnv(knobs?: Record<string, unknown>): Promise<Env> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'espm-puppet-cert-'));
  dirs.push(dir);
  const ssldir = path.join(dir, 'ssl');
  const conf = path.join(dir, 'puppet.conf');
  await writeFile(conf, `[main]\n    certname = ${MASTER}\n\n[master]\n    ssldir = ${ssldir}\n`);
  if (knobs) await writeFile(path.join(dir, 'double.json'), JSON.stringify(knobs));
  return { dir, conf, ssldir };
}

async function puppet(env: Env | undefined, args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const argv = env ? [...args, '--config', env.conf] : args;
  const r = await execa(PUPPET, argv, {
    reject: false,
    timeout: 20_000,
    env: { PUPPET_DOUBLE_CONFIG: '', PUPPET_DOUBLE_KEY_BITS: '', ...extraEnv },
  });
  const stdout = String(r.stdout);
  return { stdout, stderr: String(r.stderr), exitCode: r.exitCode, lines: stdout === '' ? [] : stdout.split('\n') };
}

async function openssl(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
  const r = await execa(OPENSSL, args, { reject: false });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode };
}

const ssl = (env: Env, ...parts: string[]): string => path.join(env.ssldir, ...parts);

/** The four lines of a successful 2.7.12 generate. */
function generateLines(env: Env, name: string): string[] {
  return [
    `notice: ${name} has a waiting certificate request`,
    `notice: Signed certificate request for ${name}`,
    `notice: Removing file Puppet::SSL::CertificateRequest ${name} at '${ssl(env, 'ca', 'requests', `${name}.pem`)}'`,
    `notice: Removing file Puppet::SSL::CertificateRequest ${name} at '${ssl(env, 'certificate_requests', `${name}.pem`)}'`,
  ];
}
const FIRST_RUN_LINES = ['notice: Signed certificate request for ca', 'notice: Rebuilding inventory file'];
const colour = (line: string): string =>
  line.startsWith('err:') ? `${MAGENTA}${line}${RESET}` : `${CYAN}${line}${RESET}`;

/** Every file under a directory with its content and mtime. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const st = await stat(file);
    out[path.relative(root, file)] = `${st.mtimeMs}:${(await readFile(file)).toString('base64')}`;
  }
  return out;
}

async function x509(file: string, ...args: string[]): Promise<string> {
  const r = await openssl(['x509', '-in', file, '-noout', ...args]);
  expect(r.exitCode).toBe(0);
  return r.stdout;
}

interface LogRecord {
  event: 'start' | 'end';
  pid: number;
  argv: string[];
  action: string;
  time_ms: number;
  start_ms?: number;
  end_ms?: number;
  exit?: number | null;
  signal?: string | null;
}

async function invocations(env: Env): Promise<LogRecord[]> {
  const text = await readFile(path.join(env.dir, 'invocations.log'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as LogRecord);
}

function intervals(records: LogRecord[]): Array<{ pid: number; start: number; end: number; rec: LogRecord }> {
  return records
    .filter((r) => r.event === 'end')
    .map((r) => ({ pid: r.pid, start: r.start_ms as number, end: r.end_ms as number, rec: r }));
}

function anyOverlap(list: Array<{ start: number; end: number }>): boolean {
  const sorted = [...list].sort((a, b) => a.start - b.start);
  return sorted.some((iv, i) => i > 0 && iv.start < (sorted[i - 1] as { end: number }).end);
}

describeRuby('puppet cert double (Puppet 2.7.12)', () => {
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  test('first generate creates the CA and prints the exact lines, coloured by default', async () => {
    const env = await makeEnv();
    const r = await puppet(env, ['cert', 'generate', NODE]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.lines).toEqual([...FIRST_RUN_LINES, ...generateLines(env, NODE)].map(colour));

    for (const f of [
      `certs/${NODE}.pem`,
      'certs/ca.pem',
      `private_keys/${NODE}.pem`,
      `public_keys/${NODE}.pem`,
      'crl.pem',
      'ca/ca_crt.pem',
      'ca/ca_key.pem',
      'ca/ca_crl.pem',
      `ca/signed/${NODE}.pem`,
      'ca/serial',
      'ca/inventory.txt',
    ]) {
      expect(existsSync(ssl(env, f))).toBe(true);
    }
    expect((await stat(ssl(env, 'ca', 'requests'))).isDirectory()).toBe(true);
    expect(await readdir(ssl(env, 'ca', 'requests'))).toEqual([]);
    expect(await readdir(ssl(env, 'certificate_requests'))).toEqual([]);
    expect((await stat(ssl(env, 'private_keys', `${NODE}.pem`))).mode & 0o777).toBe(0o640);

    expect(await readFile(ssl(env, 'ca', 'serial'), 'utf8')).toBe('0003');
    const inventory = (await readFile(ssl(env, 'ca', 'inventory.txt'), 'utf8')).trimEnd().split('\n');
    const ts = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dUTC';
    expect(inventory).toHaveLength(2);
    expect(inventory[0]).toMatch(new RegExp(`^0x0001 ${ts} ${ts} /CN=Puppet CA: ${MASTER}$`));
    expect(inventory[1]).toMatch(new RegExp(`^0x0002 ${ts} ${ts} /CN=${NODE}$`));
    expect(await readFile(ssl(env, 'private_keys', `${NODE}.pem`), 'utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    // generate refreshes crl.pem (cache) along with ca/ca_crl.pem
    expect(await readFile(ssl(env, 'crl.pem'), 'utf8')).toBe(await readFile(ssl(env, 'ca', 'ca_crl.pem'), 'utf8'));
  });

  test('the certificate is real: verifies against certs/ca.pem, matches its key, no SAN without --dns_alt_names', async () => {
    const env = await makeEnv();
    expect((await puppet(env, ['cert', 'generate', NODE, '--color', 'false'])).exitCode).toBe(0);
    const cert = ssl(env, 'certs', `${NODE}.pem`);

    const v = await openssl(['verify', '-CAfile', ssl(env, 'certs', 'ca.pem'), cert]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout.trim()).toBe(`${cert}: OK`);

    const certPub = await x509(cert, '-pubkey');
    const keyPub = await openssl(['pkey', '-in', ssl(env, 'private_keys', `${NODE}.pem`), '-pubout']);
    expect(keyPub.exitCode).toBe(0);
    expect(keyPub.stdout.trim()).toBe(certPub.trim());
    expect((await readFile(ssl(env, 'public_keys', `${NODE}.pem`), 'utf8')).trim()).toBe(certPub.trim());

    expect((await x509(cert, '-subject')).trim()).toBe(`subject=CN = ${NODE}`);
    expect((await x509(cert, '-issuer')).trim()).toBe(`issuer=CN = Puppet CA: ${MASTER}`);
    expect((await x509(cert, '-serial')).trim()).toBe('serial=02');
    const text = await x509(cert, '-text');
    expect(text).not.toContain('Subject Alternative Name');
    expect(text).toContain('CA:FALSE');
    expect(text).toContain('Public-Key: (2048 bit)');
    const caText = await x509(ssl(env, 'ca', 'ca_crt.pem'), '-text');
    expect(caText).toContain('CA:TRUE');
    expect(caText).toMatch(/Serial Number: 1 \(0x1\)/);

    expect(await readFile(ssl(env, 'ca', 'signed', `${NODE}.pem`), 'utf8')).toBe(await readFile(cert, 'utf8'));
    expect(await readFile(ssl(env, 'certs', 'ca.pem'), 'utf8')).toBe(await readFile(ssl(env, 'ca', 'ca_crt.pem'), 'utf8'));
  });

  test('--color false is plain; a second generate logs err:, exits 0 and changes no file', async () => {
    const env = await makeEnv();
    const first = await puppet(env, ['cert', '--color', 'false', 'generate', NODE]);
    expect(first.stdout).not.toContain('\u001b');
    expect(first.lines).toEqual([...FIRST_RUN_LINES, ...generateLines(env, NODE)]);

    const before = await snapshot(env.ssldir);
    const again = await puppet(env, ['cert', 'generate', NODE, '--color', 'false']);
    expect(again.exitCode).toBe(0);
    expect(again.lines).toEqual([`err: Could not call generate: A Certificate already exists for ${NODE}`]);
    expect(await snapshot(env.ssldir)).toEqual(before);

    const coloured = await puppet(env, ['cert', 'generate', NODE]);
    expect(coloured.exitCode).toBe(0);
    expect(coloured.lines).toEqual([`${MAGENTA}err: Could not call generate: A Certificate already exists for ${NODE}${RESET}`]);
    expect(await snapshot(env.ssldir)).toEqual(before);
  });

  test('--dns_alt_names gives a SAN of DNS:NAME plus the alt names (sorted)', async () => {
    const env = await makeEnv();
    const name = 'san.example.test';
    const r = await puppet(env, ['cert', 'generate', name, '--dns_alt_names', 'puppet.example.test,alt.example.test', '--color', 'false']);
    expect(r.exitCode).toBe(0);
    expect(r.lines).toEqual([...FIRST_RUN_LINES, ...generateLines(env, name)]);
    const cert = ssl(env, 'certs', `${name}.pem`);
    const san = await x509(cert, '-ext', 'subjectAltName');
    expect(san).toContain('DNS:alt.example.test, DNS:puppet.example.test, DNS:san.example.test');
    expect((await openssl(['verify', '-CAfile', ssl(env, 'certs', 'ca.pem'), cert])).exitCode).toBe(0);
  });

  test('clean revokes into the CRL, refreshes crl.pem, removes the files; it can be repeated and the name regenerated', async () => {
    const env = await makeEnv();
    expect((await puppet(env, ['cert', 'generate', NODE, '--color', 'false'])).exitCode).toBe(0);
    const saved = path.join(env.dir, 'saved.pem');
    await copyFile(ssl(env, 'certs', `${NODE}.pem`), saved);

    const r = await puppet(env, ['cert', 'clean', NODE, '--color', 'false']);
    expect(r.exitCode).toBe(0);
    expect(r.lines).toEqual([
      'notice: Revoked certificate with serial 2',
      `notice: Removing file Puppet::SSL::Key ${NODE} at '${ssl(env, 'private_keys', `${NODE}.pem`)}'`,
      `notice: Removing file Puppet::SSL::Certificate ${NODE} at '${ssl(env, 'ca', 'signed', `${NODE}.pem`)}'`,
      `notice: Removing file Puppet::SSL::Certificate ${NODE} at '${ssl(env, 'certs', `${NODE}.pem`)}'`,
    ]);
    for (const f of [`certs/${NODE}.pem`, `ca/signed/${NODE}.pem`, `private_keys/${NODE}.pem`, `public_keys/${NODE}.pem`]) {
      expect(existsSync(ssl(env, f))).toBe(false);
    }

    const crl = await openssl(['crl', '-in', ssl(env, 'ca', 'ca_crl.pem'), '-noout', '-text']);
    expect(crl.exitCode).toBe(0);
    expect(crl.stdout).toMatch(/Serial Number: 02\s/);
    expect(crl.stdout).toContain('Key Compromise');
    expect(await readFile(ssl(env, 'crl.pem'), 'utf8')).toBe(await readFile(ssl(env, 'ca', 'ca_crl.pem'), 'utf8'));
    const verify = await openssl(['verify', '-crl_check', '-CAfile', ssl(env, 'certs', 'ca.pem'), '-CRLfile', ssl(env, 'crl.pem'), saved]);
    expect(verify.exitCode).not.toBe(0);
    expect(verify.stdout + verify.stderr).toContain('certificate revoked');

    const twice = await puppet(env, ['cert', 'clean', NODE, '--color', 'false']);
    expect(twice.exitCode).toBe(0);
    expect(twice.lines).toEqual(['notice: Revoked certificate with serial 2']);

    const regen = await puppet(env, ['cert', 'generate', NODE, '--color', 'false']);
    expect(regen.exitCode).toBe(0);
    expect(regen.lines).toEqual(generateLines(env, NODE));
    expect((await x509(ssl(env, 'certs', `${NODE}.pem`), '-serial')).trim()).toBe('serial=03');
  });

  test('revoke writes ca/ca_crl.pem only and keeps the files; list --all shows it revoked', async () => {
    const env = await makeEnv();
    expect((await puppet(env, ['cert', 'generate', NODE, '--color', 'false'])).exitCode).toBe(0);
    const hostCrl = await readFile(ssl(env, 'crl.pem'), 'utf8');

    const r = await puppet(env, ['cert', 'revoke', NODE, '--color', 'false']);
    expect(r.exitCode).toBe(0);
    expect(r.lines).toEqual(['notice: Revoked certificate with serial 2']);
    const crl = await openssl(['crl', '-in', ssl(env, 'ca', 'ca_crl.pem'), '-noout', '-text']);
    expect(crl.stdout).toMatch(/Serial Number: 02\s/);
    expect(await readFile(ssl(env, 'crl.pem'), 'utf8')).toBe(hostCrl); // 2.7 revoke does not refresh crl.pem
    expect(existsSync(ssl(env, 'certs', `${NODE}.pem`))).toBe(true);
    expect(existsSync(ssl(env, 'private_keys', `${NODE}.pem`))).toBe(true);

    const list = await puppet(env, ['cert', 'list', '--all', '--color', 'false']);
    expect(list.exitCode).toBe(0);
    expect(list.lines).toHaveLength(1);
    expect(list.lines[0]).toMatch(new RegExp(`^- ${NODE.replace(/\./g, '\\.')} \\(([0-9A-F]{2}:){15}[0-9A-F]{2}\\) \\(certificate revoked\\)$`));

    const unknown = await puppet(env, ['cert', 'revoke', 'ghost.example.test', '--color', 'false']);
    expect(unknown.exitCode).toBe(0);
    expect(unknown.lines).toEqual(['err: Could not call revoke: Could not find a serial number for ghost.example.test']);
  });

  test('clean of an unknown name logs err:, exits 0 and still removes leftover files', async () => {
    const env = await makeEnv();
    expect((await puppet(env, ['cert', 'generate', NODE, '--color', 'false'])).exitCode).toBe(0);
    const ghost = 'ghost.example.test';
    await writeFile(ssl(env, 'private_keys', `${ghost}.pem`), 'leftover\n');
    await writeFile(ssl(env, 'public_keys', `${ghost}.pem`), 'leftover\n');

    const r = await puppet(env, ['cert', 'clean', ghost, '--color', 'false']);
    expect(r.exitCode).toBe(0);
    expect(r.lines).toEqual([
      `err: Could not call revoke: Could not find a serial number for ${ghost}`,
      `notice: Removing file Puppet::SSL::Key ${ghost} at '${ssl(env, 'private_keys', `${ghost}.pem`)}'`,
    ]);
    expect(existsSync(ssl(env, 'private_keys', `${ghost}.pem`))).toBe(false);
    expect(existsSync(ssl(env, 'public_keys', `${ghost}.pem`))).toBe(false);

    const nothing = await puppet(env, ['cert', 'clean', 'never.example.test']);
    expect(nothing.exitCode).toBe(0);
    expect(nothing.lines).toEqual([`${MAGENTA}err: Could not call revoke: Could not find a serial number for never.example.test${RESET}`]);
  });

  test('sign errors exit 0; interface errors exit 24; a bad option exits 1', async () => {
    const env = await makeEnv();
    const sign = await puppet(env, ['cert', 'sign', 'nope.example.test', '--color', 'false']);
    expect(sign.exitCode).toBe(0);
    expect(sign.lines).toEqual([...FIRST_RUN_LINES, 'err: Could not call sign: Could not find certificate request for nope.example.test']);

    const signAll = await puppet(env, ['cert', 'sign', '--all', '--color', 'false']);
    expect(signAll.exitCode).toBe(24);
    expect(signAll.lines).toEqual(['No waiting certificate requests to sign']);

    const noHost = await puppet(env, ['cert', 'generate', '--color', 'false']);
    expect(noHost.exitCode).toBe(24);
    expect(noHost.lines).toEqual(['You must provide hosts or :all when using generate']);

    const bad = await puppet(env, ['cert', 'generate', NODE, '--bogus']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('invalid option: --bogus');
    expect(existsSync(ssl(env, 'certs', `${NODE}.pem`))).toBe(false);
  });

  test('--configprint: master and cert list print ssldir; cert without an action prints help and exits 0', async () => {
    const env = await makeEnv();
    const master = await puppet(env, ['master', '--configprint', 'ssldir']);
    expect(master.exitCode).toBe(0);
    expect(master.stdout).toBe(env.ssldir);

    const list = await puppet(env, ['cert', 'list', '--configprint', 'ssldir']);
    expect(list.exitCode).toBe(0);
    expect(list.stdout).toBe(env.ssldir);

    const bare = await puppet(env, ['cert', '--configprint', 'ssldir']);
    expect(bare.exitCode).toBe(0);
    expect(bare.stdout).toContain('puppet-cert(8) -- Manage certificates and requests');
    expect(bare.stdout).toContain('USAGE');
    expect(bare.stdout).not.toContain(env.ssldir);

    expect(existsSync(env.ssldir)).toBe(false); // settings look-ups create nothing
  });

  test('without --config an action fails like PE puppet that cannot create /etc/puppetlabs; PUPPET_DOUBLE_CONFIG works', async () => {
    const none = await puppet(undefined, ['cert', 'generate', NODE, '--color', 'false']);
    expect(none.exitCode).toBe(23);
    expect(none.lines[0]).toMatch(/^err: \/File\[\/etc\/puppetlabs\/puppet\/ssl\]\/ensure: change from absent to directory failed/);
    expect(none.lines[1]).toMatch(/^Got 1 failure\(s\) while initializing: /);

    const env = await makeEnv();
    const viaEnv = await puppet(undefined, ['cert', 'generate', NODE, '--color', 'false'], { PUPPET_DOUBLE_CONFIG: env.conf });
    expect(viaEnv.exitCode).toBe(0);
    expect(viaEnv.lines).toEqual([...FIRST_RUN_LINES, ...generateLines(env, NODE)]);
  });

  test('knobs: key_bits, digest, fault, sleep, autosign_err', async () => {
    const small = await makeEnv({ key_bits: 1024, digest: 'SHA512' });
    expect((await puppet(small, ['cert', 'generate', NODE, '--color', 'false'])).exitCode).toBe(0);
    const text = await x509(ssl(small, 'certs', `${NODE}.pem`), '-text');
    expect(text).toContain('Public-Key: (1024 bit)');
    expect(text).toContain('sha512WithRSAEncryption');
    expect(await x509(ssl(small, 'certs', 'ca.pem'), '-text')).toContain('Public-Key: (1024 bit)');

    const faulty = await makeEnv({ fault: { generate: { exit: 3, stdout: 'boom\n', stderr: 'bang\n' } } });
    const f = await puppet(faulty, ['cert', 'generate', NODE]);
    expect(f.exitCode).toBe(3);
    expect(f.stdout).toBe('boom');
    expect(f.stderr).toBe('bang');
    expect(existsSync(faulty.ssldir)).toBe(false); // no state touched

    const slow = await makeEnv({ sleep: { list: 0.6 } });
    const t0 = Date.now();
    expect((await puppet(slow, ['cert', 'list'])).exitCode).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);

    const auto = await makeEnv({ autosign_err: true });
    const a = await puppet(auto, ['cert', 'generate', NODE, '--color', 'false']);
    expect(a.exitCode).toBe(0);
    expect(a.lines).toEqual([
      ...FIRST_RUN_LINES,
      ...generateLines(auto, NODE),
      `err: Could not call generate: Could not find certificate request for ${NODE}`,
    ]);
    const cert = ssl(auto, 'certs', `${NODE}.pem`);
    expect((await openssl(['verify', '-CAfile', ssl(auto, 'certs', 'ca.pem'), cert])).exitCode).toBe(0);
    expect(existsSync(ssl(auto, 'private_keys', `${NODE}.pem`))).toBe(true);
  });

  test('invocation log: start and end per process, exit codes, and overlap is detectable', async () => {
    const env = await makeEnv({ sleep: { list: 0.7 }, fault: { revoke: { exit: 5 } } });
    await puppet(env, ['cert', 'generate', NODE, '--color', 'false']);
    await puppet(env, ['cert', 'generate', NODE, '--color', 'false']);
    await puppet(env, ['cert', 'revoke', NODE]);

    let records = await invocations(env);
    expect(records.map((r) => [r.event, r.action])).toEqual([
      ['start', 'generate'],
      ['end', 'generate'],
      ['start', 'generate'],
      ['end', 'generate'],
      ['start', 'revoke'],
      ['end', 'revoke'],
    ]);
    for (const r of records) {
      expect(Number.isInteger(r.pid)).toBe(true);
      expect(r.argv).toContain('--config');
      expect(Math.abs(r.time_ms - Date.now())).toBeLessThan(60_000);
    }
    const ends = records.filter((r) => r.event === 'end');
    expect(ends.map((r) => r.exit)).toEqual([0, 0, 5]);
    expect(ends[0]?.argv).toEqual(['cert', 'generate', NODE, '--color', 'false', '--config', env.conf]);
    expect(anyOverlap(intervals(records))).toBe(false); // sequential calls never overlap

    // two CA processes at once: the log shows the overlap
    await Promise.all([puppet(env, ['cert', 'list']), puppet(env, ['cert', 'list'])]);
    records = await invocations(env);
    const lists = intervals(records).filter((iv) => iv.rec.action === 'list');
    expect(lists).toHaveLength(2);
    expect(new Set(lists.map((iv) => iv.pid)).size).toBe(2);
    expect(anyOverlap(lists)).toBe(true);
    for (const iv of lists) expect(iv.end - iv.start).toBeGreaterThanOrEqual(700);
  });
});
