/**
 * The `enc` backend without a puppetserver (the real one is in the contract suite and
 * test/e2e/enc.test.ts): the groups file (parsing, refusals, SIGHUP keeping the old groups),
 * the ENC answers made from it, the classification file (atomic, 0640, no secret), and
 * `bin/espm enc` as puppetserver runs it — answers, fallback passed through byte for byte,
 * argument validation, never writing, loading only what it needs.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ClassifierError, NodeExistsError } from '../../src/classifier/classifier.js';
import { EncClassifier } from '../../src/classifier/enc.js';
import { ENC_FILE_FORMAT, type EncFile } from '../../src/classifier/enc-file.js';
import { GroupsFileError, parseGroups, renderNode } from '../../src/classifier/enc-groups.js';
import { parseConfig, type ClassifierConfig } from '../../src/config.js';
import { ExecaCommandRunner } from '../../src/exec/command.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ESPM = join(ROOT, 'bin', 'espm');

const GROUPS = `
webservers:
  classes:
    apache: {port: 8080}
    ntp: ~
  parameters: {tier: web, site: one}
base:
  classes: [ntp, motd]
empty:
`;

describe('the groups file', () => {
  it('accepts classes as a hash or a list, parameters, and an empty group', () => {
    const groups = parseGroups(GROUPS, '/g.yaml');
    expect([...groups.keys()]).toEqual(['webservers', 'base', 'empty']);
    expect(groups.get('webservers')).toEqual({ classes: { apache: { port: 8080 }, ntp: null }, parameters: { tier: 'web', site: 'one' } });
    expect(groups.get('base')).toEqual({ classes: { ntp: null, motd: null }, parameters: {} });
    expect(groups.get('empty')).toEqual({ classes: {}, parameters: {} });
    expect(parseGroups('', '/g.yaml').size).toBe(0);
  });

  it.each([
    ['webservers: [\n', /not valid YAML/],
    ['- a\n- b\n', /top level must be a mapping/],
    ['a: 1\n', /group "a": must be a mapping/],
    ['a: {classes: {Bad::Name: {}}}\n', /"Bad::Name" is not a Puppet class name/],
    ['a: {classes: {ok: 3}}\n', /class ok: its value must be a mapping/],
    ['a: {parameters: {"1x": y}}\n', /"1x" is not a parameter name/],
    ['a: {class: [x]}\n', /unknown key `class`/],
    ['a: {}\na: {}\n', /not valid YAML/],
    ['"a,b": {}\n', /not a valid group name/],
  ])('refuses %j naming the file and the problem', (text, message) => {
    expect(() => parseGroups(text, '/etc/espm/groups.yaml')).toThrow(GroupsFileError);
    expect(() => parseGroups(text, '/etc/espm/groups.yaml')).toThrow(message);
    expect(() => parseGroups(text, '/etc/espm/groups.yaml')).toThrow('/etc/espm/groups.yaml');
  });

  it('an ENC answer: groups\' classes then the node\'s, parameters groups-then-node, environment when set', () => {
    const groups = parseGroups(GROUPS, '/g.yaml');
    const node = { name: 'web01.example.test', groups: ['base', 'webservers'], classes: ['motd', 'role::web'], parameters: { site: 'two', motd_message: 'a: b, "c"' } };
    expect(renderNode(node, groups, 'production')).toBe(
      '---\nclasses:\n  ntp: {}\n  motd: {}\n  apache:\n    port: 8080\n  role::web: {}\nparameters:\n  tier: web\n  site: two\n  motd_message: \'a: b, "c"\'\nenvironment: production\n',
    );
    expect(renderNode({ ...node, groups: [], classes: [], parameters: {} }, groups, undefined)).toBe('---\nclasses: {}\nparameters: {}\n');
    expect(() => renderNode({ ...node, groups: ['gone'] }, groups, undefined)).toThrow(/group "gone" is not in the groups file/);
  });
});

describe('EncClassifier without a master', () => {
  let dir: string;
  let groupsFile: string;
  let classificationFile: string;
  const make = (changes: Record<string, string> = {}): EncClassifier => {
    const config = parseConfig(
      { server: { cert: '/c', key: '/k', psk: 'x'.repeat(48) }, classifier: { backend: 'enc', groups_file: groupsFile, classification_file: classificationFile, ...changes } },
      join(dir, 'espm.ini'),
    );
    return new EncClassifier(config.classifier as ClassifierConfig<'enc'>, new ExecaCommandRunner());
  };
  const file = async (): Promise<EncFile> => JSON.parse(await readFile(classificationFile, 'utf8')) as EncFile;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-enc-unit-'));
    groupsFile = join(dir, 'groups.yaml');
    classificationFile = join(dir, 'enc', 'classification.json');
    await writeFile(groupsFile, GROUPS);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('start() writes the classification file: 0640, no secret, `classes: {}` for others', async () => {
    const enc = make();
    expect(await enc.start()).toMatchObject({ console: expect.stringContaining(groupsFile) });
    expect((await stat(classificationFile)).mode & 0o777).toBe(0o640);
    expect(await file()).toMatchObject({ format: ENC_FILE_FORMAT, fallback: [], unowned: '---\nclasses: {}\n', nodes: {} });
    expect(await enc.listGroups()).toEqual(['base', 'empty', 'webservers']);
  });

  it('creates concurrently without losing one; refuses a name it holds; delete → absent after', async () => {
    const enc = make({ environment: 'production' });
    await enc.start();
    await Promise.all(
      ['a', 'b', 'c', 'd'].map((n) => enc.create({ name: `${n}.example.test`, groups: ['webservers'], classes: [], parameters: { n } })),
    );
    expect(Object.keys((await file()).nodes).sort()).toEqual(['a.example.test', 'b.example.test', 'c.example.test', 'd.example.test']);
    expect((await file()).nodes['a.example.test']!.yaml).toContain('environment: production\n');
    await expect(enc.create({ name: 'a.example.test', groups: [], classes: [], parameters: {} })).rejects.toBeInstanceOf(NodeExistsError);
    expect(await enc.delete('a.example.test', {})).toBe('deleted');
    expect(await enc.delete('a.example.test', {})).toBe('absent');
  });

  it('a broken groups file: a clear error at start-up, and on reload the previous groups and file are kept', async () => {
    await writeFile(groupsFile, 'webservers: [\n');
    await expect(make().start()).rejects.toMatchObject({ failure: 'failed', message: expect.stringContaining(`${groupsFile}: not valid YAML`) });

    await writeFile(groupsFile, GROUPS);
    const enc = make();
    await enc.start();
    await enc.create({ name: 'web01.example.test', groups: ['webservers'], classes: [], parameters: {} });
    const before = await readFile(classificationFile, 'utf8');
    await writeFile(groupsFile, 'webservers: {classes: {Nope: {}}}\n');
    const broken = await enc.reload().catch((e: unknown) => e);
    expect(broken).toBeInstanceOf(ClassifierError);
    expect((broken as Error).message).toMatch(/"Nope" is not a Puppet class name \(the previous groups are kept\)/);
    // A file that drops a group one of espm's nodes is in is refused too.
    await writeFile(groupsFile, 'base: {}\n');
    await expect(enc.reload()).rejects.toThrow(/node web01.example.test: its group "webservers" is not in the groups file/);
    expect(await enc.listGroups()).toEqual(['base', 'empty', 'webservers']);
    expect(await readFile(classificationFile, 'utf8')).toBe(before);
    // A good one takes effect: the node's answer is re-rendered.
    await writeFile(groupsFile, 'webservers: {classes: [ntp], parameters: {tier: front}}\n');
    await enc.reload();
    expect(await enc.listGroups()).toEqual(['webservers']);
    expect((await file()).nodes['web01.example.test']!.yaml).toBe('---\nclasses:\n  ntp: {}\nparameters:\n  tier: front\n');
  });

  it('a name the fallback ENC classifies is an existing node; one it fails on cannot be created', async () => {
    const fallback = join(dir, 'old-enc');
    await writeFile(fallback, '#!/bin/sh\ncase "$1" in legacy.example.test) echo "classes: [ntp]";; bad.example.test) exit 1;; *) echo "classes: {}";; esac\n', { mode: 0o755 });
    const enc = make({ fallback_enc: fallback });
    await enc.start();
    await expect(enc.create({ name: 'legacy.example.test', groups: [], classes: [], parameters: {} })).rejects.toBeInstanceOf(NodeExistsError);
    await expect(enc.create({ name: 'bad.example.test', groups: [], classes: [], parameters: {} })).rejects.toMatchObject({ failure: 'failed' });
    await enc.create({ name: 'new.example.test', groups: [], classes: [], parameters: {} });
    expect(Object.keys((await file()).nodes)).toEqual(['new.example.test']);
  });
});

describe('bin/espm enc, as puppetserver runs it', () => {
  let dir: string;
  let path: string;
  const fallbackScript = '#!/bin/sh\nprintf "classes:\\n  legacy: {}\\n# for %s\\n" "$1"\necho "old enc warns" >&2\n[ "$1" = fail.example.test ] && exit 7\nexit 0\n';
  const write = async (fallback: string[]): Promise<void> => {
    const file: EncFile = {
      format: ENC_FILE_FORMAT,
      written_at: new Date().toISOString(),
      fallback,
      fallback_timeout_ms: 2000,
      unowned: '---\nclasses: {}\n',
      nodes: { 'web01.example.test': { groups: [], classes: ['motd'], parameters: {}, yaml: '---\nclasses:\n  motd: {}\n' } },
    };
    await writeFile(path, JSON.stringify(file));
    await chmod(path, 0o440);
  };
  const enc = (...args: string[]) => execa(ESPM, ['enc', ...args], { reject: false, stripFinalNewline: false, env: { PATH: '/usr/bin:/bin' } });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-enc-cli-'));
    path = join(dir, 'classification.json');
    await writeFile(join(dir, 'old-enc'), fallbackScript, { mode: 0o755 });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('answers for its node; `classes: {}` for others without a fallback; never writes', async () => {
    await rm(path, { force: true });
    await write([]);
    const before = await stat(path);
    expect(await enc('-f', path, 'web01.example.test')).toMatchObject({ exitCode: 0, stdout: '---\nclasses:\n  motd: {}\n', stderr: '' });
    expect(await enc('-f', path, 'other.example.test')).toMatchObject({ exitCode: 0, stdout: '---\nclasses: {}\n' });
    expect(await enc('-f', path, '__proto__')).toMatchObject({ exitCode: 0, stdout: '---\nclasses: {}\n' });
    expect((await stat(path)).mtimeMs).toBe(before.mtimeMs);
  });

  it('passes the fallback\'s stdout, stderr and exit status through unchanged (an argv with its own arguments, no shell)', async () => {
    await rm(path, { force: true });
    await write([join(dir, 'old-enc')]);
    for (const name of ['other.example.test', 'fail.example.test', 'x;touch pwned']) {
      const direct = await execa(join(dir, 'old-enc'), [name], { reject: false, stripFinalNewline: false });
      const mine = await enc('-f', path, name);
      expect({ exitCode: mine.exitCode, stdout: mine.stdout, stderr: mine.stderr }).toEqual({ exitCode: direct.exitCode, stdout: direct.stdout, stderr: direct.stderr });
    }
    await expect(stat(join(process.cwd(), 'pwned'))).rejects.toMatchObject({ code: 'ENOENT' });
    await rm(path, { force: true });
    await write(['/bin/echo', '--from-setting']);
    expect(await enc('-f', path, 'n1.example.test')).toMatchObject({ exitCode: 0, stdout: '--from-setting n1.example.test\n' });
  });

  it('a fallback that hangs is killed at [classifier] timeout: exit 1 saying so, within that time', async () => {
    await rm(path, { force: true });
    await writeFile(join(dir, 'hung-enc'), '#!/bin/sh\nexec /bin/sleep 30\n');
    await chmod(join(dir, 'hung-enc'), 0o755);
    await write([join(dir, 'hung-enc')]);
    const since = Date.now();
    const result = await enc('-f', path, 'hang.example.test');
    expect(result).toMatchObject({ exitCode: 1, stdout: '' });
    expect(result.stderr).toContain('did not finish within 2 s and was killed');
    expect(Date.now() - since).toBeLessThan(10_000);
  });

  it.each([[[]], [['a.example.test', 'b.example.test']], [['-x']], [['Web01.example.test']], [['a/b']], [['-f']], [['-f', 'relative', 'a.example.test']]])(
    'refuses the command line %j with exit 2 and no answer',
    async (args) => {
      const result = await enc(...args);
      expect(result.exitCode).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^espm enc: .*\nusage: espm enc/);
    },
  );

  it('a missing or foreign classification file fails loudly (exit 1), never a made-up answer', async () => {
    const missing = await enc('-f', join(dir, 'nope.json'), 'web01.example.test');
    expect(missing).toMatchObject({ exitCode: 1, stdout: '' });
    expect(missing.stderr).toContain('cannot use the classification file');
    await writeFile(join(dir, 'other.json'), '{"format": 99}');
    expect(await enc('-f', join(dir, 'other.json'), 'web01.example.test')).toMatchObject({ exitCode: 1, stdout: '' });
  });

  it('-c reads [classifier] classification_file from espm.ini', async () => {
    await rm(path, { force: true });
    await write([]);
    await writeFile(join(dir, 'espm.ini'), `[classifier]\nbackend = enc\nclassification_file = ${path}\n`);
    expect(await enc('-c', join(dir, 'espm.ini'), 'web01.example.test')).toMatchObject({ exitCode: 0, stdout: '---\nclasses:\n  motd: {}\n' });
  });

  it('its module graph: node builtins and the classification-file reader only (no commander, zod, pino, express, yaml)', async () => {
    const seen = new Set<string>();
    const visit = async (file: string): Promise<void> => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = await readFile(file, 'utf8');
      for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = match[1] ?? match[2]!;
        if (spec.startsWith('.')) await visit(join(file, '..', spec));
        else seen.add(spec);
      }
    };
    await visit(join(ROOT, 'dist', 'cli', 'enc.js'));
    const packages = [...seen].filter((s) => !s.startsWith('/')).sort();
    expect(packages).toEqual(['ini', 'node:child_process', 'node:fs', 'node:path', 'node:util']);
    expect([...seen].filter((s) => s.startsWith('/')).map((f) => f.slice(ROOT.length)).sort()).toEqual(['dist/classifier/enc-file.js', 'dist/cli/enc.js', 'dist/exec/passthrough.js']);
  });
});
