/**
 * Test support: a console double directory (test/fixtures/console, run by real rake), its
 * knobs, store and invocation log.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** The double's Rakefile. */
export const CONSOLE_RAKEFILE = fileURLToPath(new URL('../fixtures/console/Rakefile', import.meta.url));
/** The double's ENC script. */
export const CONSOLE_EXTERNAL_NODE = fileURLToPath(new URL('../fixtures/console/external_node', import.meta.url));

/** Absolute path of rake, or undefined when it is not installed. */
export async function findRake(): Promise<string | undefined> {
  const result = await execa('/bin/sh', ['-c', 'command -v rake'], { reject: false });
  return result.exitCode === 0 && result.stdout.startsWith('/') ? result.stdout.trim() : undefined;
}

/** Versions of puppet-dashboard the double can play. */
export const CONSOLE_VERSIONS = ['1.2.6', '1.2.10', '1.2.23', '2.0'] as const;

/** Knobs of the double (see test/fixtures/console/README.md). */
export interface ConsoleKnobs {
  version?: string;
  boot_sleep?: number;
  faults?: Record<string, { sleep?: number; abort?: string; exit?: number; stdout?: string; stderr?: string }>;
}

/** A node of the double's store. */
export interface StoredNode {
  name: string;
  groups: string[];
  classes: string[];
  parameters: Array<[string, string]>;
}

/** One line of the double's invocation log (per process) or task log (per task). */
export interface Invocation {
  /** `start`/`end`: a rake process (invocations.log); `task`/`task_end`: a task (tasks.log). */
  event: 'start' | 'end' | 'task' | 'task_end';
  pid: number;
  ppid?: number;
  ts: number;
  /** `end`/`task_end`: when the process or task started. */
  start_ts?: number;
  duration_ms?: number;
  /** `start`: rake's top-level tasks. */
  tasks?: string[];
  /** `start`: true for `rake -T`. */
  list_tasks?: boolean;
  /** `task`/`task_end`: the task. */
  task?: string;
  args?: Record<string, string>;
  env?: Record<string, string | null>;
  inherited_env?: string[];
  status?: number;
  error?: string;
}

/** How espm runs the double's tasks: the warm console worker, or one process per call. */
export type WorkerMode = 'worker' | 'process';
/** Both modes, for `describe.each`. */
export const WORKER_MODES: readonly WorkerMode[] = ['worker', 'process'];

/** A console double directory. */
export class ConsoleDouble {
  private constructor(readonly dir: string) {}

  /** A fresh, seeded console directory. */
  static async create(knobs: ConsoleKnobs = {}): Promise<ConsoleDouble> {
    const console = new ConsoleDouble(await mkdtemp(join(tmpdir(), 'espm-console-')));
    await console.setKnobs(knobs);
    return console;
  }

  /** Replaces knobs.json. */
  async setKnobs(knobs: ConsoleKnobs): Promise<void> {
    await writeFile(join(this.dir, 'knobs.json'), JSON.stringify(knobs));
  }

  /**
   * The `[classifier]` keys pointing espm at this console: the given rake, the Ruby beside it,
   * and the worker on or off (default off: one process per call).
   */
  classifierConfig(rake: string, mode: WorkerMode = 'process'): Record<string, string | number> {
    return {
      rake,
      rakefile: CONSOLE_RAKEFILE,
      cwd: this.dir,
      rails_env: 'production',
      worker: mode === 'worker' ? 'on' : 'off',
      ruby: join(dirname(rake), 'ruby'),
    };
  }

  /** The store, as rake left it (seeded first if no task ran yet). */
  async store(): Promise<{ nodes: StoredNode[]; node_groups: Array<{ name: string }>; node_classes: Array<{ name: string }> }> {
    const path = join(this.dir, 'console.json');
    const text = await readFile(path, 'utf8').catch(async () => {
      const rake = await findRake();
      await execa(rake!, ['-s', '-f', CONSOLE_RAKEFILE, 'RAILS_ENV=production', 'nodegroup:list'], { cwd: this.dir });
      await this.clearInvocations();
      return readFile(path, 'utf8');
    });
    return JSON.parse(text) as Awaited<ReturnType<ConsoleDouble['store']>>;
  }

  /** A stored node by name, or undefined. */
  async node(name: string): Promise<StoredNode | undefined> {
    return (await this.store()).nodes.find((n) => n.name === name);
  }

  /** The invocation log's lines (one `start` and one `end` per rake process). */
  async invocations(): Promise<Invocation[]> {
    return readLog(join(this.dir, 'invocations.log'));
  }

  /** The task log's lines (one `task` and one `task_end` per task invocation). */
  async taskLog(): Promise<Invocation[]> {
    return readLog(join(this.dir, 'tasks.log'));
  }

  /**
   * Every task run, in order: one entry per task invocation (whether in its own rake process
   * or in the console worker), plus `-T` for each `rake -T` process.
   */
  async tasksRun(): Promise<string[]> {
    const listings = (await this.invocations()).filter((i) => i.event === 'start' && i.list_tasks === true);
    const tasks = (await this.taskLog()).filter((i) => i.event === 'task');
    return [...listings, ...tasks].sort((a, b) => a.ts - b.ts).map((i) => i.task ?? '-T');
  }

  /** The tasks of every rake process started (one entry per process; `-T` for a listing). */
  async processesRun(): Promise<string[]> {
    return (await this.invocations()).filter((i) => i.event === 'start').map((i) => (i.tasks ?? []).join(' ') || '-T');
  }

  /** Empties the invocation and task logs. */
  async clearInvocations(): Promise<void> {
    await writeFile(join(this.dir, 'invocations.log'), '');
    await writeFile(join(this.dir, 'tasks.log'), '');
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function readLog(path: string): Promise<Invocation[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Invocation);
}
