/**
 * The ledger's file: `<state dir>/ledger.json`, format 2 (`{"format":2,"entries":[…]}`, entries
 * as src/ownership/entries.ts types them), validated with zod on read; the automatic,
 * crash-safe migration of a format-1 file; and the durable write every change goes through.
 *
 * Source of truth: docs/design.md ("Ownership", "Ledger format 2").
 *
 * @packageDocumentation
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import {
  ENTRY_KINDS,
  ENTRY_STATES,
  PENDING_STEPS,
  type CertificateRecord,
  type LedgerEntry,
  type NodeRecord,
  type Receipt,
} from './entries.js';

/** Name of the ledger file in the state directory. */
export const LEDGER_FILE = 'ledger.json';
/** Name of the copy of a format-1 ledger kept by the migration (written before `ledger.json` is replaced). */
export const LEDGER_V1_BACKUP = 'ledger.v1.json';
/** Version of the ledger file format this espm writes. */
export const LEDGER_FORMAT = 2;

/** The ledger file is unreadable or not a ledger: espm refuses to guess what it owns. */
export class LedgerCorruptError extends Error {
  override readonly name = 'LedgerCorruptError';
}

const receiptSchema = z.record(z.string(), z.json());

const nodeRecordSchema = z.strictObject({
  groups: z.array(z.string()),
  classes: z.array(z.string()),
  parameters: z.record(z.string(), z.string()),
});

const certificateRecordSchema = z.strictObject({
  dns_alt_names: z.array(z.string()),
  extensions: z.record(z.string(), z.string()).optional(),
  fingerprint_sha256: z.string().optional(),
  serial: z.string().optional(),
  not_after: z.string().optional(),
  signing: z.literal('token').optional(),
  token: z
    .strictObject({
      challenge_sha256: z.string().regex(/^[0-9a-f]{64}$/),
      expires_at: z.string(),
      extensions: z.record(z.string(), z.string()),
      approved_public_key_sha256: z.string().optional(),
      approved_at: z.string().optional(),
    })
    .optional(),
});

const entryBase = {
  name: z.string().min(1),
  state: z.enum(ENTRY_STATES),
  created_at: z.string(),
  updated_at: z.string(),
  receipt: receiptSchema.nullable(),
  pending_steps: z.array(z.enum(PENDING_STEPS)),
};

const entrySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('node'), ...entryBase, node: nodeRecordSchema }),
  z.strictObject({ kind: z.literal('certificate'), ...entryBase, certificate: certificateRecordSchema }),
]);

const fileSchema = z.strictObject({ format: z.literal(LEDGER_FORMAT), entries: z.array(entrySchema) });

/** Format 1 (espm ≤ 0.1.0): one untyped `details` object per entry, four states. */
const v1EntrySchema = z.strictObject({
  kind: z.enum(ENTRY_KINDS),
  name: z.string().min(1),
  state: z.enum(['pending', 'present', 'uncertain', 'deleting']),
  created_at: z.string(),
  updated_at: z.string(),
  details: z.record(z.string(), z.unknown()),
});
const v1FileSchema = z.strictObject({ format: z.literal(1), entries: z.array(v1EntrySchema) });
/** What a v1 node's details held (the API's answer); missing lists read as empty. */
const v1NodeDetails = z.object({
  groups: z.array(z.string()).default([]),
  classes: z.array(z.string()).default([]),
  parameters: z.record(z.string(), z.string()).default({}),
});
/** What a v1 certificate's details held: what was asked, and what the CA signed once issued. */
const v1CertificateDetails = z.object({
  dns_alt_names: z.array(z.string()).default([]),
  fingerprint_sha256: z.string().optional(),
  serial: z.string().optional(),
  not_after: z.string().optional(),
});

/** What {@link readLedgerFile} found. */
export interface LedgerFileContents {
  entries: LedgerEntry[];
  /**
   * Set when the file was format 1: its exact text, to be kept as {@link LEDGER_V1_BACKUP}
   * before the migrated entries replace it (see {@link keepV1Backup}).
   */
  v1Text?: string;
}

