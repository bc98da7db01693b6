/**
 * Test support: a command runner that counts what it spawns (and can refuse to spawn).
 */
import { ExecaCommandRunner, type CommandResult, type CommandRunner, type CommandSpec } from '../../src/exec/command.js';

/** Wraps the real runner, recording every command and when it ran. */
export class CountingRunner implements CommandRunner {
  readonly calls: CommandSpec[] = [];
  /** [start, end] ms of every finished command, with its binary. */
  readonly intervals: Array<{ file: string; args: readonly string[]; start: number; end: number }> = [];
  private readonly real = new ExecaCommandRunner();

  async run(spec: CommandSpec): Promise<CommandResult> {
    this.calls.push(spec);
    const start = Date.now();
    try {
      return await this.real.run(spec);
    } finally {
      this.intervals.push({ file: spec.file, args: spec.args, start, end: Date.now() });
    }
  }

  /** Number of commands run so far. */
  get count(): number {
    return this.calls.length;
  }
}
