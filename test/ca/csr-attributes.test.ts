/**
 * The per-call puppet.conf + csr_attributes of the puppetserver-ca adapter
 * (src/ca/csr-attributes.ts): the master's settings kept, `[server] csr_attributes` last (ca-cli
 * merges agent < main < master < server), the extension requests by OID, files private and
 * gone after the call whatever it did; nothing written without extensions.
 */
import { access, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { withCsrAttributes } from '../../src/ca/csr-attributes.js';
import { resolveExtensions } from '../../src/ca/trusted-extensions.js';

let dir: string;
let masterConf: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'espm-csr-attr-test-'));
  masterConf = join(dir, 'puppet.conf');
  await writeFile(masterConf, '[main]\nssldir = /srv/ssl\n[server]\ncsr_attributes = /etc/site/csr_attributes.yaml');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('withCsrAttributes', () => {
  it('gives a private copy of the master\'s puppet.conf whose last [server] csr_attributes asks for the extensions, removed afterwards', async () => {
    const extensions = resolveExtensions({ pp_role: 'web', '1.3.6.1.4.1.34380.1.2.1': '007' });
    const seen = await withCsrAttributes(masterConf, extensions, async (conf) => {
      const text = await readFile(conf, 'utf8');
      const attributesPath = /\[server\]\ncsr_attributes = (\S+)\n$/.exec(text)?.[1];
      expect(text.startsWith('[main]\nssldir = /srv/ssl\n[server]\ncsr_attributes = /etc/site/csr_attributes.yaml\n')).toBe(true);
      expect(attributesPath).toBe(join(dirname(conf), 'csr_attributes.yaml'));
      expect(parse(await readFile(attributesPath!, 'utf8'))).toEqual({
        extension_requests: { '1.3.6.1.4.1.34380.1.1.13': 'web', '1.3.6.1.4.1.34380.1.2.1': '007' },
      });
      expect((await stat(dirname(conf))).mode & 0o777).toBe(0o700);
      expect((await stat(conf)).mode & 0o777).toBe(0o600);
      return conf;
    });
    await expect(access(dirname(seen))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('removes the files when the call fails', async () => {
    let used = '';
    await expect(
      withCsrAttributes(masterConf, resolveExtensions({ pp_role: 'web' }), async (conf) => {
        used = conf;
        throw new Error('generate failed');
      }),
    ).rejects.toThrow('generate failed');
    await expect(access(dirname(used))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('without extensions passes the master\'s puppet.conf itself', async () => {
    expect(await withCsrAttributes(masterConf, [], async (conf) => conf)).toBe(masterConf);
  });
});
