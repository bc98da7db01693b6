/**
 * Soak (issue #6, not run in CI): mixed traffic against one espm (sandbox backends, no Puppet
 * needed) for a bounded time, sampling the daemon's RSS and open file descriptors; prints the
 * samples and the start/end figures. Loopback only.
 *
 *   npm run build && npx tsx bench/soak.ts [--minutes 10] [--concurrency 8]
 */
import { once } from 'node:events';
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { execa } from 'execa';
import ini from 'ini';
import request from 'supertest';
import { writeFile } from 'node:fs/promises';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** RSS (kB) and open fds of a process, from /proc. */
async function sample(pid: number): Promise<{ rssKb: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssKb, fds };
}

async function main(): Promise<void> {
  const options = new Command('soak')
    .option('--minutes <n>', 'duration, minutes', '10')
    .option('--concurrency <n>', 'parallel clients', '8')
    .parse()
    .opts<{ minutes: string; concurrency: string }>();
  const durationMs = Number(options.minutes) * 60_000;
  const dir = await mkdtemp(join(tmpdir(), 'espm-soak-'));
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  const setup = await execa(join(ROOT, 'bin/espm_setup'), ['-d', dir, '--state-dir', join(dir, 'var'), '--hostname', 'localhost', '--ip', '127.0.0.1', '--host', '127.0.0.1', '-p', String(port)]);
  const lines = setup.stdout.split('\n');
  const psk = lines[1]!;
  const cert = `${lines.slice(4, lines.indexOf('-----END CERTIFICATE-----') + 1).join('\n')}\n`;
  const config = ini.parse(await readFile(join(dir, 'espm.ini'), 'utf8')) as Record<string, Record<string, unknown>>;
  config['classifier'] = { ...config['classifier'], backend: 'sandbox' };
  config['ca'] = { ...config['ca'], backend: 'sandbox' };
  config['log'] = { ...config['log'], level: 'warn' };
  await writeFile(join(dir, 'espm.ini'), ini.stringify(config), { mode: 0o600 });
  const espm = execa(join(ROOT, 'bin/espm'), ['-c', join(dir, 'espm.ini')], { reject: false });
  await new Promise((r) => setTimeout(r, 1500));
  const url = `https://127.0.0.1:${port}`;
  const call = (m: 'get' | 'post' | 'delete', path: string, body?: object) => {
    const r = request(url)[m](path).ca(cert).set('Authorization', `Bearer ${psk}`);
    return body === undefined ? r : r.send(body);
  };
  const start = await sample(espm.pid!);
  const samples = [{ t_s: 0, ...start }];
  const deadline = Date.now() + durationMs;
  let requests = 0;
  let errors = 0;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; Date.now() < deadline; i += 1) {
      const name = `soak-${w}-${i % 50}.example.test`;
      const steps = [
        () => call('get', '/v1/groups'),
        () => call('get', '/v1/classes?refresh=true'),
        () => call('post', '/v1/nodes', { name, groups: ['default'], classes: ['ntp'], parameters: { role: 'soak' } }),
        () => call('post', '/v1/certificates', { certname: name }),
        () => call('get', `/v1/nodes/${name}`),
        () => call('delete', `/v1/nodes/${name}`),
        () => call('delete', `/v1/certificates/${name}`),
        () => request(url).get('/v1/status').ca(cert).set('Authorization', 'Bearer wrong'),
      ];
      for (const step of steps) {
        requests += 1;
        const res = await step().catch(() => undefined);
        if (res === undefined || res.status >= 500) errors += 1;
      }
    }
  };
  const sampler = setInterval(() => {
    void sample(espm.pid!).then((s) => samples.push({ t_s: Math.round((Date.now() - (deadline - durationMs)) / 1000), ...s }));
  }, 10_000);
  await Promise.all(Array.from({ length: Number(options.concurrency) }, (_, w) => worker(w)));
  clearInterval(sampler);
  await new Promise((r) => setTimeout(r, 2000));
  const end = await sample(espm.pid!);
  espm.kill('SIGTERM');
  await espm;
  await rm(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ minutes: Number(options.minutes), requests, server_errors: errors, start, end, samples }, null, 2));
  console.log(`RSS ${start.rssKb} kB → ${end.rssKb} kB; fds ${start.fds} → ${end.fds}`);
}

await main();
