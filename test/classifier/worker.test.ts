/**
 * The warm console worker (issue #9): byte-identical to rake processes for every task espm
 * uses (success, exists, missing, abort, faults) on every console version; crash and timeout
 * handling; no answer ever taken for another request's; restarts; the self-check; the frame
 * protocol; Ruby 1.8.7 compatibility of the worker program.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parseConfig, type Config } from '../../src/config.js';
import { ClassifierError } from '../../src/classifier/classifier.js';
import { ConsoleWorker, WorkerTaskError } from '../../src/classifier/console-worker.js';
import { ConsoleWorkerManager, type ConsoleWorkerSettings } from '../../src/classifier/console-worker-manager.js';
import { AnswerDecoder, encodeRequest, WorkerProtocolError } from '../../src/classifier/console-worker-protocol.js';
import { CONSOLE_WORKER_FILE, CONSOLE_WORKER_SOURCE } from '../../src/classifier/console-worker-source.js';
import { DashboardRakeClassifier } from '../../src/classifier/dashboard-rake.js';
import { describeDifference, type RakeOutput } from '../../src/classifier/dashboard-rake-tasks.js';
import { ExecaCommandRunner } from '../../src/exec/command.js';
import { ExecaWorkerSpawner, type WorkerProcess, type WorkerSpawner, type WorkerSpec } from '../../src/exec/worker.js';
import { ConsoleDouble, CONSOLE_RAKEFILE, CONSOLE_VERSIONS, findRake, type ConsoleKnobs, type Invocation } from '../support/console.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { describeWith } from '../support/components.js';
import { CountingRunner } from '../support/runner.js';

const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'no rake on PATH' : undefined);
const ruby = rake === undefined ? '/usr/bin/ruby' : join(dirname(rake), 'ruby');

const MINIMAL_INI = { server: { cert: '/c.pem', key: '/k.pem', psk: 'x'.repeat(48) } };

/** `[classifier]` of a config pointing at a console directory. */
function classifierConfig(cwd: string, extra: Record<string, string | number> = {}, rakefile = CONSOLE_RAKEFILE): Config['classifier'] {
  return parseConfig({ ...MINIMAL_INI, classifier: { rake: rake ?? '/usr/bin/rake', ruby, rakefile, cwd, ...extra } }, '/x.ini').classifier;
}

/** The worker program, written once for the direct ConsoleWorker tests. */
let scriptDir: string;
beforeAll(async () => {
  scriptDir = await mkdtemp(join(tmpdir(), 'espm-worker-script-'));
  await writeFile(join(scriptDir, CONSOLE_WORKER_FILE), CONSOLE_WORKER_SOURCE);
});
afterAll(() => rm(scriptDir, { recursive: true, force: true }));

function startWorker(cwd: string, rakefile = CONSOLE_RAKEFILE, spawner: WorkerSpawner = new ExecaWorkerSpawner()): Promise<ConsoleWorker> {
  return ConsoleWorker.start({
    ruby,
    script: join(scriptDir, CONSOLE_WORKER_FILE),
    rakefile,
    railsEnv: 'production',
    cwd,
    startTimeoutMs: 30_000,
    spawner,
  });
}

/** A task as espm sends it: name and `key=value` argv elements. */
type Case = readonly [label: string, task: string, args: readonly string[], knobs?: ConsoleKnobs];

/** Every task espm uses, with each outcome it must tell apart, for one console version. */
function casesFor(version: string): Case[] {
  const v2 = version === '2.0';
  const params = v2 ? 'node:variables' : 'node:parameters';
  const key = v2 ? 'variables' : 'parameters';
  const cases: Case[] = [
    ['groups', 'nodegroup:list', []],
    ['classes', 'nodeclass:list', []],
    ['groups matching', 'nodegroup:list', ['match=^(default|no )']],
    ['abort: invalid match', 'nodeclass:list', ['match=(']],
    ['create', 'node:add', ['name=w1.example.test', 'groups=default,no mcollective', 'classes=ntp,apache::vhost']],
    ['exists (espm-created)', 'node:add', ['name=w1.example.test']],
    ['exists (pre-existing, other case)', 'node:add', ['name=MASTER.example.com', 'groups=default']],
    ['no name', 'node:add', ['groups=default']],
    ['parameters', params, ['name=w1.example.test', `${key}=${v2 ? 'motd_message=hello\\, world,role=web' : 'motd_message=hello = world,role=web'}`]],
    ['abort: bad parameters', params, ['name=w1.example.test', `${key}=novalue`]],
    ['parameters of a missing node', params, ['name=nope.example.test', `${key}=a=1`]],
    ['missing task', v2 ? 'node:frobnicate' : 'node:variables', ['name=w1.example.test', 'variables=a=1']],
    ['fault: exit and message', 'node:add', ['name=f1.example.test'], { version, faults: { 'node:add': { exit: 1, stdout: 'There was a problem saving the node: Mysql::Error: Deadlock', stderr: 'warning: x' } } }],
    ['fault: abort', 'nodegroup:list', [], { version, faults: { 'nodegroup:list': { abort: 'Mysql::Error: Lost connection to MySQL server during query' } } }],
    ['after the faults', 'nodegroup:list', [], { version }],
    ['delete', 'node:del', ['name=w1.example.test']],
    ['delete: missing', 'node:del', ['name=w1.example.test']],
    ['delete: no name', 'node:del', []],
    ['lists after', 'node:list', []],
  ];
  return cases;
}

