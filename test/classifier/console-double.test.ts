/**
 * Fidelity of the PE console double (test/fixtures/console/) to
 * docs/reference/dashboard-rake.md, for every version knob: real `rake` runs the double's
 * Rakefile with cwd = a fresh temp dir (the double seeds its store there).
 */
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describeWith } from '../support/components.js';

const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/console/', import.meta.url));
const RAKEFILE = path.join(FIXTURE_DIR, 'Rakefile');
const EXTERNAL_NODE = path.join(FIXTURE_DIR, 'external_node');

/** The variables the console's tasks read from ENV: never inherited by a rake child. */
const TASK_ENV = ['name', 'groups', 'classes', 'class', 'group', 'match', 'parameters', 'variables'];

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const RAKE = findOnPath('rake');
const describeRake = describeWith('rake (Debian packages ruby rake)', RAKE === undefined ? 'no rake on PATH' : undefined);

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

interface RunOptions {
  /** Pass -s (default true). */
  silent?: boolean;
  /** Pass RAILS_ENV=production (default true). */
  railsEnv?: boolean;
  /** Extra variables in the child's environment (on top of the scrubbed one). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** The parent's environment without the task variables and RAILS_ENV. */
function scrubbedEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !TASK_ENV.includes(key) && key !== 'RAILS_ENV') env[key] = value;
  }
  return { ...env, ...extra };
}

