/**
 * Test helper (not a suite): opens and closes the ledger of a state directory in a process of
 * its own, so test/ownership/ledger-migration.test.ts can kill it (SIGKILL) mid-migration.
 * argv: `<state dir> <now, ms since the epoch>`. Prints `ready`, waits for a line on stdin,
 * then opens the ledger, closes it and prints `done`.
 */
import { once } from 'node:events';
import { Ledger } from '../../src/ownership/ledger.js';

const [dir, now] = process.argv.slice(2);
process.stdout.write('ready\n');
await once(process.stdin, 'data');
const ledger = await Ledger.open(dir!, { now: () => Number(now) });
await ledger.close();
process.stdout.write('done\n');
process.exit(0);
