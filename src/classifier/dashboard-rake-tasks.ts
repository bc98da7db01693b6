/**
 * The PE 2.x/3.x console's rake tasks as data: one task's answer ({@link RakeOutput}), the
 * console's messages, parsing of what the tasks print and encoding of what they take, and
 * which parameters a console version can store. Shared by the dashboard-rake adapter
 * (src/classifier/dashboard-rake.ts) and the console worker (src/classifier/console-worker*.ts),
 * which import it and not each other's types.
 *
 * Source of truth for every message and format: docs/reference/dashboard-rake.md
 * (puppet-dashboard 1.2.6–1.2.23 and 2.0 `lib/tasks/node.rake`, `lib/tasks/classesgroups.rake`).
 *
 * @packageDocumentation
 */

/** One rake task's answer. */
export interface RakeOutput {
  /** Exit status (a signal as 128 + its number). */
  exitCode: number;
  /** What the task printed on stdout. */
  stdout: string;
  /** What the task printed on stderr. */
  stderr: string;
}

/** Lines rake 0.8.7 prints when run without `-s`. */
export const RAKE_IN_DIRECTORY_LINE = /^\(in .*\)$/;

/** Messages of the console's tasks (puppet-dashboard 1.2.x/2.0 `lib/tasks/node.rake`). */
export const CONSOLE_MESSAGES = {
  /** `node:add` success. */
  nodeCreated: /^Node successfully created!$/m,
  /** `node:add` on an existing name (any node, owned or not). */
  nodeExists: /^Node already exists!$/m,
  /** `node:del` / `node:*` on a missing node: 1.2.x `Node does not exist!`, 1.2.23+ `Node N doesn't exist!`. */
  nodeMissing: /^Node (?:does not exist!|.*doesn't exist!)$/m,
  /** `node:parameters` (1.2.7+) / `node:variables` (2.0) success. */
  parametersEdited: /^Node (?:parameters|variables) successfully edited for .*!$/m,
} as const;

/**
 * Tasks that only read: after a worker died running one, it is safe to run it again as a
 * process. Every other task may have changed the console.
 */
export const READ_ONLY_TASKS: ReadonlySet<string> = new Set([
  '-T',
  'nodegroup:list',
  'nodeclass:list',
  'node:list',
  'node:listgroups',
  'node:listclasses',
]);

/**
 * Drops rake's `(in <cwd>)` lines from a stream.
 *
 * @param text - stdout or stderr of a task
 */
export function dropInDirectoryLines(text: string): string {
  return text
    .split('\n')
    .filter((line) => !RAKE_IN_DIRECTORY_LINE.test(line))
    .join('\n');
}

/**
 * Parses `rake -T` output (`rake node:add  # Add a new node`) into task names.
 *
 * @param stdout - rake's stdout
 */
export function parseTaskList(stdout: string): Set<string> {
  const names = new Set<string>();
  for (const line of stdout.split('\n')) {
    const match = /^rake ([\w:]+)(?:\[[^\]]*\])?\s+#/.exec(line);
    if (match?.[1] !== undefined) names.add(match[1]);
  }
  return names;
}

/**
 * Parses a list task's stdout (`nodegroup:list`, `nodeclass:list`): one name per line, no
 * header; drops empty lines and rake's `(in …)` line. Names are kept as printed (group
 * names may hold spaces).
 *
 * @param stdout - the task's stdout
 * @returns the names, sorted by code point (the console sorts by MySQL collation)
 */
export function parseNameList(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .filter((line) => line !== '' && !RAKE_IN_DIRECTORY_LINE.test(line))
    .sort();
}

/** The tool's words for an error detail: stdout then stderr, `(in …)` lines dropped, trimmed. */
export function consoleOutput(output: RakeOutput): string {
  return dropInDirectoryLines([output.stdout, output.stderr].join('\n')).trim();
}

/**
 * Encodes parameters for `node:parameters` (1.2.7+: `k1=v1,k2=v2`, split on `,` then the
 * first `=`, no escaping — values with a comma cannot be carried) or `node:variables`
 * (2.0: `,` and `=` in values escaped as `\,` and `\=`; values with a backslash are
 * refused earlier, see {@link parameterDialect}).
 *
 * @param parameters - key → value, already validated
 * @param escape - true for `node:variables`
 */
export function encodeParameters(parameters: Readonly<Record<string, string>>, escape: boolean): string {
  return Object.entries(parameters)
    .map(([key, value]) => `${key}=${escape ? value.replace(/[,=]/g, (c) => `\\${c}`) : value}`)
    .join(',');
}

/** How a console version takes node parameters, found from its task set. */
export interface ParameterDialect {
  /** The task that sets them (`node:variables` on 2.0, `node:parameters` on 1.2.7+), or none (1.2.6). */
  task: 'node:variables' | 'node:parameters' | undefined;
  /**
   * Why a value cannot be carried, or undefined when it can.
   *
   * @param value - a parameter value (already validated: no newline)
   */
  refuse(value: string): string | undefined;
  /** Human description, e.g. `puppet-dashboard 1.2.7+ (node:parameters)`. */
  description: string;
}

/**
 * The parameter dialect of a console with these tasks (the comma rules of the console versions).
 *
 * @param tasks - task names from `rake -T`
 */
export function parameterDialect(tasks: ReadonlySet<string>): ParameterDialect {
  if (tasks.has('node:variables')) {
    return {
      task: 'node:variables',
      refuse: (value) => (value.includes('\\') ? 'a backslash cannot be carried by node:variables (it escapes commas)' : undefined),
      description: 'puppet-dashboard 2.0 (node:variables)',
    };
  }
  if (tasks.has('node:parameters')) {
    return {
      task: 'node:parameters',
      refuse: (value) => (value.includes(',') ? 'this console (node:parameters, 1.2.x) cannot carry a comma in a value' : undefined),
      description: 'puppet-dashboard 1.2.7+ (node:parameters)',
    };
  }
  return {
    task: undefined,
    refuse: () => 'this console (puppet-dashboard before 1.2.7) has no task to set node parameters',
    description: 'puppet-dashboard before 1.2.7 (no parameters task)',
  };
}

/**
 * How two answers to the same task differ (exit status, then stdout, then stderr), or
 * undefined when they are byte-identical.
 *
 * @param process - the rake process's answer
 * @param worker - the worker's answer
 */
export function describeDifference(process: RakeOutput, worker: RakeOutput): string | undefined {
  if (process.exitCode !== worker.exitCode) return `exit status ${process.exitCode} as a process, ${worker.exitCode} in the worker`;
  for (const stream of ['stdout', 'stderr'] as const) {
    const a = process[stream];
    const b = worker[stream];
    if (a === b) continue;
    let at = 0;
    while (at < a.length && at < b.length && a[at] === b[at]) at += 1;
    const line = a.slice(0, at).split('\n').length;
    return `${stream} differs at line ${line}: ${JSON.stringify(a.slice(at, at + 60))} as a process, ${JSON.stringify(b.slice(at, at + 60))} in the worker`;
  }
  return undefined;
}