/** A task log line without what differs between processes (pid, times). */
function comparableTaskLine(line: Invocation): Partial<Invocation> {
  const { pid: _pid, ppid: _ppid, ts: _ts, start_ts: _start, duration_ms: _duration, ...rest } = line;
  return rest;
}

describeWithRake('console worker: byte-identical to rake processes', () => {
  it.each(CONSOLE_VERSIONS)('every task espm uses, success and failure, on puppet-dashboard %s', async (version) => {
    const processConsole = await ConsoleDouble.create({ version });
    const workerConsole = await ConsoleDouble.create({ version });
    await processConsole.store(); // seeded before the copy: both start from the same state
    await cp(join(processConsole.dir, 'console.json'), join(workerConsole.dir, 'console.json'));
    const classifier = new DashboardRakeClassifier(classifierConfig(processConsole.dir, { worker: 'off' }), new ExecaCommandRunner());
    const worker = await startWorker(workerConsole.dir);
    try {
      await processConsole.clearInvocations();
      await workerConsole.clearInvocations();
      const seen = new Set<string>();
      for (const [label, task, args, knobs] of casesFor(version)) {
        if (knobs !== undefined) {
          await processConsole.setKnobs(knobs);
          await workerConsole.setKnobs(knobs);
        }
        const asProcess = await classifier.rakeProcess(task, args);
        const inWorker = await worker.run(task, args, 30_000);
        expect([label, inWorker]).toEqual([label, asProcess]);
        expect(describeDifference(asProcess, inWorker)).toBeUndefined();
        seen.add(`${asProcess.exitCode === 0 ? 'ok' : 'failed'}:${asProcess.stderr.startsWith('rake aborted!') ? 'abort' : 'message'}`);
      }
      // Both outcomes of each kind occurred (the cases are not all successes).
      expect([...seen].sort()).toEqual(expect.arrayContaining(['failed:abort', 'failed:message', 'ok:message']));
      // The tasks saw the same arguments and ENV (nothing inherited, nothing left over from the
      // previous task in the worker) and ended the same way.
      const processTasks = (await processConsole.taskLog()).map(comparableTaskLine);
      const workerTasks = (await workerConsole.taskLog()).map(comparableTaskLine);
      expect(workerTasks).toEqual(processTasks);
      expect(new Set((await workerConsole.taskLog()).map((t) => t.pid)).size).toBe(1);
      expect(JSON.parse(await readFile(join(workerConsole.dir, 'console.json'), 'utf8')).nodes.map((n: { name: string }) => n.name)).toEqual(
        JSON.parse(await readFile(join(processConsole.dir, 'console.json'), 'utf8')).nodes.map((n: { name: string }) => n.name),
      );
    } finally {
      await worker.close();
      await processConsole.remove();
      await workerConsole.remove();
    }
  }, 90_000);

  it('plain Ruby tasks too: puts/print/warn, child processes, stdin, binary bytes, exit N, abort, ENV and $stdout left changed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-worker-rakefile-'));
    const rakefile = join(dir, 'Rakefile');
    await writeFile(
      rakefile,
      [
        "require 'stringio'",
        'task :environment do',
        '  $booted = ($booted || 0) + 1',
        'end',
        'task :greet => :environment do',
        "  puts \"hello #{ENV['name'].inspect} #{ENV['leak'].inspect} booted=#{$booted}\"",
        "  print 'no newline'",
        "  $stderr.puts 'to stderr'",
        "  warn 'a warning'",
        'end',
        'task :child => :environment do',
        "  system('echo', 'from a child')",
        "  system('sh', '-c', 'echo child stderr >&2')",
        'end',
        'task :stdin => :environment do',
        '  puts STDIN.read.inspect',
        'end',
        'task :binary => :environment do',
        '  STDOUT.write([0, 255, 254, 10, 200].pack("C*"))',
        'end',
        'task :exit3 => :environment do',
        "  puts 'leaving'",
        '  exit 3',
        'end',
        "task :abort_msg => :environment do",
        "  abort 'Aborting: no console'",
        'end',
        'task :boom => :environment do',
        "  raise ArgumentError, 'bad thing'",
        'end',
        'task :runtime => :environment do',
        "  raise 'plain runtime error'",
        'end',
        'task :dirty => :environment do',
        "  ENV['leak'] = 'from dirty'",
        '  $stdout = StringIO.new',
        "  puts 'swallowed'",
        'end',
        'task :nested => [:environment, :greet] do',
        "  puts 'nested done'",
        'end',
        'task :nodeps do',
        "  puts 'no environment'",
        'end',
        '',
      ].join('\n'),
    );
    const classifier = new DashboardRakeClassifier(classifierConfig(dir, { worker: 'off' }, rakefile), new ExecaCommandRunner());
    const worker = await startWorker(dir, rakefile);
    try {
      const cases: Array<[string, string[]]> = [
        ['greet', ['name=web 01=x']],
        ['child', []],
        ['stdin', []],
        ['binary', []],
        ['exit3', []],
        ['abort_msg', []],
        ['boom', []],
        ['runtime', []],
        ['dirty', []],
        ['greet', []],
        ['nested', ['name=n']],
        ['greet', []],
        ['nodeps', []],
        ['missing', []],
        ['greet[a,b]', []],
      ];
      for (const [task, args] of cases) {
        const asProcess = await classifier.rakeProcess(task, args);
        const inWorker = await worker.run(task, args, 30_000);
        expect([task, args, inWorker]).toEqual([task, args, asProcess]);
      }
      // The environment task ran once in the worker (booted=1 every time), once per process.
      expect((await worker.run('greet', [], 30_000)).stdout).toContain('booted=1');
      expect(worker.tasks).toBe(cases.length + 1);
    } finally {
      await worker.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describeWithRake('console worker: failures', () => {
  let console: ConsoleDouble;
  beforeEach(async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
  });
  afterEach(() => console.remove());

  it('a worker killed mid-task fails that exchange as crashed after started; it is dead afterwards', async () => {
    await console.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 5 } } });
    const worker = await startWorker(console.dir);
    const running = worker.run('node:add', ['name=k.example.test'], 30_000);
    await waitFor(async () => (await console.tasksRun()).includes('node:add'));
    process.kill(worker.pid!, 'SIGKILL');
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerTaskError);
    expect(err).toMatchObject({ kind: 'crashed', started: true });
    expect(worker.alive).toBe(false);
    await expect(worker.run('nodegroup:list', [], 5000)).rejects.toMatchObject({ kind: 'crashed', started: false });
  });

  it('a task past its deadline: the worker is killed (SIGTERM) and the exchange fails as timeout', async () => {
    await console.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 10 } } });
    const worker = await startWorker(console.dir);
    const started = Date.now();
    await expect(worker.run('node:add', ['name=t.example.test'], 500)).rejects.toMatchObject({ kind: 'timeout', started: true });
    expect(Date.now() - started).toBeLessThan(3000);
    await worker.exited;
    expect(worker.alive).toBe(false);
    expect(await console.node('t.example.test')).toBeUndefined();
  });

  it('a console whose boot fails: the worker does not start, and the adapter answers as a process would', async () => {
    await console.setKnobs({ version: '1.2.10', faults: { environment: { abort: "Mysql::Error: Can't connect to local MySQL server" } } });
    await expect(startWorker(console.dir)).rejects.toMatchObject({ reason: 'boot', output: expect.stringContaining("Can't connect to local MySQL server") });
    const stateDir = await mkdtemp(join(tmpdir(), 'espm-worker-state-'));
    try {
      const runner = new CountingRunner();
      const classifier = new DashboardRakeClassifier(classifierConfig(console.dir), runner, { stateDir });
      expect(await classifier.warmUpWorker()).toMatchObject({ worker: 'unavailable', worker_reason: expect.stringContaining('boot exited 1') });
      await expect(classifier.listGroups()).rejects.toMatchObject({ failure: 'failed', output: expect.stringContaining("Can't connect to local MySQL server") });
      expect(runner.count).toBe(2); // the self-check's process run, then the list as a process
      await classifier.close();
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('no Ruby: the worker is unavailable and every call runs a process', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'espm-worker-state-'));
    try {
      const runner = new CountingRunner();
      const classifier = new DashboardRakeClassifier(classifierConfig(console.dir, { ruby: '/nonexistent/bin/ruby' }), runner, { stateDir });
      expect(await classifier.warmUpWorker()).toMatchObject({ worker: 'unavailable', worker_reason: expect.stringContaining('/nonexistent/bin/ruby') });
      expect(await classifier.listClasses()).toEqual(expect.arrayContaining(['motd', 'ntp']));
      expect(await console.processesRun()).toEqual(['nodegroup:list', 'nodeclass:list']);
      await classifier.close();
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('the self-check disables a worker that answers differently from a process; calls then run processes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-worker-rakefile-'));
    const rakefile = join(dir, 'Rakefile');
    // A console whose list depends on the process (a worker would answer stale data).
    await writeFile(rakefile, "task :environment\nnamespace :nodegroup do\n  desc 'List'\n  task :list => :environment do\n    puts \"pid-#{Process.pid}\"\n  end\nend\n");
    try {
      const runner = new CountingRunner();
      const classifier = new DashboardRakeClassifier(classifierConfig(dir, {}, rakefile), runner, { stateDir: dir });
      expect(await classifier.warmUpWorker()).toMatchObject({ worker: 'disabled', worker_reason: expect.stringMatching(/self-check: rake nodegroup:list answered differently .*stdout differs at line 1/) });
      const before = runner.count;
      const groups = await classifier.listGroups();
      expect(groups).toEqual([expect.stringMatching(/^pid-\d+$/)]);
      expect(runner.count).toBe(before + 1);
      expect(classifier.workerStatus()).toMatchObject({ state: 'disabled' });
      await classifier.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeWithRake('console worker manager: restarts and answers', () => {
  let console: ConsoleDouble;
  let stateDir: string;
  let managers: ConsoleWorkerManager[];
  beforeEach(async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
    stateDir = await mkdtemp(join(tmpdir(), 'espm-worker-state-'));
    managers = [];
  });
  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
    await console.remove();
    await rm(stateDir, { recursive: true, force: true });
  });

  function manager(settings: Partial<ConsoleWorkerSettings> = {}, runner = new CountingRunner()): ConsoleWorkerManager {
    const classifier = new DashboardRakeClassifier(classifierConfig(console.dir, { worker: 'off' }), runner);
    const m = new ConsoleWorkerManager({
      settings: {
        ruby,
        rakefile: CONSOLE_RAKEFILE,
        railsEnv: 'production',
        cwd: console.dir,
        timeoutMs: 10_000,
        maxTasks: 1000,
        maxAgeMs: 3_600_000,
        idleRefreshMs: 600_000,
        ...settings,
      },
      scriptDir: stateDir,
      spawner: new ExecaWorkerSpawner(),
      runProcess: (task, args) => classifier.rakeProcess(task, args),
    });
    managers.push(m);
    return m;
  }

  const pidsOf = async (task: string): Promise<number[]> =>
    (await console.taskLog()).filter((t) => t.event === 'task' && t.task === task).map((t) => t.pid);

  it('concurrent calls are queued, one task at a time, and every answer is its own', async () => {
    const m = manager();
    expect(await m.warmUp()).toMatchObject({ state: 'ready' });
    await console.clearInvocations();
    const calls: Array<{ task: string; args: string[]; expect: (out: RakeOutput) => void }> = [];
    for (let i = 0; i < 12; i += 1) {
      const name = `q${i}.example.test`;
      calls.push({ task: 'node:add', args: [`name=${name}`], expect: (o) => expect([name, o.stdout]).toEqual([name, 'Node successfully created!\n']) });
      calls.push({ task: 'node:list', args: [`match=^${name.replace(/\./g, '\\.')}$`], expect: (o) => expect([name, o.exitCode]).toEqual([name, 0]) });
    }
    for (const seed of ['master.example.com', 'db01.example.com', 'web-legacy.example.com']) {
      calls.push({ task: 'node:list', args: [`match=^${seed}$`], expect: (o) => expect(o.stdout).toBe(`${seed}\n`) });
      calls.push({ task: 'node:del', args: [`name=nope-${seed}`], expect: (o) => expect([seed, o.exitCode, o.stdout]).toEqual([seed, 1, 'Node does not exist!\n']) });
    }
    const answers = await Promise.all(calls.map((c) => m.run(c.task, c.args, c.task.includes('list'))));
    answers.forEach((answer, i) => calls[i]!.expect(answer));
    // One at a time: no two tasks overlapped in the worker.
    const log = await console.taskLog();
    let open = 0;
    for (const line of log) {
      open += line.event === 'task' ? 1 : -1;
      expect(open).toBeLessThanOrEqual(1);
    }
    expect(new Set(log.map((l) => l.pid)).size).toBe(1);
    expect(await console.processesRun()).toEqual([]);
  }, 60_000);

  it('a worker killed while tasks are queued: the running task fails or falls back, the queued ones get their own answers from a fresh worker', async () => {
    const m = manager();
    await m.warmUp();
    await console.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 2 } } });
    const slow = m.run('node:add', ['name=slow.example.test'], false);
    const queued = ['master.example.com', 'db01.example.com', 'nope.example.test'].map((n) => m.run('node:list', [`match=^${n}$`], true));
    await waitFor(async () => (await console.tasksRun()).includes('node:add'));
    const killed = m.status().pid!;
    process.kill(killed, 'SIGKILL');
    const err = await slow.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClassifierError);
    expect(err).toMatchObject({ failure: 'interrupted' });
    expect((await Promise.all(queued)).map((o) => o.stdout)).toEqual(['master.example.com\n', 'db01.example.com\n', '']);
    const listPids = await pidsOf('node:list');
    expect(listPids).toHaveLength(3);
    expect(listPids.every((pid) => pid !== killed)).toBe(true);
    expect(m.status()).toMatchObject({ state: 'ready' });
    expect(m.status().pid).not.toBe(killed);
  }, 60_000);

  it('a read-only task whose worker dies mid-task is answered by a process', async () => {
    const m = manager();
    await m.warmUp();
    await console.setKnobs({ version: '1.2.10', faults: { 'nodeclass:list': { sleep: 1 } } });
    const listing = m.run('nodeclass:list', [], true);
    await waitFor(async () => (await console.tasksRun()).includes('nodeclass:list'));
    process.kill(m.status().pid!, 'SIGKILL');
    const out = await listing;
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain('apache::vhost\n');
    expect(await console.processesRun()).toContain('nodeclass:list');
  }, 30_000);

  it('after maxTasks a replacement boots in the background and takes over; answers stay right', async () => {
    const m = manager({ maxTasks: 3 });
    await m.warmUp();
    const first = m.status().pid;
    const outputs: string[] = [];
    for (let i = 0; i < 8; i += 1) {
      outputs.push((await m.run('node:add', [`name=r${i}.example.test`], false)).stdout);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(outputs).toEqual(Array(8).fill('Node successfully created!\n'));
    const pids = await pidsOf('node:add');
    expect(new Set(pids).size).toBeGreaterThanOrEqual(2);
    expect(pids[0]).toBe(first);
    expect(await console.processesRun()).not.toContain('node:add');
  }, 60_000);

  it('after maxAge the worker is replaced in the background', async () => {
    let clock = Date.now();
    const runner = new CountingRunner();
    const classifier = new DashboardRakeClassifier(classifierConfig(console.dir, { worker: 'off' }), runner);
    const m = new ConsoleWorkerManager({
      settings: { ruby, rakefile: CONSOLE_RAKEFILE, railsEnv: 'production', cwd: console.dir, timeoutMs: 10_000, maxTasks: 1000, maxAgeMs: 60_000, idleRefreshMs: 600_000 },
      scriptDir: stateDir,
      spawner: new ExecaWorkerSpawner(),
      runProcess: (task, args) => classifier.rakeProcess(task, args),
      now: () => clock,
    });
    managers.push(m);
    await m.warmUp();
    await console.clearInvocations();
    const first = m.status().pid;
    clock += 61_000;
    await m.run('nodegroup:list', [], true); // served by the old one, triggers the replacement
    await waitFor(async () => m.status().pid !== first);
    await m.run('nodegroup:list', [], true);
    expect(new Set(await pidsOf('nodegroup:list')).size).toBe(2);
  }, 30_000);

  it('idle long enough to have lost the database: a console without ActiveRecord gets a fresh worker before the task', async () => {
    const m = manager({ idleRefreshMs: 300 });
    await m.warmUp();
    const first = m.status().pid;
    await new Promise((r) => setTimeout(r, 400));
    expect((await m.run('nodegroup:list', [], true)).exitCode).toBe(0);
    const pids = await pidsOf('nodegroup:list');
    expect(pids[pids.length - 1]).not.toBe(first);
  }, 30_000);

  it('idle with ActiveRecord: its connections are refreshed in place, no restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-worker-rakefile-'));
    const rakefile = join(dir, 'Rakefile');
    await writeFile(
      rakefile,
      [
        'module ActiveRecord',
        '  class Base',
        '    def self.clear_all_connections!; $cleared = ($cleared || 0) + 1; end',
        '    def self.connection; $connected = ($connected || 0) + 1; end',
        '  end',
        'end',
        'task :environment',
        'namespace :nodegroup do',
        "  desc 'List'",
        '  task :list => :environment do',
        '    puts "cleared=#{$cleared.inspect} pid=#{Process.pid > 0}"',
        '  end',
        'end',
        '',
      ].join('\n'),
    );
    try {
      const classifier = new DashboardRakeClassifier(classifierConfig(dir, { worker: 'off' }, rakefile), new CountingRunner());
      const m = new ConsoleWorkerManager({
        settings: { ruby, rakefile, railsEnv: 'production', cwd: dir, timeoutMs: 10_000, maxTasks: 1000, maxAgeMs: 3_600_000, idleRefreshMs: 300 },
        scriptDir: dir,
        spawner: new ExecaWorkerSpawner(),
        runProcess: (task, args) => classifier.rakeProcess(task, args),
      });
      managers.push(m);
      expect(await m.warmUp()).toMatchObject({ state: 'ready' });
      const first = m.status().pid;
      await new Promise((r) => setTimeout(r, 400));
      expect((await m.run('nodegroup:list', [], true)).stdout).toBe('cleared=1 pid=true\n');
      expect(m.status().pid).toBe(first);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describeWithRake('console worker over HTTPS', () => {
  let console: ConsoleDouble;
  let espm: RunningEspm;
  beforeEach(async () => {
    console = await ConsoleDouble.create({ version: '1.2.10' });
  });
  afterEach(async () => {
    await espm.stop();
    await console.remove();
  });

  it('a worker killed mid node:add → 502 (outcome unknown: the name is uncertain); the next request is served by a fresh worker', async () => {
    espm = await startEspm({ classifier: console.classifierConfig(rake!, 'worker') });
    await waitFor(async () => espm.logs.text().includes('console found'));
    expect(espm.logs.text()).toContain('"worker":"ready"');
    await console.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 3 } } });
    await console.clearInvocations();
    const pending = apiClient(espm).post('/v1/nodes', { name: 'killed.example.test' }).then((r) => r);
    await waitFor(async () => (await console.tasksRun()).includes('node:add'));
    const killed = (await console.taskLog()).find((t) => t.task === 'node:add')!.pid;
    process.kill(killed, 'SIGKILL');
    const res = await pending;
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ code: 'backend_failed', detail: expect.stringContaining('whether it took effect is unknown') });
    expect((await apiClient(espm).delete('/v1/nodes/killed.example.test')).body.code).toBe('ownership_uncertain');

    await console.setKnobs({ version: '1.2.10' });
    const next = await apiClient(espm).post('/v1/nodes', { name: 'next.example.test', parameters: { role: 'web' } });
    expect(next.status).toBe(201);
    expect(next.body.name).toBe('next.example.test');
    const nextTasks = (await console.taskLog()).filter((t) => t.event === 'task' && t.args?.['name'] === 'next.example.test');
    expect(nextTasks.map((t) => t.task)).toEqual(['node:add', 'node:parameters']);
    expect(nextTasks.every((t) => t.pid !== killed)).toBe(true);
    expect(await console.processesRun()).not.toContain('node:add');
  }, 30_000);

  it('a timed-out task → 504, its worker killed; the next request is served by a fresh worker', async () => {
    await console.setKnobs({ version: '1.2.10', faults: { 'node:add': { sleep: 5 } } });
    espm = await startEspm({ classifier: { ...console.classifierConfig(rake!, 'worker'), timeout: 1 } });
    await waitFor(async () => espm.logs.text().includes('console found'));
    const res = await apiClient(espm).post('/v1/nodes', { name: 'slow.example.test' });
    expect(res.status).toBe(504);
    expect(res.body.detail).toContain('the console worker running it was killed');
    const killed = (await console.taskLog()).find((t) => t.task === 'node:add')!.pid;
    await waitFor(async () => !isAlive(killed));
    await console.setKnobs({ version: '1.2.10' });
    const next = await apiClient(espm).post('/v1/nodes', { name: 'after.example.test' });
    expect(next.status).toBe(201);
    const after = (await console.taskLog()).find((t) => t.event === 'task' && t.args?.['name'] === 'after.example.test')!;
    expect(after.pid).not.toBe(killed);
  }, 30_000);

  it('a burst of mixed concurrent requests: every answer is its own request\'s', async () => {
    espm = await startEspm({ classifier: console.classifierConfig(rake!, 'worker') });
    const api = apiClient(espm);
    const names = Array.from({ length: 20 }, (_, i) => `burst${i}.example.test`);
    const requests = [
      ...names.map((name, i) => ({ kind: 'create', name, run: () => api.post('/v1/nodes', { name, groups: ['default'], parameters: { slot: String(i) } }) })),
      ...['master.example.com', 'db01.example.com'].map((name) => ({ kind: 'exists', name, run: () => api.post('/v1/nodes', { name }) })),
      { kind: 'groups', name: '', run: () => api.get('/v1/groups?refresh=true') },
      { kind: 'classes', name: '', run: () => api.get('/v1/classes?refresh=true') },
    ];
    const answers = await Promise.all(requests.map((r) => r.run()));
    answers.forEach((res, i) => {
      const request = requests[i]!;
      if (request.kind === 'create') {
        expect([request.name, res.status, res.body.name, res.body.parameters]).toEqual([request.name, 201, request.name, { slot: String(names.indexOf(request.name)) }]);
      } else if (request.kind === 'exists') {
        expect([request.name, res.status, res.body.detail]).toEqual([request.name, 409, expect.stringContaining('Node already exists!')]);
      } else if (request.kind === 'groups') {
        expect(res.body.groups).toEqual(expect.arrayContaining(['default', 'no mcollective']));
      } else {
        expect(res.body.classes).toEqual(expect.arrayContaining(['motd', 'apache::vhost']));
      }
    });
    for (const [i, name] of names.entries()) {
      expect(await console.node(name)).toMatchObject({ groups: ['default'], parameters: [['slot', String(i)]] });
    }
    const deletes = await Promise.all(names.map((name) => api.delete(`/v1/nodes/${name}`)));
    expect(deletes.map((d) => d.status)).toEqual(Array(names.length).fill(204));
    expect(await console.processesRun()).not.toEqual(expect.arrayContaining(['node:add']));
  }, 60_000);
});

