// Creates the directory where every test worker records log lines and secrets for the
// whole-suite scan (test/support/log-scan.ts, test/global-teardown.js).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function globalSetup() {
  process.env.ESPM_TEST_SCAN_DIR = mkdtempSync(join(tmpdir(), 'espm-log-scan-'));
}
