/**
 * Crash consistency (issue #6): cycles of create/delete of nodes and certificates against the
 * console double and the puppet cert double, with espm killed by SIGKILL at random moments —
 * including between the backend call and the ledger write, widened by ESPM_FAULT_DELAY_MS
 * (test/support/espm-fault-delay.mjs sets the daemon's `afterBackend` hook from it) — and
 * restarted each time. Afterwards the ledger and the backends must agree, and
 * nothing espm did not create may have been deleted or revoked.
 *
 * ESPM_CRASH_CYCLES overrides the number of cycles (default 200).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import request from 'supertest';
import { certificateInfo } from '../../src/ca/certificate-info.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { PuppetCertMaster, revokedSerials } from '../support/ca.js';
import { ConsoleDouble, findRake } from '../support/console.js';
import { describeWith } from '../support/components.js';
import { setUpDir, type SetUpDir } from '../support/espm.js';
import { freePort } from '../support/net.js';

const ESPM = fileURLToPath(new URL('../../bin/espm', import.meta.url));
/** bin/espm's command with the crash-window hook set from ESPM_FAULT_DELAY_MS (test-only entry). */
const ESPM_WITH_FAULT_DELAY = fileURLToPath(new URL('../support/espm-fault-delay.mjs', import.meta.url));
const CYCLES = Number(process.env['ESPM_CRASH_CYCLES'] ?? 200);
const POOL = Array.from({ length: 24 }, (_, i) => `crash${i}.example.test`);
const PRE_EXISTING_NODES = ['master.example.com', 'db01.example.com', 'web-legacy.example.com'];
const PRE_EXISTING_CERT = 'pre.example.test';