describe('console worker protocol', () => {
  it('encodes requests with byte lengths (any byte may appear in a field)', () => {
    expect(encodeRequest('task', 7, ['node:add', 'name=ü x', '']).toString('utf8')).toBe('@espm task 7 3\n8\nnode:add\n9\nname=ü x\n0\n\n');
    expect(encodeRequest('quit', 9).toString()).toBe('@espm quit 9 0\n');
  });

  it('decodes answers however the bytes are split', () => {
    const bytes = Buffer.concat([
      Buffer.from('@espm ready 0 0 0 0\n\n@espm started 1 0 0 0\n\n'),
      Buffer.from('@espm done 1 1 5 4\n'),
      Buffer.from([0x61, 0x0a, 0xff, 0x0a, 0x0a]),
      Buffer.from('x\ny\n\n'),
    ]);
    for (const size of [1, 2, 3, 7, bytes.length]) {
      const decoder = new AnswerDecoder();
      const frames = [];
      for (let at = 0; at < bytes.length; at += size) frames.push(...decoder.push(bytes.subarray(at, at + size)));
      expect(frames.map((f) => [f.kind, f.id, f.code, f.stdout.toString('latin1'), f.stderr.toString('latin1')])).toEqual([
        ['ready', 0, 0, '', ''],
        ['started', 1, 0, '', ''],
        ['done', 1, 1, 'a\n\xff\n\n', 'x\ny\n'],
      ]);
    }
  });

  it.each([
    ['junk before a header', 'hello\n'],
    ['a header without its terminator', '@espm done 1 0 1 0\nxy'],
    ['an unknown kind', '@espm finished 1 0 0 0\n\n'],
    ['a header that never ends', 'x'.repeat(200)],
  ])('refuses %s', (_what, text) => {
    expect(() => new AnswerDecoder().push(Buffer.from(text))).toThrow(WorkerProtocolError);
  });

  it('an answer for another request id kills the worker: never taken as this request\'s answer', async () => {
    const fake = new FakeSpawner();
    const starting = ConsoleWorker.start({ ruby: '/r', script: '/s', rakefile: '/R', railsEnv: 'production', cwd: '/', startTimeoutMs: 1000, spawner: fake });
    fake.last!.answer('@espm ready 0 0 0 0\n\n');
    const worker = await starting;
    const first = worker.run('nodegroup:list', [], 1000);
    expect(fake.last!.sent()).toBe('@espm task 1 1\n14\nnodegroup:list\n');
    fake.last!.answer('@espm started 1 0 0 0\n\n@espm done 2 0 3 0\nxx\n\n');
    await expect(first).rejects.toMatchObject({ kind: 'protocol', started: true });
    expect(fake.last!.killed).toBe(true);
    expect(worker.alive).toBe(false);
  });

  it('an answer while idle kills the worker; a request then never reaches it', async () => {
    const fake = new FakeSpawner();
    const starting = ConsoleWorker.start({ ruby: '/r', script: '/s', rakefile: '/R', railsEnv: 'production', cwd: '/', startTimeoutMs: 1000, spawner: fake });
    fake.last!.answer('@espm ready 0 0 0 0\n\n');
    const worker = await starting;
    fake.last!.answer('@espm done 1 0 0 0\n\n');
    expect(fake.last!.killed).toBe(true);
    await expect(worker.run('node:add', ['name=a'], 1000)).rejects.toMatchObject({ kind: 'crashed', started: false });
    expect(fake.last!.sent()).toBe('');
  });

  it('a request sent but never acknowledged is known not to have started', async () => {
    const fake = new FakeSpawner();
    const starting = ConsoleWorker.start({ ruby: '/r', script: '/s', rakefile: '/R', railsEnv: 'production', cwd: '/', startTimeoutMs: 1000, spawner: fake });
    fake.last!.answer('@espm ready 0 0 0 0\n\n');
    const worker = await starting;
    const run = worker.run('node:add', ['name=a'], 1000);
    fake.last!.exit(1);
    await expect(run).rejects.toMatchObject({ kind: 'crashed', started: false });
  });

  it('describeDifference names the first difference', () => {
    expect(describeDifference({ exitCode: 0, stdout: 'a\nb\n', stderr: '' }, { exitCode: 0, stdout: 'a\nb\n', stderr: '' })).toBeUndefined();
    expect(describeDifference({ exitCode: 0, stdout: '', stderr: '' }, { exitCode: 1, stdout: '', stderr: '' })).toMatch(/exit status 0 .* 1/);
    expect(describeDifference({ exitCode: 0, stdout: 'a\nb\n', stderr: '' }, { exitCode: 0, stdout: 'a\nc\n', stderr: '' })).toMatch(/^stdout differs at line 2/);
  });
});