async function rake(cwd: string, args: string[], options: RunOptions = {}): Promise<Run> {
  const argv = [
    ...(options.silent === false ? [] : ['-s']),
    '-f',
    RAKEFILE,
    ...(options.railsEnv === false ? [] : ['RAILS_ENV=production']),
    ...args,
  ];
  const result = await execa(RAKE ?? 'rake', argv, {
    cwd,
    env: scrubbedEnv(options.env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeoutMs ?? 20_000,
  });
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
}

async function externalNode(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const result = await execa(EXTERNAL_NODE, args, {
    env: scrubbedEnv(env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    timeout: 20_000,
  });
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
}

const tempDirs: string[] = [];

/** A fresh console directory (optionally with knobs.json). */
async function consoleDir(knobs?: Record<string, unknown>): Promise<string> {
  const dir = await realpath(await mkdtemp(path.join(tmpdir(), 'espm-console-double-')));
  tempDirs.push(dir);
  if (knobs) await writeFile(path.join(dir, 'knobs.json'), JSON.stringify(knobs));
  return dir;
}

async function setKnobs(dir: string, knobs: Record<string, unknown>): Promise<void> {
  await writeFile(path.join(dir, 'knobs.json'), JSON.stringify(knobs));
}

interface StoredNode {
  id: number;
  name: string;
  groups: string[];
  classes: string[];
  parameters: Array<[string, string]>;
}

interface StoredStore {
  nodes: StoredNode[];
  node_groups: Array<{ name: string; classes: string[]; parameters: Array<[string, string]> }>;
  node_classes: Array<{ id: number; name: string }>;
}

async function readStore(dir: string): Promise<StoredStore> {
  return JSON.parse(await readFile(path.join(dir, 'console.json'), 'utf8')) as StoredStore;
}

async function storedNode(dir: string, name: string): Promise<StoredNode | undefined> {
  return (await readStore(dir)).nodes.find((n) => n.name === name);
}

interface LogRecord {
  event: 'start' | 'end';
  pid: number;
  ts: number;
  tasks?: string[];
  args?: Record<string, string>;
  env?: Record<string, string | null>;
  inherited_env?: string[];
  version?: string | null;
  status?: number;
  error?: string;
  duration_ms?: number;
  start_ts?: number;
}

async function readLog(dir: string): Promise<LogRecord[]> {
  const text = await readFile(path.join(dir, 'invocations.log'), 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as LogRecord);
}

/** Exit 1 with exactly `message` on `stream` and nothing on the other one. */
function expectFailure(run: Run, stream: 'stdout' | 'stderr', message: string): void {
  expect(run.exitCode).toBe(1);
  const other = stream === 'stdout' ? 'stderr' : 'stdout';
  expect({ [stream]: run[stream], [other]: run[other] }).toEqual({ [stream]: `${message}\n`, [other]: '' });
}

function expectSuccess(run: Run, stdout: string): void {
  expect({ exitCode: run.exitCode, stdout: run.stdout, stderr: run.stderr }).toEqual({ exitCode: 0, stdout, stderr: '' });
}

/** rake's own abort: stderr starts with `rake aborted!`, exit 1. */
function expectAborted(run: Run, fragment: string): void {
  expect(run.exitCode).toBe(1);
  expect(run.stderr).toMatch(/^rake aborted!\n/);
  expect(run.stderr).toContain(fragment);
}

const SEED_GROUPS = ['default', 'legacy_web', 'mcollective', 'no mcollective', 'puppet_console', 'puppet_master', 'webservers'];
const SEED_CLASSES = ['apache', 'apache::vhost', 'motd', 'ntp', 'pe_accounts', 'pe_compliance', 'pe_mcollective'];
const SEED_NODES = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'];
const BASE_TASKS = [
  'node:add',
  'node:classes',
  'node:del',
  'node:groups',
  'node:list',
  'nodeclass:add',
  'nodeclass:list',
  'nodegroup:add',
  'nodegroup:list',
];
const HELPER_TASKS = ['node:addclass', 'node:addgroup', 'node:listclasses', 'node:listgroups'];

interface VersionSpec {
  version: string;
  /** What `rake -T` lists. */
  tasks: string[];
  /** Tasks a PE master of that version does not have. */
  missing: string[];
  /** Where error messages go. */
  errors: 'stdout' | 'stderr';
  /** node:del of an unknown node. */
  delMissing: (name: string) => string;
  /** node:del without name=. */
  delNoName: string;
  /** node:groups / node:classes of an unknown node. */
  editMissing: (name: string) => string;
  /** node:classes prints Rails 2.3's `p classes` line. */
  classesDebugLine: boolean;
}

const VERSIONS: VersionSpec[] = [
  {
    version: '1.2.6',
    tasks: BASE_TASKS,
    missing: ['node:parameters', ...HELPER_TASKS, 'node:variables'],
    errors: 'stdout',
    delMissing: () => 'Node does not exist!',
    delNoName: 'Must specify node name (name=<hostname>).',
    editMissing: () => "Node doesn't exist!",
    classesDebugLine: true,
  },
  {
    version: '1.2.10',
    tasks: [...BASE_TASKS, 'node:parameters'].sort(),
    missing: [...HELPER_TASKS, 'node:variables'],
    errors: 'stdout',
    delMissing: () => 'Node does not exist!',
    delNoName: 'Must specify node name (name=<hostname>).',
    editMissing: (name) => `Node ${name} doesn't exist!`,
    classesDebugLine: true,
  },
  {
    version: '1.2.23',
    tasks: [...BASE_TASKS, ...HELPER_TASKS, 'node:parameters'].sort(),
    missing: ['node:variables'],
    errors: 'stderr',
    delMissing: (name) => `Node ${name} doesn't exist!`,
    delNoName: "Node  doesn't exist!",
    editMissing: (name) => `Node ${name} doesn't exist!`,
    classesDebugLine: true,
  },
  {
    // node:parameters still runs (deprecated alias) but has no desc: -T does not list it.
    version: '2.0',
    tasks: [...BASE_TASKS, ...HELPER_TASKS, 'node:variables'].sort(),
    missing: [],
    errors: 'stderr',
    delMissing: (name) => `Node ${name} doesn't exist!`,
    delNoName: "Node  doesn't exist!",
    editMissing: (name) => `Node ${name} doesn't exist!`,
    classesDebugLine: false,
  },
];

/** `p classes` of the seeded motd and ntp classes. */
const MOTD_NTP_INSPECT =
  '[#<NodeClass id: 3, name: "motd", created_at: "2012-06-01 09:30:00", updated_at: "2012-06-01 09:30:00">, ' +
  '#<NodeClass id: 4, name: "ntp", created_at: "2012-06-01 09:30:00", updated_at: "2012-06-01 09:30:00">]';

afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describeRake.each(VERSIONS)('console double, Dashboard $version', (spec) => {
  const knobs = { version: spec.version };

  test.concurrent('rake -T lists exactly the tasks of the version; others are unknown to rake', async () => {
    const dir = await consoleDir(knobs);
    const [listing, filtered, ...missing] = await Promise.all([
      rake(dir, ['-T']),
      rake(dir, ['-T', 'nodegroup']),
      ...spec.missing.map((task) => rake(dir, [task, 'name=master.example.com'])),
    ]);
    expect(listing.exitCode).toBe(0);
    const tasks = listing.stdout
      .trimEnd()
      .split('\n')
      .map((line) => /^rake (\S+)\s+# \S/.exec(line)?.[1]);
    expect(tasks).toEqual(spec.tasks);
    expect(filtered.stdout).toMatch(/^rake nodegroup:add\s+# Add a new node group\nrake nodegroup:list\s+# List node groups\n$/);
    spec.missing.forEach((task, i) => {
      expectAborted(missing[i]!, `Don't know how to build task '${task}'`);
      expect(missing[i]!.stdout).toBe('');
    });
  });

  test.concurrent('list tasks: one name per line, groups/classes sorted, nodes in DB order, match=, nothing when empty', async () => {
    const dir = await consoleDir(knobs);
    const [groups, classes, nodes, matched, none, badRegex] = await Promise.all([
      rake(dir, ['nodegroup:list']),
      rake(dir, ['nodeclass:list']),
      rake(dir, ['node:list']),
      rake(dir, ['nodeclass:list', 'match=^apache']),
      rake(dir, ['nodegroup:list', 'match=^zzz']),
      rake(dir, ['node:list', 'match=(']),
    ]);
    expectSuccess(groups, `${SEED_GROUPS.join('\n')}\n`);
    expectSuccess(classes, `${SEED_CLASSES.join('\n')}\n`);
    expectSuccess(nodes, `${SEED_NODES.join('\n')}\n`);
    expectSuccess(matched, 'apache\napache::vhost\n');
    expectSuccess(none, '');
    expectAborted(badRegex, 'RegexpError');
  });

  test.concurrent('node:add: created, unknown groups/classes silently dropped, exists (case-insensitive, trailing space)', async () => {
    const dir = await consoleDir(knobs);
    expectSuccess(
      await rake(dir, ['node:add', 'name=web01.example.com', 'groups=default, nope,webservers', 'classes=ntp,no_such_class']),
      'Node successfully created!\n',
    );
    const node = await storedNode(dir, 'web01.example.com');
    expect(node?.groups).toEqual(['default', 'webservers']);
    expect(node?.classes).toEqual(['ntp']);
    expect(node?.parameters).toEqual([]);

    const [upper, spaced, seeded, noName, blank] = await Promise.all([
      rake(dir, ['node:add', 'name=WEB01.example.com']),
      rake(dir, ['node:add', 'name=web01.example.com  ']),
      rake(dir, ['node:add', 'name=master.example.com']),
      rake(dir, ['node:add', 'groups=default']),
      rake(dir, ['node:add', 'name=']),
    ]);
    expectFailure(upper, spec.errors, 'Node already exists!');
    expectFailure(spaced, spec.errors, 'Node already exists!');
    expectFailure(seeded, spec.errors, 'Node already exists!');
    expectFailure(noName, spec.errors, 'Must specify node name (name=<hostname>).');
    expectFailure(blank, spec.errors, "There was a problem saving the node: Validation failed: Name can't be blank");
    expect((await readStore(dir)).nodes.map((n) => n.name)).toEqual([...SEED_NODES, 'web01.example.com']);
    expectSuccess(await rake(dir, ['node:list', 'match=web01']), 'web01.example.com\n');
  });

  test.concurrent('node:del: prints nothing on success; unknown node message per version', async () => {
    const dir = await consoleDir(knobs);
    expectSuccess(await rake(dir, ['node:add', 'name=gone.example.com']), 'Node successfully created!\n');
    expectSuccess(await rake(dir, ['node:del', 'name=GONE.example.com']), '');
    expect(await storedNode(dir, 'gone.example.com')).toBeUndefined();
    expectFailure(await rake(dir, ['node:del', 'name=gone.example.com']), spec.errors, spec.delMissing('gone.example.com'));
    expectFailure(await rake(dir, ['node:del']), spec.errors, spec.delNoName);
  });

  test.concurrent('node:groups and node:classes replace; messages per version', async () => {
    const dir = await consoleDir(knobs);
    await rake(dir, ['node:add', 'name=app01.example.com', 'groups=mcollective', 'classes=apache']);
    const [groups, classes, missingNode, missingGroups, missingClasses] = await Promise.all([
      rake(dir, ['node:groups', 'name=app01.example.com', 'groups=default,nope']),
      rake(dir, ['node:classes', 'name=app01.example.com', 'classes=motd,zzz,ntp']),
      rake(dir, ['node:groups', 'name=nope.example.com', 'groups=default']),
      rake(dir, ['node:groups', 'name=app01.example.com']),
      rake(dir, ['node:classes', 'name=app01.example.com']),
    ]);
    expectSuccess(groups, 'Node groups successfully edited for app01.example.com!\n');
    expectSuccess(
      classes,
      `${spec.classesDebugLine ? `${MOTD_NTP_INSPECT}\n` : ''}Node classes successfully edited for app01.example.com!\n`,
    );
    expectFailure(missingNode, spec.errors, spec.editMissing('nope.example.com'));
    expectFailure(missingGroups, spec.errors, 'Must specify group(s) to set on node');
    expectFailure(missingClasses, spec.errors, 'Must specify class(es) to set on node.');
    const node = await storedNode(dir, 'app01.example.com');
    expect(node?.groups).toEqual(['default']);
    expect(node?.classes).toEqual(['motd', 'ntp']);
  });

  test.concurrent('nodeclass:add and nodegroup:add', async () => {
    const dir = await consoleDir(knobs);
    expectSuccess(await rake(dir, ['nodeclass:add', 'name=role::web']), 'Class successfully created!\n');
    expectSuccess(await rake(dir, ['nodegroup:add', 'name=web farm', 'classes=role::web,nope']), 'Group successfully created!\n');
    const [classExists, invalidClass, groupExists, classNoName, groupNoName] = await Promise.all([
      rake(dir, ['nodeclass:add', 'name=MOTD']),
      rake(dir, ['nodeclass:add', 'name=Bad-Class']),
      rake(dir, ['nodegroup:add', 'name=Web Farm']),
      rake(dir, ['nodeclass:add']),
      rake(dir, ['nodegroup:add']),
    ]);
    expectFailure(classExists, spec.errors, 'Class already exists!');
    expectSuccess(invalidClass, ''); // `if klass.save`: invalid name, nothing printed, exit 0
    expectFailure(groupExists, spec.errors, 'Group already exists!');
    expectFailure(classNoName, spec.errors, 'Must specify class name (name=<class>).');
    expectFailure(groupNoName, spec.errors, 'Must specify group name (name=<group>).');
    const store = await readStore(dir);
    expect(store.node_classes.map((c) => c.name)).not.toContain('Bad-Class');
    expect(store.node_groups.find((g) => g.name === 'web farm')?.classes).toEqual(['role::web']);
  });
});

describeRake('console double, version-specific parameters', () => {
  test.concurrent('1.2.6: no node:parameters task', async () => {
    const dir = await consoleDir({ version: '1.2.6' });
    await rake(dir, ['node:add', 'name=p.example.com']);
    const run = await rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=a=1']);
    expectAborted(run, "Don't know how to build task 'node:parameters'");
  });

  test.concurrent('1.2.10: messages on stdout, duplicate-row bug #13867, parse errors abort', async () => {
    const dir = await consoleDir({ version: '1.2.10' });
    await rake(dir, ['node:add', 'name=p.example.com']);
    expectSuccess(
      await rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=role=web,dsn=mysql://h/db?a=b']),
      'Node parameters successfully edited for p.example.com!\n',
    );
    expectSuccess(
      await rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=role=db']),
      'Node parameters successfully edited for p.example.com!\n',
    );
    expectSuccess(await rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=']), 'Node parameters successfully edited for p.example.com!\n');
    expect((await storedNode(dir, 'p.example.com'))?.parameters).toEqual([
      ['role', 'web'],
      ['dsn', 'mysql://h/db?a=b'],
      ['role', 'db'],
    ]);
    const [noParams, noName, unknown, emptyValue, emptyKey, noEquals, listgroups] = await Promise.all([
      rake(dir, ['node:parameters', 'name=p.example.com']),
      rake(dir, ['node:parameters', 'parameters=a=1']),
      rake(dir, ['node:parameters', 'name=nope.example.com', 'parameters=a=1']),
      rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=a=']),
      rake(dir, ['node:parameters', 'name=p.example.com', 'parameters==1']),
      rake(dir, ['node:parameters', 'name=p.example.com', 'parameters=a=1,b']),
      rake(dir, ['node:listgroups', 'name=p.example.com']),
    ]);
    expectFailure(noParams, 'stdout', 'Must specify node parameters (parameters=param1=val1,param2=val2)');
    expectFailure(noName, 'stdout', 'Must specify node name (name=<hostname>).');
    expectFailure(unknown, 'stdout', "Node nope.example.com doesn't exist!");
    expectAborted(emptyValue, 'Could not parse parameters a. Please check your format');
    expectAborted(emptyKey, "Perhaps you need to name a parameter before a '='");
    expectAborted(noEquals, "Could not parse parameter b given. Perhaps you're missing a '='");
    expectAborted(listgroups, "Don't know how to build task 'node:listgroups'");
    expect((await storedNode(dir, 'p.example.com'))?.parameters).toHaveLength(3);
  });

  test.concurrent('1.2.23: errors on stderr, bug fixed (duplicates collapsed), show mode, new node tasks', async () => {
    const dir = await consoleDir({ version: '1.2.23' });
    // The seeded web-legacy node carries a duplicate motd_message row from the bug.
    expectSuccess(
      await rake(dir, ['node:parameters', 'name=web-legacy.example.com']),
      'http_port=8081\nmotd_message=legacy box\nmotd_message=legacy web server\n',
    );
    expectSuccess(
      await rake(dir, ['node:parameters', 'name=web-legacy.example.com', 'parameters=MOTD_MESSAGE=new,extra=x=y']),
      'Node parameters successfully edited for web-legacy.example.com!\n',
    );
    expectSuccess(
      await rake(dir, ['node:parameters', 'name=web-legacy.example.com']),
      'http_port=8081\nmotd_message=new\nextra=x=y\n',
    );
    const [missing, addgroup, addclass, noGroup] = await Promise.all([
      rake(dir, ['node:parameters', 'name=nope.example.com', 'parameters=a=1']),
      rake(dir, ['node:addgroup', 'name=db01.example.com', 'group=webservers, nope,default']),
      rake(dir, ['node:addclass', 'name=master.example.com', 'class=ntp,nope']),
      rake(dir, ['node:addgroup', 'name=db01.example.com']),
    ]);
    expectFailure(missing, 'stderr', "Node nope.example.com doesn't exist!");
    expectSuccess(addgroup, 'Node groups successfully edited for db01.example.com!\n');
    expectSuccess(addclass, 'Node classes successfully edited for master.example.com!\n');
    expectFailure(noGroup, 'stderr', 'Must specify group(s) to add to node');
    const [groups, classes, unknownNode] = await Promise.all([
      rake(dir, ['node:listgroups', 'name=db01.example.com']),
      rake(dir, ['node:listclasses', 'name=master.example.com']),
      rake(dir, ['node:listclasses', 'name=nope.example.com']),
    ]);
    expectSuccess(groups, 'default\nmcollective\nwebservers\n');
    expectSuccess(classes, 'ntp\n');
    expectFailure(unknownNode, 'stderr', "Node nope.example.com doesn't exist!");
  });

  test.concurrent('2.0: node:variables with \\, escapes and node lists; node:parameters a deprecated alias', async () => {
    const dir = await consoleDir({ version: '2.0' });
    await rake(dir, ['node:add', 'name=v1.example.com']);
    await rake(dir, ['node:add', 'name=v2.example.com']);
    expectSuccess(
      await rake(dir, ['node:variables', 'name=v1.example.com,v2.example.com', 'variables=list=a\\,b,expr=x\\=1']),
      'Node variables successfully edited for v1.example.com!\nNode variables successfully edited for v2.example.com!\n',
    );
    expectSuccess(await rake(dir, ['node:variables', 'name=v2.example.com']), 'list=a,b\nexpr=x=1\n');

    const alias = await rake(dir, ['node:parameters', 'name=v1.example.com', 'parameters=list=c']);
    expect(alias).toEqual({
      exitCode: 0,
      stdout: 'Node variables successfully edited for v1.example.com!\n',
      stderr: 'node:parameters is deprecated, use node:variables instead\n',
    });
    expect((await storedNode(dir, 'v1.example.com'))?.parameters).toEqual([
      ['list', 'c'],
      ['expr', 'x=1'],
    ]);

    // One transaction: the missing second node rolls back the first (already reported).
    const partial = await rake(dir, ['node:variables', 'name=v1.example.com,nope.example.com', 'variables=list=d']);
    expect(partial).toEqual({
      exitCode: 1,
      stdout: 'Node variables successfully edited for v1.example.com!\n',
      stderr: "Node nope.example.com doesn't exist!\n",
    });
    expect((await storedNode(dir, 'v1.example.com'))?.parameters[0]).toEqual(['list', 'c']);
    const [noName, bad] = await Promise.all([
      rake(dir, ['node:variables', 'variables=a=1']),
      rake(dir, ['node:variables', 'name=v1.example.com', 'variables=a=']),
    ]);
    expectFailure(noName, 'stderr', 'Must specify node name (name=<hostname>).');
    expectAborted(bad, 'Could not parse variables a. Please check your format');
  });

  test.concurrent('1.2.7: node:classes typo bug always asks for a name', async () => {
    const dir = await consoleDir({ version: '1.2.7' });
    const run = await rake(dir, ['node:classes', 'name=master.example.com', 'classes=motd']);
    expectFailure(run, 'stdout', 'Must specify node name (name=<hostname>).');
  });
});

describeRake('console double, rake and process behaviour', () => {
  test.concurrent('(in <cwd>) is the first stdout line without -s, absent with -s', async () => {
    const dir = await consoleDir();
    const [loud, quiet, loudList] = await Promise.all([
      rake(dir, ['nodegroup:list', 'match=^default$'], { silent: false }),
      rake(dir, ['nodegroup:list', 'match=^default$']),
      rake(dir, ['-T', 'node:list'], { silent: false }),
    ]);
    expectSuccess(loud, `(in ${dir})\ndefault\n`);
    expectSuccess(quiet, 'default\n');
    expect(loudList.stdout).toMatch(new RegExp(`^\\(in ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)\\nrake node:list `));
  });

  test.concurrent('seeds a PE 2.5 console in the cwd; default is 1.2.10; RAILS_ENV is required', async () => {
    const dir = await consoleDir();
    const [noEnv, listing] = await Promise.all([
      rake(dir, ['node:list'], { railsEnv: false }),
      rake(dir, ['-T']),
    ]);
    expectAborted(noEnv, 'development database is not configured');
    expect(listing.stdout).toContain('rake node:parameters  # Edit/Add parameters for a node');
    expect(listing.stdout).not.toContain('node:listgroups');
    await rake(dir, ['node:list']);
    const store = await readStore(dir);
    expect(store.node_groups.map((g) => g.name)).toEqual(expect.arrayContaining(['default', 'no mcollective', 'puppet_master', 'mcollective']));
    const defaultGroup = store.node_groups.find((g) => g.name === 'default');
    expect(defaultGroup?.classes.length).toBeGreaterThan(0);
    expect(defaultGroup?.parameters.length).toBeGreaterThan(0);
    expect(store.nodes.map((n) => n.name)).toEqual(SEED_NODES);
  });

  test.concurrent('concurrent rake processes: every create lands, one name is created once', async () => {
    const dir = await consoleDir();
    const distinct = Array.from({ length: 8 }, (_, i) => rake(dir, ['node:add', `name=c${i}.example.com`]));
    const same = Array.from({ length: 4 }, () => rake(dir, ['node:add', 'name=same.example.com']));
    const results = await Promise.all([...distinct, ...same]);
    results.slice(0, 8).forEach((run) => expectSuccess(run, 'Node successfully created!\n'));
    const sameOut = results.slice(8).map((run) => run.stdout);
    expect(sameOut.filter((s) => s === 'Node successfully created!\n')).toHaveLength(1);
    expect(sameOut.filter((s) => s === 'Node already exists!\n')).toHaveLength(3);
    expect((await readStore(dir)).nodes).toHaveLength(SEED_NODES.length + 9);
  });

  test.concurrent('invocation log: start and end per process, args, ENV as seen, inherited task variables', async () => {
    const dir = await consoleDir();
    await rake(dir, ['node:add', 'name=log1.example.com', 'groups=default']);
    // A caller that forgot to scrub its environment: the task reads the inherited classes=.
    await rake(dir, ['node:add', 'name=leak.example.com'], { env: { classes: 'ntp', match: 'x' } });
    await rake(dir, ['node:del', 'name=nope.example.com']);
    const log = await readLog(dir);
    expect(log.map((r) => r.event)).toEqual(['start', 'end', 'start', 'end', 'start', 'end']);
    const [start1, end1, start2, , start3, end3] = log;
    expect(start1).toMatchObject({
      tasks: ['node:add'],
      args: { RAILS_ENV: 'production', name: 'log1.example.com', groups: 'default' },
      env: { name: 'log1.example.com', groups: 'default', classes: null, class: null, group: null, match: null, parameters: null, variables: null },
      inherited_env: [],
      version: '1.2.10',
    });
    expect(end1).toMatchObject({ pid: start1!.pid, status: 0, start_ts: start1!.ts });
    expect(end1!.ts).toBeGreaterThanOrEqual(start1!.ts);
    expect(start2).toMatchObject({ env: { classes: 'ntp', match: 'x' }, inherited_env: ['classes', 'match'] });
    expect((await storedNode(dir, 'leak.example.com'))?.classes).toEqual(['ntp']);
    expect(start3!.tasks).toEqual(['node:del']);
    expect(end3).toMatchObject({ pid: start3!.pid, status: 1 });
  });

  test.concurrent('a value with a newline is cut at it, as rake 0.8.7 does', async () => {
    const dir = await consoleDir();
    await rake(dir, ['node:add', 'name=nl.example.com']);
    await rake(dir, ['node:parameters', 'name=nl.example.com', 'parameters=a=1\nb=2']);
    expect((await storedNode(dir, 'nl.example.com'))?.parameters).toEqual([['a', '1']]);
  });
});

describeRake('console double, faults knob', () => {
  test.concurrent('exit/stdout/stderr replace a task without changing state; abort raises', async () => {
    const dir = await consoleDir({
      faults: {
        'node:parameters': { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock', stderr: 'warning: x' },
        'nodegroup:list': { abort: 'Mysql::Error: Lost connection to MySQL server during query' },
      },
    });
    await rake(dir, ['node:add', 'name=f.example.com']);
    const [params, groups, classes] = await Promise.all([
      rake(dir, ['node:parameters', 'name=f.example.com', 'parameters=a=1']),
      rake(dir, ['nodegroup:list']),
      rake(dir, ['nodeclass:list', 'match=^motd$']),
    ]);
    expect(params).toEqual({
      exitCode: 1,
      stdout: 'There was a problem saving the node: Mysql::Error: Deadlock\n',
      stderr: 'warning: x\n',
    });
    expect((await storedNode(dir, 'f.example.com'))?.parameters).toEqual([]);
    expectAborted(groups, 'rake aborted!\nMysql::Error: Lost connection to MySQL server during query\n');
    expectSuccess(classes, 'motd\n');
  });

  test.concurrent('sleep and boot_sleep delay the task; a killed task changes nothing and is logged', async () => {
    const dir = await consoleDir({ boot_sleep: 0.3, faults: { 'node:add': { sleep: 5 } } });
    const started = Date.now();
    const listed = await rake(dir, ['node:list', 'match=^db01']);
    expectSuccess(listed, 'db01.example.com\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);

    // Kill it (as a caller's timeout does) once it is inside the task's sleep.
    const slow = execa(RAKE ?? 'rake', ['-s', '-f', RAKEFILE, 'RAILS_ENV=production', 'node:add', 'name=slow.example.com'], {
      cwd: dir,
      env: scrubbedEnv(),
      extendEnv: false,
      reject: false,
    });
    const deadline = Date.now() + 10_000;
    while (!(await readLog(dir)).some((r) => r.event === 'start' && r.pid === slow.pid) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 600)); // inside boot_sleep or the fault's sleep
    slow.kill('SIGTERM');
    const killed = await slow;
    expect(killed.exitCode).toBe(1); // rake turns the SignalException into `rake aborted!`, exit 1
    expect(await storedNode(dir, 'slow.example.com')).toBeUndefined();
    expect((await readLog(dir)).find((r) => r.event === 'end' && r.pid === slow.pid)).toMatchObject({
      status: 1,
      error: 'SignalException: SIGTERM',
    });
  });

  test.concurrent('a fault on the environment task fails every task at boot', async () => {
    const dir = await consoleDir({ faults: { environment: { abort: "Mysql::Error: Can't connect to local MySQL server" } } });
    expectAborted(await rake(dir, ['node:list']), "Mysql::Error: Can't connect to local MySQL server");
  });

  test.concurrent('a bad knobs.json aborts with the double\'s own message', async () => {
    const dir = await consoleDir({ version: '3.0' });
    expectAborted(await rake(dir, ['node:list']), 'console double: unsupported version "3.0"');
    await setKnobs(dir, { versoin: '1.2.10' });
    expectAborted(await rake(dir, ['node:list']), 'console double: unknown knob(s) versoin');
  });
});

describeRake('console double as ENC (external_node)', () => {
  test.concurrent('node parameters override group parameters; classes from groups then the node', async () => {
    const dir = await consoleDir();
    await rake(dir, ['node:add', 'name=web01.example.com', 'groups=default,webservers', 'classes=ntp']);
    await rake(dir, ['node:parameters', 'name=web01.example.com', 'parameters=http_port=8080,role=web']);
    const run = await externalNode(['--dir', dir, 'web01.example.com']);
    expectSuccess(
      run,
      [
        '---',
        'name: web01.example.com',
        'classes:',
        '- motd',
        '- apache',
        '- ntp',
        'parameters:',
        '  motd_message: This node is managed by Puppet Enterprise',
        "  http_port: '8080'",
        '  role: web',
        '',
      ].join('\n'),
    );
  });

  test.concurrent('unknown node: empty classes, exit 0; CONSOLE_DOUBLE_DIR; conflicting groups: exit 1', async () => {
    const dir = await consoleDir();
    await rake(dir, ['node:add', 'name=both.example.com', 'groups=webservers,legacy_web']);
    const [unknown, conflict, resolved, usage] = await Promise.all([
      externalNode(['nope.example.com'], { CONSOLE_DOUBLE_DIR: dir }),
      externalNode(['--dir', dir, 'both.example.com']),
      externalNode(['--dir', dir, 'web-legacy.example.com']),
      externalNode(['x.example.com']),
    ]);
    expectSuccess(unknown, '---\nclasses: []\n');
    expect(conflict).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: 'Error: 500 Internal Server Error\nNode "both.example.com" has conflicting parameter(s): http_port\n',
    });
    // The seeded node sets http_port itself (no conflict) and its duplicate row's last value wins.
    expect(resolved.exitCode).toBe(0);
    expect(resolved.stdout).toContain("  http_port: '8081'\n");
    expect(resolved.stdout).toContain('  motd_message: legacy web server\n');
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toContain('usage: external_node');
  });
});
