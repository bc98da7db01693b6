/**
 * Test support: the whole suite's log scan. Every log line an in-process espm writes (through
 * {@link LogCapture}) and every PSK the tests generate are appended to files in
 * `$ESPM_TEST_SCAN_DIR` (set by test/global-setup.js); test/global-teardown.js then fails the
 * run if any log line holds a PSK or a private key.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env['ESPM_TEST_SCAN_DIR'];

/** Records a secret the logs must never contain. */
export function recordSecret(secret: string): void {
  if (dir !== undefined) appendFileSync(join(dir, `secrets-${process.pid}.txt`), `${secret}\n`);
}

/** Records a log line for the final scan. */
export function recordLogLine(line: string): void {
  if (dir !== undefined) appendFileSync(join(dir, `logs-${process.pid}.jsonl`), line.endsWith('\n') ? line : `${line}\n`);
}
