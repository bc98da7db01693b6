/**
 * Test helper (not a suite): one process contending for a state directory's lock, driven by
 * test/ownership/lock.test.ts over stdin/stdout, one command per line:
 * `acquire <dir>` → `won` | `locked <pid>` | `error <message>`; `release` → `released`.
 */
import { createInterface } from 'node:readline';
import { StateLock, StateLockedError } from '../../src/ownership/lock.js';

let held: StateLock | undefined;
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

for await (const line of createInterface({ input: process.stdin })) {
  const [command, dir] = line.split(' ', 2);
  if (command === 'acquire' && dir !== undefined) {
    try {
      held = await StateLock.acquire(dir);
      say('won');
    } catch (err) {
      say(err instanceof StateLockedError ? `locked ${err.pid}` : `error ${(err as Error).message}`);
    }
  } else if (command === 'release') {
    await held?.release();
    held = undefined;
    say('released');
  }
}
