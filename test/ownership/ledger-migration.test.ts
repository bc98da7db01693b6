/**
 * Ledger format 1 → 2 (docs/design.md, "Ledger format 2"): a real format-1 ledger written by
 * the 0.1.0 release (test/fixtures/ledger/README.md) is migrated when opened; the v1 file is
 * kept as ledger.v1.json; a crash at any point of the migration leaves a readable ledger and
 * the next open ends in the same format-2 result; a newer format is refused.
 */
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createLogger } from '../../src/logger.js';
import { Ledger, LedgerCorruptError, type LedgerEntry } from '../../src/ownership/ledger.js';

const V1_FIXTURE = fileURLToPath(new URL('../fixtures/ledger/v1-ledger.json', import.meta.url));
const OPENER = fileURLToPath(new URL('./ledger-opener.ts', import.meta.url));
const NOW = Date.UTC(2026, 11, 5, 9, 0, 0);
const NOW_ISO = '2026-12-05T09:00:00.000Z';

/** Log lines of a ledger, parsed. */
class Lines {
  readonly records: Array<Record<string, unknown>> = [];
  write(line: string): void {
    this.records.push(JSON.parse(line) as Record<string, unknown>);
  }
}

describe('ledger migration from format 1 (a real file of the 0.1.0 release)', () => {
  let dir: string;
  let v1Text: string;
  let v1: { format: number; entries: Array<{ kind: string; name: string; state: string; created_at: string; updated_at: string; details: Record<string, unknown> }> };
  const open = (lines = new Lines()) => Ledger.open(dir, { now: () => NOW, logger: createLogger({ level: 'debug', format: 'json', destination: lines }) });
  const v1Entry = (kind: string, name: string) => v1.entries.find((e) => e.kind === kind && e.name === name)!;

  beforeAll(async () => {
    v1Text = await readFile(V1_FIXTURE, 'utf8');
    v1 = JSON.parse(v1Text) as typeof v1;
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-migrate-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** The format-2 file a clean migration of the fixture writes (at NOW). */
  async function cleanMigration(): Promise<string> {
    await copyFile(V1_FIXTURE, join(dir, 'ledger.json'));
    const ledger = await open();
    await ledger.close();
    const text = await readFile(join(dir, 'ledger.json'), 'utf8');
    await rm(join(dir, 'ledger.json'));
    await rm(join(dir, 'ledger.v1.json'));
    return text;
  }

  it('migrates every entry on open, typed, with receipts; keeps the v1 file; logs one info line', async () => {
    expect(v1.format).toBe(1); // the fixture really is format 1
    await copyFile(V1_FIXTURE, join(dir, 'ledger.json'));
    const lines = new Lines();
    const ledger = await open(lines);
    const entries = ledger.list();
    expect(entries.map((e) => [e.kind, e.name, e.state])).toEqual([
      ['certificate', 'crashed.example.test', 'uncertain'], // v1 pending: a crash → uncertain
      ['certificate', 'db02.example.test', 'deleting'],
      ['certificate', 'web01.example.test', 'present'],
      ['node', 'bare.example.test', 'present'],
      ['node', 'crashed.example.test', 'uncertain'],
      ['node', 'db02.example.test', 'present'],
      ['node', 'web01.example.test', 'present'],
    ]);
    const web01 = v1Entry('node', 'web01.example.test');
    expect(ledger.get('node', 'web01.example.test')).toEqual({
      kind: 'node',
      name: 'web01.example.test',
      state: 'present',
      created_at: web01.created_at,
      updated_at: web01.updated_at,
      receipt: {},
      pending_steps: [],
      node: { groups: ['default', 'webservers'], classes: ['ntp', 'apache::vhost'], parameters: { motd_message: 'hello, world', role: 'web' } },
    });
    expect(ledger.get('node', 'crashed.example.test')).toMatchObject({ receipt: null, node: { groups: ['default'], classes: [], parameters: {} } });
    const cert = v1Entry('certificate', 'web01.example.test');
    expect(ledger.get('certificate', 'web01.example.test')).toEqual({
      kind: 'certificate',
      name: 'web01.example.test',
      state: 'present',
      created_at: cert.created_at,
      updated_at: cert.updated_at,
      receipt: { fingerprint_sha256: cert.details['fingerprint_sha256'] },
      pending_steps: [],
      certificate: cert.details,
    });
    expect(ledger.get('certificate', 'db02.example.test')).toMatchObject({
      state: 'deleting',
      receipt: { fingerprint_sha256: v1Entry('certificate', 'db02.example.test').details['fingerprint_sha256'] },
    });
    expect(ledger.get('certificate', 'crashed.example.test')).toMatchObject({
      receipt: null,
      certificate: { dns_alt_names: [] },
      created_at: v1Entry('certificate', 'crashed.example.test').created_at,
      updated_at: NOW_ISO,
    });
    await ledger.close();

    expect(await readFile(join(dir, 'ledger.v1.json'), 'utf8')).toBe(v1Text);
    const onDisk = JSON.parse(await readFile(join(dir, 'ledger.json'), 'utf8')) as { format: number; entries: LedgerEntry[] };
    expect(onDisk).toEqual({ format: 2, entries });
    const migrated = lines.records.filter((r) => typeof r['msg'] === 'string' && r['msg'].includes('migrated'));
    expect(migrated).toEqual([
      expect.objectContaining({ level: 30, from_format: 1, entries: 7, backup: join(dir, 'ledger.v1.json'), ledger: join(dir, 'ledger.json') }),
    ]);

    // Opened again: format 2 already, nothing migrated, nothing changed.
    const before = await readFile(join(dir, 'ledger.json'), 'utf8');
    const again = new Lines();
    await (await open(again)).close();
    expect(again.records.filter((r) => String(r['msg']).includes('migrated'))).toEqual([]);
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(before);
  });

  it('a crash after the v1 backup, before ledger.json was replaced: the next open ends in the same result', async () => {
    const expected = await cleanMigration();
    // The state such a crash leaves: ledger.json still format 1, the backup written.
    await copyFile(V1_FIXTURE, join(dir, 'ledger.json'));
    await copyFile(V1_FIXTURE, join(dir, 'ledger.v1.json'));
    await (await open()).close();
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(expected);
    expect(await readFile(join(dir, 'ledger.v1.json'), 'utf8')).toBe(v1Text);
  });

  it('a crash while the backup was being written (a half temp file left): the next open ends in the same result', async () => {
    const expected = await cleanMigration();
    await copyFile(V1_FIXTURE, join(dir, 'ledger.json'));
    await writeFile(join(dir, 'ledger.v1.json.3141592653'), v1Text.slice(0, 100)); // write-file-atomic's temp, never renamed
    await (await open()).close();
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(expected);
    expect(await readFile(join(dir, 'ledger.v1.json'), 'utf8')).toBe(v1Text);
  });

  it('a crash after ledger.json was replaced: format 2 is read as is, the backup stays', async () => {
    const expected = await cleanMigration();
    await writeFile(join(dir, 'ledger.json'), expected);
    await writeFile(join(dir, 'ledger.v1.json'), v1Text);
    const lines = new Lines();
    await (await open(lines)).close();
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(expected);
    expect(lines.records.filter((r) => String(r['msg']).includes('migrated'))).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(['ledger.json', 'ledger.v1.json']);
  });

  it('SIGKILL at random moments of a real migration (a large v1 file): every time a readable ledger, then the same result', async () => {
    // 4000 entries of the release's shapes (the fixture's, renamed): a migration long enough to be hit.
    const big = {
      format: 1,
      entries: Array.from({ length: 4000 }, (_, i) => ({ ...v1.entries[i % v1.entries.length]!, name: `n${i}.example.test` })),
    };
    const bigText = `${JSON.stringify(big, null, 2)}\n`;
    await writeFile(join(dir, 'ledger.json'), bigText);
    const t0 = Date.now();
    await (await open()).close();
    const migrationMs = Math.max(Date.now() - t0, 20);
    const expected = await readFile(join(dir, 'ledger.json'), 'utf8');

    let interrupted = 0;
    for (let round = 0; round < 8; round += 1) {
      await rm(dir, { recursive: true, force: true });
      dir = await mkdtemp(join(tmpdir(), 'espm-migrate-'));
      await writeFile(join(dir, 'ledger.json'), bigText);
      const child = execa(process.execPath, ['--import', 'tsx', OPENER, dir, String(NOW)], { stdin: 'pipe', reject: false, buffer: { stdout: true } });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdin.write('go\n');
      await new Promise((resolve) => setTimeout(resolve, Math.random() * migrationMs * 1.5));
      child.kill('SIGKILL');
      const result = await child;
      if (!String(result.stdout).includes('done')) interrupted += 1;
      // Readable after the crash, and opening it ends in the clean migration's result.
      await (await open()).close();
      expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(expected);
      expect(await readFile(join(dir, 'ledger.v1.json'), 'utf8')).toBe(bigText);
    }
    expect(interrupted).toBeGreaterThan(0); // at least one kill landed before the migration finished
  }, 60_000);

  it('refuses a format newer than it knows, and leaves the file alone', async () => {
    const future = '{"format":3,"entries":[],"whatever":"a newer espm wrote"}\n';
    await writeFile(join(dir, 'ledger.json'), future);
    await expect(open()).rejects.toBeInstanceOf(LedgerCorruptError);
    await expect(open()).rejects.toThrow(/ledger format 3, newer than this espm knows \(2\)/);
    expect(await readFile(join(dir, 'ledger.json'), 'utf8')).toBe(future);
    expect(await readdir(dir)).toEqual(['ledger.json']); // lock released, nothing written
  });

  it('refuses a format-1 file whose details are not what format 1 wrote', async () => {
    const bad = { format: 1, entries: [{ ...v1.entries[0], details: { dns_alt_names: 'not a list' } }] };
    await writeFile(join(dir, 'ledger.json'), JSON.stringify(bad));
    await expect(open()).rejects.toThrow(/is not a valid espm ledger \(dns_alt_names: /);
    expect(await readdir(dir)).toEqual(['ledger.json']);
  });
});
