/**
 * bin/espm-enc, puppetserver's exec ENC front (POSIX sh), as puppetserver runs it: the daemon's
 * `enc` classifier writes the classification file and the `owned` names with the fallback
 * (`.fallback`, `.timeout`: from `[classifier] fallback_enc` and `timeout` only; src/classifier/
 * enc-owned.ts); the front answers an owned node through `espm enc`, runs the daemon's fallback
 * itself for any other node (output and exit status unchanged, killed at its timeout), follows a
 * SIGHUP that changes the fallback, hands every
 * name espm could never have created to `espm enc` (decided by src/names.ts `isCertname`'s
 * rule), never writes, and passes shellcheck. The real puppetserver runs it in
 * test/e2e/enc.test.ts.
 *
 * Needs `npm run build` (bin/espm runs dist/).
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { EncClassifier } from '../../src/classifier/enc.js';
import { writeOwnedNames } from '../../src/classifier/enc-owned.js';
import { isEncCertname } from '../../src/cli/enc.js';
import { parseConfig, type ClassifierConfig } from '../../src/config.js';
import { ExecaCommandRunner } from '../../src/exec/command.js';
import { isCertname } from '../../src/names.js';
import { itWith } from '../support/components.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FRONT = join(ROOT, 'bin', 'espm-enc');
const ESPM = join(ROOT, 'bin', 'espm');
const NODE = 'web01.example.test';
const ENV = { PATH: '/usr/bin:/bin' };
/** The site's previous ENC: classifies no one (so espm may create any name), says so per name. */
const FALLBACK = '#!/bin/sh\nprintf "classes: {}\\n# old ENC, for %s\\n" "$1"\necho "old enc warns" >&2\n[ "$1" = fail.example.test ] && exit 7\nexit 0\n';

const SHELLCHECK_MISSING = (await execa('shellcheck', ['--version'], { reject: false })).exitCode === 0 ? undefined : 'shellcheck is not on PATH';

const run = (file: string, args: string[]) => execa(file, args, { reject: false, stripFinalNewline: false, env: ENV });
const outcome = (r: Awaited<ReturnType<typeof run>>) => ({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr });

