/**
 * Test support: a command runner that counts what it spawns (and can refuse to spawn).
 */
import { ExecaCommandRunner, type CommandResult, type CommandRunner, type CommandSpec } from '../../src/exec/command.js';

/** Wraps the real runner, recording every command. */
export class CountingRunner implements CommandRunner {
  readonly calls: CommandSpec[] = [];
  private readonly real = new ExecaCommandRunner();

  async run(spec: CommandSpec): Promise<CommandResult> {
    this.calls.push(spec);
    return this.real.run(spec);
  }

  /** Number of commands run so far. */
  get count(): number {
    return this.calls.length;
  }
}
