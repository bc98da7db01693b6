/**
 * What only the puppet-cert backend does (the contract is in contract.test.ts): `puppet cert`
 * 2.7 prints `err:` lines and exits 0, so success is judged by the files; a clean of a
 * revoked name revokes it again (its serial stays in the inventory). Against the puppet cert
 * 2.7.12 double under ruby, over HTTPS.
 */
import { findRake } from '../support/console.js';
import { opensslChecks, PuppetCertMaster } from '../support/ca.js';
import { describeWith } from '../support/components.js';
import { apiClient, startEspm, type RunningEspm } from '../support/espm.js';
import { CountingRunner } from '../support/runner.js';

// The double is Ruby; rake's presence means ruby is there too.
const rake = await findRake();

describeWith('ruby (Debian packages ruby, rake) for the puppet cert 2.7.12 double', rake === undefined ? 'rake/ruby not on PATH' : undefined)(
  'puppet-cert: 2.7 quirks',
  () => {
    let master: PuppetCertMaster;
    let espm: RunningEspm;
    let runner: CountingRunner;
    let api: ReturnType<typeof apiClient>;

    beforeEach(async () => {
      master = await PuppetCertMaster.create();
      runner = new CountingRunner();
      espm = await startEspm({ ca: master.caConfig() }, { runner });
      api = apiClient(espm);
    });
    afterEach(async () => {
      await espm.stop();
      await master.remove();
    });

    it("an err: line with exit 0 and no certificate → 502 with the tool's message; nothing recorded; a retry works", async () => {
      await master.setKnobs({ fault: { generate: { exit: 0, stdout: 'err: Could not call generate: Permission denied - /etc/puppetlabs/puppet/ssl/ca/serial\n' } } });
      const res = await api.post('/v1/certificates', { certname: 'b.example.test' });
      expect(res.status).toBe(502);
      expect(res.body.code).toBe('backend_failed');
      expect(res.body.detail).toContain('Permission denied - /etc/puppetlabs/puppet/ssl/ca/serial');
      expect((await api.get('/v1/certificates/b.example.test')).status).toBe(404);
      await master.setKnobs({});
      expect((await api.post('/v1/certificates', { certname: 'b.example.test' })).status).toBe(201);
    });

    it('an err: line after the certificate was written (autosign.conf) is still a success, judged by the files', async () => {
      await master.setKnobs({ autosign_err: true });
      const res = await api.post('/v1/certificates', { certname: 'c.example.test' });
      expect(res.status).toBe(201);
      expect((await opensslChecks(res.body)).verify).toContain('OK');
    });

    it("a second POST of espm's own name → 409 without spawning puppet", async () => {
      expect((await api.post('/v1/certificates', { certname: 'a.example.test' })).status).toBe(201);
      const before = runner.count;
      expect((await api.post('/v1/certificates', { certname: 'a.example.test' })).status).toBe(409);
      expect(runner.count).toBe(before);
    });
  },
);