/** The first line of a zod (or JSON) error, for a one-line message. */
function firstLine(err: unknown): string {
  if (err instanceof z.ZodError) {
    const issue = err.issues[0];
    return issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`;
  }
  return (err as Error).message.split('\n')[0] ?? String(err);
}

function corrupt(path: string, why: string): LedgerCorruptError {
  return new LedgerCorruptError(
    `${path} is not a valid espm ledger (${why}); ` +
      'espm will not guess what it owns: restore it from a backup or inspect it by hand',
  );
}

/**
 * A format-1 entry as format 2 (docs/design.md, "Ledger format 2"): node details → `node`
 * with receipt `{}` when present/deleting (the rake console finds a node by name) and `null`
 * otherwise; certificate details → `certificate` with receipt `{fingerprint_sha256}` when the
 * fingerprint is known, else `null`. Timestamps and state are kept.
 *
 * @throws ZodError when the details are not what format 1 wrote
 */
export function migrateV1Entry(v1: z.infer<typeof v1EntrySchema>): LedgerEntry {
  const common = {
    name: v1.name,
    state: v1.state,
    created_at: v1.created_at,
    updated_at: v1.updated_at,
    pending_steps: [],
  };
  if (v1.kind === 'node') {
    const node: NodeRecord = v1NodeDetails.parse(v1.details);
    const receipt: Receipt | null = v1.state === 'present' || v1.state === 'deleting' ? {} : null;
    return { kind: 'node', ...common, receipt, node };
  }
  const details = v1CertificateDetails.parse(v1.details);
  const certificate: CertificateRecord = { dns_alt_names: details.dns_alt_names };
  if (details.fingerprint_sha256 !== undefined) certificate.fingerprint_sha256 = details.fingerprint_sha256;
  if (details.serial !== undefined) certificate.serial = details.serial;
  if (details.not_after !== undefined) certificate.not_after = details.not_after;
  const receipt: Receipt | null = details.fingerprint_sha256 === undefined ? null : { fingerprint_sha256: details.fingerprint_sha256 };
  return { kind: 'certificate', ...common, receipt, certificate };
}

/**
 * Reads and validates a ledger file, migrating a format-1 file in memory.
 *
 * @param path - the ledger file
 * @returns its entries (empty when the file does not exist), and the v1 text when it was format 1
 * @throws {@link LedgerCorruptError} when it is not JSON, not a ledger, has an entry twice, or
 *   has a format newer than {@link LEDGER_FORMAT}
 */
export async function readLedgerFile(path: string): Promise<LedgerFileContents> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [] };
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw corrupt(path, firstLine(err));
  }
  const format = typeof json === 'object' && json !== null ? (json as { format?: unknown }).format : undefined;
  if (typeof format === 'number' && Number.isInteger(format) && format > LEDGER_FORMAT) {
    throw new LedgerCorruptError(
      `${path} is ledger format ${format}, newer than this espm knows (${LEDGER_FORMAT}): ` +
        'it was written by a newer espm; run that version (espm will not guess what it owns)',
    );
  }
  let contents: LedgerFileContents;
  try {
    contents =
      format === 1
        ? { entries: v1FileSchema.parse(json).entries.map(migrateV1Entry), v1Text: text }
        : { entries: fileSchema.parse(json).entries as LedgerEntry[] };
  } catch (err) {
    throw corrupt(path, firstLine(err));
  }
  const seen = new Set<string>();
  for (const entry of contents.entries) {
    const key = `${entry.kind} ${entry.name}`;
    if (seen.has(key)) throw corrupt(path, `${key} is listed twice`);
    seen.add(key);
  }
  return contents;
}

/** fsyncs a directory, so a rename in it is durable. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a file durably and atomically: write-file-atomic (temp file, fsync, rename), then
 * the directory is fsync'd. Mode 0600.
 *
 * @param path - the file (its directory must exist)
 * @param text - the whole content
 */
export async function writeDurably(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { mode: 0o600, fsync: true });
  await syncDirectory(join(path, '..'));
}

/** The text of a format-2 ledger file holding `entries` (in the order given). */
export function ledgerText(entries: readonly LedgerEntry[]): string {
  return `${JSON.stringify({ format: LEDGER_FORMAT, entries }, null, 2)}\n`;
}

/**
 * The migration's first, crash-safe step: keeps the format-1 text as
 * `<state dir>/ledger.v1.json`, durably, BEFORE the caller replaces `ledger.json` with format 2.
 * A crash before the replace leaves `ledger.json` still format 1 (migrated again, to the same
 * result, on the next open); a crash after it leaves format 2 and the backup.
 *
 * @param stateDir - the state directory
 * @param v1Text - the format-1 file's exact text
 * @returns the backup's path
 */
export async function keepV1Backup(stateDir: string, v1Text: string): Promise<string> {
  const backup = join(stateDir, LEDGER_V1_BACKUP);
  await writeDurably(backup, v1Text);
  return backup;
}
