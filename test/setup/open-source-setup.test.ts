/**
 * espm_setup on an open-source Puppet master (issue #14): detection against Debian's package
 * layout (a file-system tree under a temp directory, `rootedProbe`) writes a config that works
 * there — `enc` + `puppetserver-api`, a sample groups file, the classification file's
 * directory — and bin/espm started with it answers `GET /v1/groups` with 200. It never writes a
 * classifier that cannot run on the master (no dashboard-rake: that is what issue #14 found).
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import ini from 'ini';
import { loadConfig, parseConfig } from '../../src/config.js';
import { detectBackends, rootedProbe, type BackendDetection } from '../../src/setup/detect.js';
import { previousEnc } from '../../src/setup/enc.js';
import { planSetup, SAMPLE_GROUPS_FILE, writeSetup } from '../../src/setup/setup.js';
import { ESPM_BIN, startEspmProcess, stopEspmProcess, type EspmProcess } from '../support/launch-story.js';
import { freePort } from '../support/net.js';
import { expectStatus, pinnedClient } from '../support/pinned-client.js';

describe('espm_setup on Debian\'s open-source puppetserver packages', () => {
  let work: string;
  let espm: EspmProcess | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'espm-debian-setup-'));
    const root = join(work, 'root');
    for (const dir of ['usr/bin', 'etc/puppet', 'etc/puppet/puppetserver/conf.d', 'var/lib/puppet/ssl']) await mkdir(join(root, dir), { recursive: true });
    for (const bin of ['puppetserver', 'puppet']) await writeFile(join(root, 'usr/bin', bin), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    await writeFile(join(root, 'etc/puppet/puppet.conf'), '[server]\n');
  });
  afterAll(async () => {
    if (espm !== undefined) await stopEspmProcess(espm);
    await rm(work, { recursive: true, force: true });
  }, 30_000);

  it('writes enc + puppetserver-api with the Debian paths, a sample groups file, and the Puppet steps; /v1/groups answers 200', async () => {
    const detection = detectBackends(rootedProbe(join(work, 'root')));
    expect(detection.found).toBe('open-source');
    const port = await freePort();
    const plan = planSetup(
      { configDir: join(work, 'etc'), certDir: join(work, 'etc', 'certs'), stateDir: join(work, 'var'), host: '127.0.0.1', port, hostname: 'localhost', ips: ['127.0.0.1'], espmBin: ESPM_BIN },
      detection,
    );
    await writeSetup(plan);

    const config = loadConfig(plan.configPath);
    expect(config.classifier).toMatchObject({
      backend: 'enc',
      groupsFile: join(work, 'etc', 'groups.yaml'),
      classificationFile: join(work, 'enc', 'classification.json'),
      puppet: '/usr/bin/puppet',
      puppetConf: '/etc/puppet/puppet.conf',
      fallbackEnc: [],
    });
    expect(config.ca).toMatchObject({ backend: 'puppetserver-api', puppetserver: '/usr/bin/puppetserver', config: '/etc/puppet/puppet.conf', ssldir: '/var/lib/puppet/ssl' });
    expect(await readFile(join(work, 'etc', 'groups.yaml'), 'utf8')).toBe(SAMPLE_GROUPS_FILE);
    expect((await stat(join(work, 'enc'))).mode & 0o777).toBe(0o750);
    // bin/espm-enc, the sh front beside bin/espm, with the classification file only (the fallback is fallback_enc's alone).
    expect(plan.enc!.instructions).toContain(`    node_terminus = exec\n    external_nodes = ${join(dirname(ESPM_BIN), 'espm-enc')} -f ${join(work, 'enc', 'classification.json')}\n`);
    expect(plan.enc!.instructions).toContain('/etc/puppet/puppetserver/conf.d/auth.conf');
    expect(plan.enc!.instructions).toContain('match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }');

    espm = await startEspmProcess(plan.configPath, 30_000);
    const call = pinnedClient({ port, certificate: plan.certificate, psk: plan.psk });
    const groups = await call('GET', '/v1/groups');
    expectStatus(groups, 200, 'GET /v1/groups');
    expect(groups.body).toEqual({ groups: ['default'] });
    const status = await call('GET', '/v1/status');
    expect(status.body).toMatchObject({ classifier: { backend: 'enc' }, ca: { backend: 'puppetserver-api' } });
  }, 60_000);
  describe('the site\'s previous ENC (puppet.conf) becomes [classifier] fallback_enc; external_nodes names only the classification file', () => {
    const options = () => ({ configDir: join(work, 'prev'), certDir: join(work, 'prev'), stateDir: join(work, 'prev', 'var'), host: '127.0.0.1', port: 8141, hostname: 'localhost', ips: [], espmBin: ESPM_BIN });
    /** A detection on the Debian tree whose puppet.conf has this text. */
    const withPuppetConf = async (name: string, text: string): Promise<BackendDetection> => {
      const conf = join(work, `${name}.conf`);
      await writeFile(conf, text);
      const detection = detectBackends(rootedProbe(join(work, 'root')));
      return { ...detection, classifier: { ...detection.classifier, config: conf } };
    };

    it('node_terminus = exec with an external_nodes command: that command (words joined by one space), and only `-f FILE` on the line printed', async () => {
      const detection = await withPuppetConf('exec', '[main]\nexternal_nodes = /usr/local/bin/old-enc   --site  x\n[server]\nnode_terminus = exec\n');
      const plan = planSetup(options(), detection);
      const written = parseConfig(ini.parse(plan.files.find((f) => f.path === plan.configPath)!.content), plan.configPath);
      expect(written.classifier).toMatchObject({ backend: 'enc', fallbackEnc: ['/usr/local/bin/old-enc', '--site', 'x'] });
      expect(plan.enc!.instructions).toContain('fallback_enc = /usr/local/bin/old-enc --site x (the previous ENC in');
      const line = plan.enc!.instructions.split('\n').find((l) => l.includes('external_nodes ='));
      expect(line).toBe(`    external_nodes = ${join(dirname(ESPM_BIN), 'espm-enc')} -f ${join(work, 'prev', 'enc', 'classification.json')}`);
    });

    it.each([
      ['no ENC', '[server]\nautosign = true\n'],
      ['external_nodes without node_terminus = exec', '[server]\nexternal_nodes = /usr/local/bin/old-enc\n'],
      ['the default `none`', '[server]\nnode_terminus = exec\nexternal_nodes = none\n'],
      ['espm enc already (a setup after an early version)', `[server]\nnode_terminus = exec\nexternal_nodes = ${ESPM_BIN} enc -f /opt/espm/enc/classification.json\n`],
      ['espm-enc already (a second setup)', `[server]\nnode_terminus = exec\nexternal_nodes = ${join(dirname(ESPM_BIN), 'espm-enc')} -f /opt/espm/enc/classification.json -t 10 /usr/local/bin/old-enc\n`],
    ])('%s: no fallback_enc, `classes: {}` for other nodes is said', async (name, text) => {
      const detection = await withPuppetConf(name.replace(/\W+/g, '-'), text);
      expect(previousEnc(detection.classifier.config!)).toBeUndefined();
      const plan = planSetup(options(), detection);
      expect(plan.files.find((f) => f.path === plan.configPath)!.content).toMatch(/^fallback_enc = *$/m);
      expect(plan.enc!.instructions).toContain("so they get 'classes: {}'");
    });

    it('an unreadable puppet.conf: no fallback', () => {
      expect(previousEnc(join(work, 'missing.conf'))).toBeUndefined();
    });
  });
});
