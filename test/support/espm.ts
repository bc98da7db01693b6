/**
 * Test support: a freshly set-up espm (temp dir, PSK, self-signed certificate, config),
 * started in-process on a free port with its log lines captured.
 */
import { mkdtemp, rm, writeFile, readFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ini from 'ini';
import request from 'supertest';
import { loadConfig, type Config } from '../../src/config.js';
import type { CommandRunner } from '../../src/exec/command.js';
import { recordLogLine, recordSecret } from './log-scan.js';
import { createLogger } from '../../src/logger.js';
import { EspmServer } from '../../src/server.js';
import { detectBackends, type DetectionProbe } from '../../src/setup/detect.js';
import { planSetup, writeSetup, type SetupPlan } from '../../src/setup/setup.js';

/** A probe that finds no Puppet: setup writes the PE defaults. */
export const emptyProbe: DetectionProbe = { isExecutable: () => false, exists: () => false, searchPath: '' };

/** Captured log lines (JSON strings) of a logger. */
export class LogCapture {
  readonly lines: string[] = [];
  write(line: string): void {
    this.lines.push(line);
    recordLogLine(line);
  }
  /** Parsed log records. */
  records(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  text(): string {
    return this.lines.join('');
  }
}

/** A temp directory holding what espm_setup writes. */
export interface SetUpDir {
  dir: string;
  plan: SetupPlan;
  /** Rewrites keys of espm.ini (section → key → value), keeping mode 0600. */
  editConfig(changes: Record<string, Record<string, string | number | boolean>>): Promise<void>;
  remove(): Promise<void>;
}

/** Runs espm_setup's plan into a new temp dir (hostname localhost, SAN IP 127.0.0.1). */
export async function setUpDir(): Promise<SetUpDir> {
  const dir = await mkdtemp(join(tmpdir(), 'espm-test-'));
  const plan = planSetup(
    {
      configDir: dir,
      certDir: join(dir, 'certs'),
      stateDir: join(dir, 'var'),
      host: '127.0.0.1',
      port: 8443,
      hostname: 'localhost',
      ips: ['127.0.0.1'],
    },
    detectBackends(emptyProbe),
  );
  await writeSetup(plan);
  recordSecret(plan.psk);
  return {
    dir,
    plan,
    async editConfig(changes) {
      const parsed = ini.parse(await readFile(plan.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
      for (const [section, keys] of Object.entries(changes)) parsed[section] = { ...parsed[section], ...keys };
      await writeFile(plan.configPath, ini.stringify(parsed), { mode: 0o600 });
      await chmod(plan.configPath, 0o600);
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A running in-process espm. */
export interface RunningEspm {
  setup: SetUpDir;
  config: Config;
  server: EspmServer;
  logs: LogCapture;
  /** `https://127.0.0.1:<port>` */
  url: string;
  /** `Bearer <psk>` */
  authorization: string;
  stop(): Promise<void>;
}

/**
 * Sets up a temp dir (or reuses `options.setup`), applies `changes` to its config, and
 * starts espm on a free port. `stop()` removes the temp dir unless it was passed in.
 */
export async function startEspm(
  changes: Record<string, Record<string, string | number | boolean>> = {},
  options: { runner?: CommandRunner; setup?: SetUpDir } = {},
): Promise<RunningEspm> {
  const setup = options.setup ?? (await setUpDir());
  if (Object.keys(changes).length > 0) await setup.editConfig(changes);
  const config = loadConfig(setup.plan.configPath);
  const logs = new LogCapture();
  const server = await EspmServer.start(config, {
    logger: createLogger({ level: 'debug', format: 'json', destination: logs }),
    port: 0,
    ...(options.runner === undefined ? {} : { runner: options.runner }),
  });
  return {
    setup,
    config,
    server,
    logs,
    url: `https://127.0.0.1:${server.address().port}`,
    authorization: `Bearer ${setup.plan.psk}`,
    async stop() {
      await server.stop(1000);
      if (options.setup === undefined) await setup.remove();
    },
  };
}

/** Authenticated supertest calls against a running espm, pinning its certificate. */
export function apiClient(espm: RunningEspm) {
  const cert = espm.setup.plan.certificate;
  return {
    get: (path: string) => request(espm.url).get(path).ca(cert).set('Authorization', espm.authorization),
    post: (path: string, body: unknown) =>
      request(espm.url).post(path).ca(cert).set('Authorization', espm.authorization).send(body as object),
    delete: (path: string) => request(espm.url).delete(path).ca(cert).set('Authorization', espm.authorization),
  };
}