const rake = await findRake();
const describeWithRake = describeWith('rake (Debian packages ruby rake)', rake === undefined ? 'rake is not on PATH' : undefined);

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeWithRake('crash consistency under SIGKILL', () => {
  let console: ConsoleDouble;
  let master: PuppetCertMaster;
  let setup: SetUpDir;
  let port: number;

  beforeAll(async () => {
    console = await ConsoleDouble.create({ version: '2.0' });
    master = await PuppetCertMaster.create();
    expect((await master.puppet('cert', 'generate', PRE_EXISTING_CERT)).exitCode).toBe(0);
    setup = await setUpDir();
    port = await freePort();
    await setup.editConfig({
      server: { port },
      classifier: console.classifierConfig(rake!),
      ca: { ...master.caConfig(), ssldir: master.ssldir },
    });
  });
  afterAll(async () => {
    await setup.remove();
    await console.remove();
    await master.remove();
  });

  it(`keeps the ledger and the backends consistent over ${CYCLES} killed cycles`, async () => {
    const nodesBefore = await console.store();
    const preExisting = JSON.stringify(nodesBefore.nodes.filter((n) => PRE_EXISTING_NODES.includes(n.name)));
    const preCert = await readFile(join(master.ssldir, 'ca', 'signed', `${PRE_EXISTING_CERT}.pem`), 'utf8');
    const url = `https://127.0.0.1:${port}`;
    const auth = `Bearer ${setup.plan.psk}`;
    const counts = { cycles: 0, requests: 0, answered: 0, killedWithRequestsOpen: 0, adopted: 0, forgotten: 0 };

    /**
     * What an operator does with uncertain entries (docs/operations.md): look at the console /
     * CA, adopt what is there, forget what is not. Keeps the name pool usable.
     */
    const resolveAsAnOperator = async (): Promise<void> => {
      await sleep(2000); // orphaned rake/puppet processes of the killed espm finish first
      const ledger = await Ledger.open(join(setup.dir, 'var'));
      try {
        const nodes = new Set((await console.store()).nodes.map((n) => n.name));
        const certs = new Set((await readdir(join(master.ssldir, 'ca', 'signed'))).map((f) => f.replace(/\.pem$/, '')));
        for (const entry of ledger.list().filter((e) => e.state === 'uncertain')) {
          const there = entry.kind === 'node' ? nodes.has(entry.name) : certs.has(entry.name);
          if (there && entry.kind === 'certificate') {
            const pem = await readFile(join(master.ssldir, 'ca', 'signed', `${entry.name}.pem`), 'utf8');
            const fingerprint = certificateInfo(pem).fingerprint_sha256;
            await ledger.commit('certificate', entry.name, {
              record: { ...entry.certificate, fingerprint_sha256: fingerprint },
              receipt: { fingerprint_sha256: fingerprint },
            });
            counts.adopted += 1;
          } else if (there) {
            await ledger.commit(entry.kind, entry.name);
            counts.adopted += 1;
          } else {
            await ledger.remove(entry.kind, entry.name);
            counts.forgotten += 1;
          }
        }
      } finally {
        await ledger.close();
      }
    };

    for (let cycle = 0; cycle < CYCLES; cycle += 1) {
      const delay = pick(['0', '0', '40', '250']);
      const espm: ResultPromise = execa(process.execPath, [ESPM_WITH_FAULT_DELAY, '-c', setup.plan.configPath], {
        env: { ESPM_FAULT_DELAY_MS: delay },
        reject: false,
      });
      let out = '';
      espm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      const deadline = Date.now() + 15_000;
      while (!out.includes('"msg":"listening"')) {
        if (Date.now() > deadline || espm.exitCode !== null) throw new Error(`espm did not start in cycle ${cycle}: ${out.slice(-500)}`);
        await sleep(10);
      }
      const open: Array<Promise<unknown>> = [];
      for (let i = 0; i < 1 + Math.floor(Math.random() * 3); i += 1) {
        const name = pick(POOL);
        const op = pick(['create', 'create', 'delete', 'issue', 'issue', 'revoke']);
        const r = request(url);
        const call =
          op === 'create'
            ? r.post('/v1/nodes').send({ name, groups: ['no mcollective'], classes: ['ntp'], parameters: pick([{}, { role: 'web' }]) })
            : op === 'delete'
              ? r.delete(`/v1/nodes/${name}`)
              : op === 'issue'
                ? r.post('/v1/certificates').send({ certname: name })
                : r.delete(`/v1/certificates/${name}`);
        counts.requests += 1;
        open.push(
          call
            .ca(setup.plan.certificate)
            .set('Authorization', auth)
            .then(() => {
              counts.answered += 1;
            })
            .catch(() => undefined),
        );
      }
      await sleep(Math.random() * 900);
      if (counts.answered < counts.requests) counts.killedWithRequestsOpen += 1;
      espm.kill('SIGKILL');
      await espm;
      await Promise.all(open);
      counts.cycles += 1;
      if (cycle % 20 === 19) await resolveAsAnOperator();
    }
    // Let orphaned rake/puppet processes of the last cycle finish, as a restart would.
    await sleep(3000);

    const listed = await execa(ESPM, ['ledger', 'list', '--json', '-c', setup.plan.configPath]);
    const entries = JSON.parse(listed.stdout) as Array<{ kind: string; name: string; state: string }>;
    const ledger = (kind: string) => new Map(entries.filter((e) => e.kind === kind).map((e) => [e.name, e.state]));
    const ledgerNodes = ledger('node');
    const ledgerCerts = ledger('certificate');
    const store = await console.store();
    const consoleNodes = new Set(store.nodes.map((n) => n.name));
    const signed = new Set((await readdir(join(master.ssldir, 'ca', 'signed'))).map((f) => f.replace(/\.pem$/, '')));

    // Every node/cert espm created that the backend has is in the ledger (present, uncertain or deleting).
    for (const name of POOL) {
      if (consoleNodes.has(name)) expect([name, ledgerNodes.get(name) ?? 'missing from the ledger']).toEqual([name, expect.stringMatching(/^(present|uncertain|deleting)$/)]);
      if (signed.has(name)) expect([name, ledgerCerts.get(name) ?? 'missing from the ledger']).toEqual([name, expect.stringMatching(/^(present|uncertain|deleting)$/)]);
    }
    // Every present entry exists in the backend.
    for (const [name, state] of ledgerNodes) if (state === 'present') expect([name, consoleNodes.has(name)]).toEqual([name, true]);
    for (const [name, state] of ledgerCerts) if (state === 'present') expect([name, signed.has(name)]).toEqual([name, true]);
    // Nothing pending survives a restart.
    expect(entries.filter((e) => e.state === 'pending')).toEqual([]);
    // Nothing espm did not create was deleted or revoked.
    expect(JSON.stringify(store.nodes.filter((n) => PRE_EXISTING_NODES.includes(n.name)))).toBe(preExisting);
    expect(await readFile(join(master.ssldir, 'ca', 'signed', `${PRE_EXISTING_CERT}.pem`), 'utf8')).toBe(preCert);
    const preSerial = (await execa('openssl', ['x509', '-noout', '-serial'], { input: preCert })).stdout.split('=')[1]!.replace(/^0+/, '');
    expect(await revokedSerials(await readFile(join(master.ssldir, 'ca', 'ca_crl.pem'), 'utf8'))).not.toContain(preSerial);
    const deleted = (await console.invocations()).filter((i) => i.event === 'start' && (i.tasks ?? []).includes('node:del')).map((i) => i.args?.['name']);
    for (const name of deleted) expect(POOL).toContain(name);
    const cleaned = (await readFile(join(master.dir, 'invocations.log'), 'utf8'))
      .split('\n')
      .filter((l) => l.includes('"event":"start"'))
      .map((l) => JSON.parse(l) as { action: string; argv: string[] })
      .filter((e) => e.action === 'clean' || e.action === 'revoke')
      .map((e) => e.argv[2]);
    for (const name of cleaned) expect(POOL).toContain(name);

    const states = (m: Map<string, string>) => [...m.values()].reduce<Record<string, number>>((acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }), {});
    globalThis.console.log(
      `crash consistency: ${JSON.stringify({
        ...counts,
        console_nodes_from_pool: POOL.filter((n) => consoleNodes.has(n)).length,
        ca_certs_from_pool: POOL.filter((n) => signed.has(n)).length,
        ledger_nodes: states(ledgerNodes),
        ledger_certificates: states(ledgerCerts),
        node_deletes_run: deleted.length,
        cert_cleans_run: cleaned.length,
      })}`,
    );
    expect(counts.cycles).toBe(CYCLES);
  }, 900_000);
});
