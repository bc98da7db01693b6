/**
 * `espm ledger list|adopt|forget` on ledger v2 (docs/operations.md): run as real processes of
 * the CLI's source (tsx) against a state directory holding the 0.1.0 release's format-1 ledger,
 * which the first command migrates.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Ledger, type LedgerEntry } from '../../src/ownership/ledger.js';

const V1_FIXTURE = fileURLToPath(new URL('../fixtures/ledger/v1-ledger.json', import.meta.url));
const CLI = (file: string, command: string) =>
  `const { ${command} } = await import(${JSON.stringify(fileURLToPath(new URL(`../../src/cli/${file}`, import.meta.url)))}); ` +
  `await ${command}().parseAsync(['node', 'cli', ...process.argv.slice(1)]);`;

describe('espm ledger on a migrated ledger', () => {
  let dir: string;
  let config: string;
  const espm = (...args: string[]) =>
    execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CLI('espm.ts', 'espmCommand'), '--', ...args, '-c', config], { reject: false });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-ledger-cli-'));
    const setup = await execa(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', CLI('espm_setup.ts', 'espmSetupCommand'), '--', '-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost'],
      { reject: false },
    );
    if (setup.exitCode !== 0) throw new Error(`espm_setup failed: ${setup.stderr}`);
    config = join(dir, 'espm.ini');
    await copyFile(V1_FIXTURE, join(dir, 'var', 'ledger.json'));
  }, 30_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('list migrates the format-1 ledger (saying so on stderr) and lists every entry', async () => {
    const list = await espm('ledger', 'list');
    expect(list.exitCode).toBe(0);
    expect(list.stdout.split('\n').map((l) => l.split('\t').slice(0, 3).join(' '))).toEqual([
      'certificate crashed.example.test uncertain',
      'certificate db02.example.test deleting',
      'certificate web01.example.test present',
      'node bare.example.test present',
      'node crashed.example.test uncertain',
      'node db02.example.test present',
      'node web01.example.test present',
    ]);
    expect(list.stdout).toMatch(/^node\tweb01\.example\.test\tpresent\t2026-12-04T14:28:56\.456Z$/m);
    expect(list.stderr).toContain('ledger migrated from format 1 to format 2');
    expect(await readFile(join(dir, 'var', 'ledger.v1.json'), 'utf8')).toBe(await readFile(V1_FIXTURE, 'utf8'));

    const json = await espm('ledger', 'list', '--json');
    expect(json.stderr).not.toContain('migrated');
    const entries = JSON.parse(json.stdout) as LedgerEntry[];
    expect(entries.find((e) => e.kind === 'node' && e.name === 'web01.example.test')).toMatchObject({ receipt: {}, pending_steps: [], node: { classes: ['ntp', 'apache::vhost'] } });
  }, 30_000);

  it('shows pending steps; refuses to adopt a deleted entry; adopts an uncertain one; forgets', async () => {
    const ledger = await Ledger.open(join(dir, 'var'));
    await ledger.markDeleting('node', 'db02.example.test');
    await ledger.finishDeletion('node', 'db02.example.test', ['puppetdb_deactivation']);
    await ledger.close();

    const list = await espm('ledger', 'list');
    expect(list.stdout).toMatch(/^node\tdb02\.example\.test\tdeleted\t[^\t]+\tpending: puppetdb_deactivation$/m);
    const refused = await espm('ledger', 'adopt', 'node', 'db02.example.test');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('espm ledger: node db02.example.test is deleted (only puppetdb_deactivation owed); it cannot become present');

    const adopt = await espm('ledger', 'adopt', 'node', 'crashed.example.test');
    expect(adopt.stdout).toBe('node crashed.example.test: uncertain → present');
    const forget = await espm('ledger', 'forget', 'node', 'db02.example.test');
    expect(forget.stdout).toBe('node db02.example.test: forgotten');
    const after = await Ledger.open(join(dir, 'var'));
    expect(after.get('node', 'db02.example.test')).toBeUndefined();
    expect(after.get('node', 'crashed.example.test')?.state).toBe('present');
    await after.close();
  }, 30_000);
});