describe('console worker program: Ruby 1.8.7', () => {
  /** The program's code lines, comments and string literals removed. */
  const code = CONSOLE_WORKER_SOURCE.split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .map((line) => line.replace(/'(?:[^'\\]|\\.)*'/g, "''").replace(/"(?:[^"\\]|\\.)*"/g, '""'))
    .join('\n');

  it.each([
    ['stabby lambdas', /->/],
    ['safe navigation', /&\./],
    ['key: hash literals or keyword arguments', /[\w)]:\s/],
    ['require_relative', /require_relative/],
    ['each_with_object (1.9)', /each_with_object/],
    ['to_h (2.0/2.1)', /\.to_h\b/],
    ['__dir__ (2.0)', /__dir__/],
    ['%i literals (2.0)', /%i[[(]/],
    ['squiggly heredocs (2.3)', /<<~/],
    ['positive?/negative?/match? (2.3/2.4)', /\.(positive|negative|match)\?/],
    ['File.write (1.9.3)', /File\.write/],
    ['String#b (2.0)', /\.b\b/],
    ['then/yield_self (2.5/2.6)', /\.(then|yield_self)\b/],
    ['block-local variables (1.9)', /(do|\{)\s*\|[^|\n]*;[^|\n]*\|/],
    ['Process.clock_gettime (2.1)', /clock_gettime/],
    ['public_send (1.9)', /public_send/],
  ])('has no %s', (_what, pattern) => {
    expect(code).not.toMatch(pattern);
  });

  it('requires only the standard library and the console\'s own rake', () => {
    const requires = [...CONSOLE_WORKER_SOURCE.matchAll(/^\s*require '([^']+)'/gm)].map((m) => m[1]);
    expect(requires.sort()).toEqual(['fcntl', 'rake', 'rubygems']);
  });

  (rake === undefined ? it.skip : it)('parses (ruby -wc) without warnings', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'espm-worker-syntax-'));
    try {
      await writeFile(join(dir, CONSOLE_WORKER_FILE), CONSOLE_WORKER_SOURCE);
      const { stdout, stderr } = await promisify(execFile)(ruby, ['-wc', join(dir, CONSOLE_WORKER_FILE)]);
      expect(stdout).toBe('Syntax OK\n');
      expect(stderr).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A worker process driven by the test: it answers what the test says. */
class FakeWorker implements WorkerProcess {
  readonly pid = 4242;
  killed = false;
  private input: Buffer[] = [];
  private ended = false;
  private resolveExit!: (exit: { exitCode: number | undefined; signal: string | undefined; startError: string | undefined }) => void;
  readonly exited = new Promise<{ exitCode: number | undefined; signal: string | undefined; startError: string | undefined }>((r) => (this.resolveExit = r));
  constructor(private readonly spec: WorkerSpec) {}
  get hasExited(): boolean {
    return this.ended;
  }
  send(data: Uint8Array): boolean {
    if (this.ended) return false;
    this.input.push(Buffer.from(data));
    return true;
  }
  closeInput(): void {
    this.exit(0);
  }
  stderrTail(): string {
    return '';
  }
  kill(): void {
    this.killed = true;
    this.exit(undefined, 'SIGTERM');
  }
  /** What espm wrote to it since the last call. */
  sent(): string {
    const text = Buffer.concat(this.input).toString('utf8');
    this.input = [];
    return text;
  }
  answer(text: string): void {
    this.spec.onOutput(Buffer.from(text, 'latin1'));
  }
  exit(code: number | undefined, signal?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.resolveExit({ exitCode: code, signal, startError: undefined });
  }
}

class FakeSpawner implements WorkerSpawner {
  last: FakeWorker | undefined;
  spawn(spec: WorkerSpec): WorkerProcess {
    this.last = new FakeWorker(spec);
    return this.last;
  }
}
