#!/usr/bin/env node
// The crash-consistency test's daemon: bin/espm's command (the built dist/) with the
// `afterBackend` hook set from ESPM_FAULT_DELAY_MS — espm waits that many ms after every
// successful backend change before recording it in the ledger, so the test's SIGKILL can land
// in that window. Test-only: production code reads no such variable (src/compose.ts).
import { espmCommand } from '../../dist/cli/espm.js';

const raw = process.env.ESPM_FAULT_DELAY_MS ?? '';
const ms = /^\d+$/.test(raw) ? Number(raw) : 0;
const afterBackend = ms > 0 ? () => new Promise((resolve) => setTimeout(resolve, ms)) : undefined;
await espmCommand(afterBackend === undefined ? {} : { afterBackend }).parseAsync(process.argv);