describe('bin/espm-enc, puppetserver\'s exec ENC front', () => {
  let dir: string;
  let classificationFile: string;
  let oldEnc: string;
  let enc: EncClassifier;
  /** The front as espm_setup prints it: only the classification file. */
  const front = (...args: string[]) => run(FRONT, ['-f', classificationFile, ...args]);
  /** A daemon's `enc` classifier on its own directory, with these `[classifier]` keys. */
  const classifierConfig = (sub: string, keys: Record<string, string> = {}) =>
    parseConfig(
      { server: { cert: '/c', key: '/k', psk: 'x'.repeat(48) }, classifier: { backend: 'enc', groups_file: join(dir, 'groups.yaml'), classification_file: join(dir, sub, 'classification.json'), ...keys } },
      join(dir, 'espm.ini'),
    ).classifier as ClassifierConfig<'enc'>;
  const startClassifier = async (sub: string, keys: Record<string, string> = {}) => {
    const classifier = new EncClassifier(classifierConfig(sub, keys), new ExecaCommandRunner());
    await classifier.start();
    return join(dir, sub, 'classification.json');
  };
  const espmEnc = (name: string) => run(ESPM, ['enc', '-f', classificationFile, name]);
  const owned = () => join(dir, 'enc', 'owned');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-enc-front-'));
    classificationFile = join(dir, 'enc', 'classification.json');
    oldEnc = join(dir, 'old-enc');
    await writeFile(oldEnc, FALLBACK, { mode: 0o755 });
    await writeFile(join(dir, 'groups.yaml'), 'webservers: {classes: {apache: {port: 8080}}, parameters: {tier: web}}\n');
    const config = parseConfig(
      {
        server: { cert: '/c', key: '/k', psk: 'x'.repeat(48) },
        classifier: { backend: 'enc', groups_file: join(dir, 'groups.yaml'), classification_file: classificationFile, fallback_enc: oldEnc, timeout: '2' },
      },
      join(dir, 'espm.ini'),
    );
    enc = new EncClassifier(config.classifier as ClassifierConfig<'enc'>, new ExecaCommandRunner());
    await enc.start();
    await enc.create({ name: NODE, groups: ['webservers'], classes: ['motd'], parameters: { motd_message: 'hi' } });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('an owned node: the answer `espm enc` gives, from the classification file; nothing written', async () => {
    const before = await stat(classificationFile);
    const answer = await front(NODE);
    expect(outcome(answer)).toEqual({ exitCode: 0, stdout: '---\nclasses:\n  apache:\n    port: 8080\n  motd: {}\nparameters:\n  tier: web\n  motd_message: hi\n', stderr: '' });
    expect(outcome(answer)).toEqual(outcome(await espmEnc(NODE)));
    expect((await stat(classificationFile)).mtimeMs).toBe(before.mtimeMs);
    expect((await stat(join(dir, 'enc', await readlink(owned())))).mode & 0o777).toBe(0o750);
  });

  it('a node espm does not own: the fallback\'s stdout, stderr and exit status, byte for byte, without starting espm', async () => {
    // A copy of the front with no bin/espm beside it: only the fallback can answer.
    const alone = join(dir, 'alone');
    await rm(alone, { recursive: true, force: true });
    await execa('mkdir', [alone]);
    await copyFile(FRONT, join(alone, 'espm-enc'));
    await execa('chmod', ['755', join(alone, 'espm-enc')]);
    for (const name of ['other.example.test', 'fail.example.test']) {
      const direct = outcome(await run(oldEnc, [name]));
      expect(outcome(await front(name))).toEqual(direct);
      expect(outcome(await run(join(alone, 'espm-enc'), ['-f', classificationFile, name]))).toEqual(direct);
    }
    expect(await run(join(alone, 'espm-enc'), ['-f', classificationFile, NODE])).toMatchObject({ exitCode: 127, stdout: '' });
    // The daemon wrote the fallback from fallback_enc and timeout: nothing else holds them.
    expect(await readFile(join(owned(), '.fallback'), 'utf8')).toBe(`${oldEnc}\n`);
    expect(await readFile(join(owned(), '.timeout'), 'utf8')).toBe('2\n');
  });

  it('a fallback with arguments: split on spaces as Puppet splits external_nodes, the certname appended, nothing else parsed', async () => {
    const file = await startClassifier('args', { fallback_enc: '/bin/echo  --from-setting *  $HOME' });
    expect(await readFile(join(dir, 'args', 'owned', '.fallback'), 'utf8')).toBe('/bin/echo --from-setting * $HOME\n');
    expect(outcome(await run(FRONT, ['-f', file, 'n1.example.test']))).toEqual({ exitCode: 0, stdout: '--from-setting * $HOME n1.example.test\n', stderr: '' });
    expect(outcome(await run(FRONT, ['-f', file, 'n1.example.test']))).toEqual(outcome(await run(ESPM, ['enc', '-f', file, 'n1.example.test'])));
    // An older line with `-t SECONDS FALLBACK` on it: those words are ignored, the daemon's fallback runs.
    expect(outcome(await run(FRONT, ['-f', file, '-t', '9', '/bin/false', 'n1.example.test']))).toEqual({ exitCode: 0, stdout: '--from-setting * $HOME n1.example.test\n', stderr: '' });
    expect(outcome(await run(FRONT, ['-f', file, '-t', '9', '/bin/false', '--site', '-t', 'x', 'n1.example.test']))).toEqual({ exitCode: 0, stdout: '--from-setting * $HOME n1.example.test\n', stderr: '' });
  });

  it('without a fallback: `classes: {}` (from `espm enc`) for a node espm does not own', async () => {
    const bare = await startClassifier('bare');
    expect(await readdir(join(dir, 'bare', 'owned'))).toEqual([]);
    const answer = outcome(await run(FRONT, ['-f', bare, 'other.example.test']));
    expect(answer).toEqual({ exitCode: 0, stdout: '---\nclasses: {}\n', stderr: '' });
    expect(answer).toEqual(outcome(await run(ESPM, ['enc', '-f', bare, 'other.example.test'])));
    // An older line's fallback tail never runs a command fallback_enc does not name.
    expect(outcome(await run(FRONT, ['-f', bare, '-t', '2', '/bin/echo', 'tail', 'other.example.test']))).toEqual(answer);
  });

  it('a fallback that cannot be run: exit 127 and the reason, no answer', async () => {
    const file = await startClassifier('missing', { fallback_enc: join(dir, 'missing-enc') });
    const result = await run(FRONT, ['-f', file, 'other.example.test']);
    expect(result).toMatchObject({ exitCode: 127, stdout: '' });
    expect(result.stderr).toContain('missing-enc');
  });

  it('a fallback that hangs is killed at [classifier] timeout: exit 137 (SIGKILL) and timeout\'s message, no answer', async () => {
    const hung = join(dir, 'hung-enc');
    await writeFile(hung, '#!/bin/sh\nexec /bin/sleep 30\n', { mode: 0o755 });
    const file = await startClassifier('hung', { fallback_enc: hung, timeout: '1' });
    expect(await readFile(join(dir, 'hung', 'owned', '.timeout'), 'utf8')).toBe('1\n');
    const since = Date.now();
    const result = await run(FRONT, ['-f', file, 'hang.example.test']);
    expect(result).toMatchObject({ exitCode: 137, stdout: '' });
    expect(result.stderr).toContain('sending signal KILL');
    expect(Date.now() - since).toBeLessThan(10_000);
  });

  it('decides ownership only for names espm could have created (isCertname); any other name gets exactly what `espm enc` gives', async () => {
    // Which path answered shows in the output: the front's fallback (owned/.fallback, written
    // here apart from the classification file) is `/bin/echo front`, the one in the
    // classification file (run by `espm enc`) is the old ENC.
    const paths = join(dir, 'paths', 'classification.json');
    await mkdir(join(dir, 'paths'));
    await copyFile(classificationFile, paths);
    await writeOwnedNames(paths, [NODE], undefined, { argv: ['/bin/echo', 'front'], timeoutMs: 2000 });
    const espmEnc = (name: string) => run(ESPM, ['enc', '-f', paths, name]);
    const names = ['a', 'a1', 'web02.example.test', 'a-b_c.d', 'a..b', '.a', 'a.', '_a', 'a_', 'Web01.example.test', 'a b', 'a~b', 'a/b', '../enc', 'é.example', 'x'.repeat(253), 'x'.repeat(254)];
    let seed = 14;
    const alphabet = 'abcz09._-A/ ~';
    for (let i = 0; i < 12; i++) {
      let name = '';
      for (let j = 0; j < 1 + (i % 6); j++) name += alphabet[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % alphabet.length];
      names.push(name);
    }
    const results = await Promise.all(names.map((name) => run(FRONT, ['-f', paths, name])));
    for (const [i, name] of names.entries()) {
      if (isCertname(name)) {
        expect({ name, ...outcome(results[i]!) }).toEqual({ name, exitCode: 0, stdout: `front ${name}\n`, stderr: '' });
      } else {
        const viaEspm = outcome(await espmEnc(name));
        expect({ name, ...outcome(results[i]!) }).toEqual({ name, ...viaEspm });
        // `espm enc` refuses what cannot be a Puppet certname, and sends the rest to its fallback.
        expect({ name, exitCode: viaEspm.exitCode, old: viaEspm.stdout.startsWith('classes: {}\n# old ENC, for ') }).toEqual({ name, exitCode: isEncCertname(name) ? 0 : 2, old: isEncCertname(name) });
      }
    }
  });

  it.each([[[]], [['-f', 'relative', 'a.example.test']], [['a.example.test']], [['-q', 'a']]])(
    'refuses the command line %j with exit 2 and no answer',
    async (args) => {
      const result = await run(FRONT, args);
      expect(result.exitCode).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain('usage: espm-enc');
    },
  );

  it('after DELETE the name goes back to the fallback; the deleted node\'s file goes with the old generations', async () => {
    await enc.create({ name: 'gone.example.test', groups: [], classes: ['motd'], parameters: {} });
    expect((await front('gone.example.test')).stdout).toBe('---\nclasses:\n  motd: {}\nparameters: {}\n');
    expect(await enc.delete('gone.example.test', {})).toBe('deleted');
    expect(outcome(await front('gone.example.test'))).toEqual(outcome(await run(oldEnc, ['gone.example.test'])));
    expect((await readdir(owned())).sort()).toEqual(['.fallback', '.timeout', NODE]);
    // One more write: only the current generation and the one before it remain.
    await enc.create({ name: 'next.example.test', groups: [], classes: [], parameters: {} });
    const generations = (await readdir(join(dir, 'enc'))).filter((e) => e.startsWith('owned.'));
    expect(generations).toHaveLength(2);
    for (const g of generations) expect(await readdir(join(dir, 'enc', g))).not.toContain('gone.example.test');
    expect(JSON.parse(await readFile(classificationFile, 'utf8'))).toMatchObject({ nodes: { [NODE]: expect.anything(), 'next.example.test': expect.anything() } });
  });

  it('a SIGHUP that changes fallback_enc rewrites the generation: the front, `espm enc` and the create check use the new one', async () => {
    const file = join(dir, 'hup', 'classification.json');
    const classifier = new EncClassifier(classifierConfig('hup', { fallback_enc: oldEnc }), new ExecaCommandRunner());
    await classifier.start();
    expect((await run(FRONT, ['-f', file, 'n2.example.test'])).stdout).toBe('classes: {}\n# old ENC, for n2.example.test\n');
    const classifying = join(dir, 'classifying-enc');
    await writeFile(classifying, '#!/bin/sh\nprintf "classes:\\n  legacy: {}\\n"\n', { mode: 0o755 });
    await classifier.reload(classifierConfig('hup', { fallback_enc: `${classifying} --site`, timeout: '3' }));
    expect(outcome(await run(FRONT, ['-f', file, 'n2.example.test']))).toEqual({ exitCode: 0, stdout: 'classes:\n  legacy: {}\n', stderr: '' });
    expect(await readFile(join(dir, 'hup', 'owned', '.timeout'), 'utf8')).toBe('3\n');
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ fallback: [classifying, '--site'], fallback_timeout_ms: 3000 });
    await expect(classifier.create({ name: 'n2.example.test', groups: [], classes: [], parameters: {} })).rejects.toThrow(/classifies n2\.example\.test/);
    // fallback_enc removed: no .fallback, `classes: {}` again.
    await classifier.reload(classifierConfig('hup'));
    expect(await readdir(join(dir, 'hup', 'owned'))).toEqual([]);
    expect(outcome(await run(FRONT, ['-f', file, 'n2.example.test']))).toEqual({ exitCode: 0, stdout: '---\nclasses: {}\n', stderr: '' });
  });

  it('the owned set: only certnames by espm\'s rule become files (nothing outside it); a rewrite is never seen half done', async () => {
    const file = join(dir, 'set', 'classification.json');
    await mkdir(join(dir, 'set'));
    await writeOwnedNames(file, ['ok.example.test', '../escape', 'a/b', '..', 'Upper.example.test']);
    expect(await readdir(join(dir, 'set', 'owned'))).toEqual(['ok.example.test']);
    expect((await readdir(join(dir, 'set'))).filter((e) => !e.startsWith('owned'))).toEqual([]);
    await expect(stat(join(dir, 'escape'))).rejects.toMatchObject({ code: 'ENOENT' });
    // Lookups while the set is rewritten 20 times: the name that stays is always found.
    const others = Array.from({ length: 300 }, (_, i) => `n${i}.example.test`);
    let writing = true;
    const rewrites = (async () => {
      for (let i = 0; i < 20; i++) await writeOwnedNames(file, i % 2 === 0 ? ['ok.example.test', ...others] : ['ok.example.test']);
      writing = false;
    })();
    let lookups = 0;
    const missed: number[] = [];
    while (writing) {
      const found = await Promise.all(Array.from({ length: 8 }, () => stat(join(dir, 'set', 'owned', 'ok.example.test')).then(() => true, () => false)));
      for (const f of found) if (!f) missed.push(lookups);
      lookups += found.length;
    }
    await rewrites;
    expect({ lookups: lookups > 0, missed }).toEqual({ lookups: true, missed: [] });
    expect((await readdir(join(dir, 'set'))).filter((e) => e.startsWith('owned.') && !e.endsWith('.link'))).toHaveLength(2);
  });

  itWith('shellcheck (Debian package shellcheck)', SHELLCHECK_MISSING)('passes shellcheck', async () => {
    expect(await execa('shellcheck', [FRONT], { reject: false })).toMatchObject({ exitCode: 0, stdout: '' });
  });
});
