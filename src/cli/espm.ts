/**
 * `espm`: the daemon's command line. Parses arguments (commander), loads the config, runs
 * the server in the foreground until SIGTERM/SIGINT. Exit codes: 0 stopped cleanly,
 * 1 failed at run time (e.g. the port is taken), 2 configuration error.
 *
 * @packageDocumentation
 */
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../config.js';
import { createLogger } from '../logger.js';
import { ENTRY_KINDS, Ledger, LedgerStateError, type EntryKind, type LedgerEntry } from '../ownership/ledger.js';
import { EspmServer, loadTlsMaterial, runUntilSignalled } from '../server.js';
import { VERSION } from '../version.js';

/** Exit status for a configuration error (unreadable, invalid or insecure config). */
export const EXIT_CONFIG_ERROR = 2;
/** Exit status for any other failure. */
export const EXIT_FAILURE = 1;

/**
 * Hooks a test harness may pass to the daemon (production passes none; none is read from the
 * environment). See `ComposeOptions` in src/compose.ts.
 */
export interface DaemonHooks {
  /** Called after every successful backend change, before the ledger records it. */
  afterBackend?: () => Promise<void>;
}

/**
 * Builds the `espm` command.
 *
 * @param hooks - test hooks for the daemon (test/support/espm-fault-delay.mjs); default none
 * @returns a commander program; `parseAsync(argv)` runs it and sets `process.exitCode`
 */
export function espmCommand(hooks: DaemonHooks = {}): Command {
  const program = new Command('espm')
    .description(
      'Puppet master daemon for a cloud management platform: lists console node groups and classes, ' +
        'creates and deletes the nodes it owns in the console ENC, pre-signs and revokes their certificates.\n' +
        'Runs in the foreground and logs JSON lines to stdout. SIGHUP reloads the config; SIGTERM/SIGINT stop it.',
    )
    .version(VERSION, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .option('-c, --config <path>', 'config file written by espm_setup', DEFAULT_CONFIG_PATH)
    .option('--check-config', 'validate the config (and the certificate and key it names), then exit')
    .addHelpText(
      'after',
      '\nExit status: 0 stopped by SIGTERM/SIGINT, 1 run-time failure, 2 configuration error.\n' +
        'Set up a new install with espm_setup; see etc/espm.ini.example for every config key.',
    )
    .action(async (options: { config: string; checkConfig?: boolean }) => {
      process.exitCode = options.checkConfig === true ? checkConfig(options.config) : await runDaemon(options.config, hooks);
    });
  program.addCommand(ledgerCommand());
  program.addCommand(encCommand());
  program.addCommand(autosignCommand());
  return program;
}

/**
 * A subcommand bin/espm runs itself, before loading this module, with its own argument parsing
 * (no npm package: it runs on every catalog compile or CSR); this entry is for `espm --help` and
 * callers of espmCommand(). Its module is imported only when run.
 *
 * @param name - the subcommand (`enc`, `autosign`)
 * @param description - its `--help` line
 * @param usage - its arguments, as `--help` shows them
 * @param run - imports its module and runs it on the arguments; resolves the exit status
 */
function passThroughCommand(name: string, description: string, usage: string, run: (args: string[]) => Promise<number>): Command {
  return new Command(name)
    .description(description)
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]', usage)
    .action(async (args: string[]) => {
      process.exitCode = await run(args);
    });
}

/** `espm enc`: puppetserver's exec ENC (src/cli/enc.ts). */
function encCommand(): Command {
  return passThroughCommand(
    'enc',
    'exec ENC for puppetserver ([classifier] backend = enc): prints the ENC YAML of a node espm created, or runs fallback_enc (puppetserver runs it through bin/espm-enc, which runs the fallback itself for other names)',
    '[-f CLASSIFICATION_FILE | -c ESPM_INI] CERTNAME',
    async (args) => (await import('./enc.js')).runEnc(args),
  );
}

/** `espm autosign`: the master's policy executable for token signing (src/cli/autosign.ts). */
function autosignCommand(): Command {
  return passThroughCommand(
    'autosign',
    "policy executable for puppetserver's [server] autosign (token signing): CSR on stdin, exit 0 = sign; asks the espm daemon",
    '[-s SOCKET] CERTNAME',
    async (args) => (await import('./autosign.js')).runAutosign(args),
  );
}

/**
 * Runs `task` with the ledger of the config's state dir open (and locked), offline. What
 * opening logs (a format-1 ledger migrated, creates left uncertain by a crash) goes to stderr.
 */
async function withLedger(command: Command, task: (ledger: Ledger) => Promise<number>): Promise<void> {
  const { config: configPath } = command.optsWithGlobals<{ config: string }>();
  let ledger: Ledger;
  try {
    const config = loadConfig(configPath);
    const logger = createLogger({ level: 'info', format: config.log.format, destination: process.stderr });
    ledger = await Ledger.open(config.state.dir, { logger });
  } catch (err) {
    console.error(`espm ledger: ${(err as Error).message}`);
    process.exitCode = err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE;
    return;
  }
  try {
    process.exitCode = await task(ledger);
  } catch (err) {
    if (!(err instanceof LedgerStateError)) throw err;
    console.error(`espm ledger: ${err.message}`);
    process.exitCode = EXIT_FAILURE;
  } finally {
    await ledger.close();
  }
}

/** One line of `espm ledger list`: kind, name, state, created at, and the pending steps when any (tab-separated). */
function listLine(e: LedgerEntry): string {
  const fields = [e.kind, e.name, e.state, e.created_at];
  if (e.pending_steps.length > 0) fields.push(`pending: ${e.pending_steps.join(',')}`);
  return fields.join('\t');
}

function parseKind(value: string): EntryKind {
  if (!(ENTRY_KINDS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`must be one of: ${ENTRY_KINDS.join(', ')}`);
  }
  return value as EntryKind;
}

/**
 * `espm ledger list|adopt|forget`: the operator's view of what espm owns, for resolving
 * entries left uncertain by a crash. Runs offline: it takes the state directory's lock, so
 * it refuses while the daemon runs.
 */
function ledgerCommand(): Command {
  const ledger = new Command('ledger')
    .description(
      'Inspect and resolve the ledger of nodes and certificates espm created (offline: stop the daemon first).',
    )
    .addHelpText(
      'after',
      '\nAn entry is "uncertain" when a create was interrupted (crash, timeout): espm then refuses to delete\n' +
        'or revoke it. Check the console / CA by hand, then either adopt it (espm created it: it may delete it)\n' +
        'or forget it (espm did not create it, or it is gone: espm will never touch it).',
    );
  ledger
    .command('list')
    .description('list every entry: kind, name, state, created at, pending steps (when any)')
    .option('--json', 'print the entries as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withLedger(command, async (l) => {
        const entries = l.list();
        if (options.json === true) {
          console.log(JSON.stringify(entries, null, 2));
        } else if (entries.length === 0) {
          console.log('(the ledger is empty)');
        } else {
          for (const e of entries) console.log(listLine(e));
        }
        return 0;
      });
    });
  ledger
    .command('adopt')
    .description('mark an uncertain entry present: espm created it and may delete or revoke it (not a deleted one)')
    .argument('<kind>', `${ENTRY_KINDS.join(' or ')}`, parseKind)
    .argument('<name>', 'node name or certname')
    .action(async (kind: EntryKind, name: string, _options: unknown, command: Command) => {
      await withLedger(command, async (l) => {
        const entry = l.get(kind, name);
        if (entry === undefined) {
          console.error(`espm ledger: no ${kind} ${name} in the ledger`);
          return EXIT_FAILURE;
        }
        await l.commit(kind, name);
        console.log(`${kind} ${name}: ${entry.state} → present`);
        return 0;
      });
    });
  ledger
    .command('forget')
    .description('remove an entry: espm will never delete or revoke that name')
    .argument('<kind>', `${ENTRY_KINDS.join(' or ')}`, parseKind)
    .argument('<name>', 'node name or certname')
    .action(async (kind: EntryKind, name: string, _options: unknown, command: Command) => {
      await withLedger(command, async (l) => {
        if (!(await l.remove(kind, name))) {
          console.error(`espm ledger: no ${kind} ${name} in the ledger`);
          return EXIT_FAILURE;
        }
        console.log(`${kind} ${name}: forgotten`);
        return 0;
      });
    });
  return ledger;
}

/**
 * `--check-config`: loads and validates the config and the TLS certificate and key it names,
 * prints a one-line summary (stdout) or the problem (stderr).
 *
 * @param configPath - path of espm.ini
 * @returns 0 when usable, {@link EXIT_CONFIG_ERROR} otherwise
 */
function checkConfig(configPath: string): number {
  try {
    const config = loadConfig(configPath);
    loadTlsMaterial(config);
    console.log(
      `${config.path}: OK (listen ${config.server.host}:${config.server.port}, classifier ${config.classifier.backend}, ` +
        `ca ${config.ca.backend}, state ${config.state.dir})`,
    );
    return 0;
  } catch (err) {
    console.error(`espm: ${(err as Error).message}`);
    return err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE;
  }
}

/** The files and binaries the configured backends use, for the start-up log line. */
function backendPaths(config: Config): Record<string, string | undefined> {
  const classifier =
    config.classifier.backend === 'dashboard-rake'
      ? { rake: config.classifier.rake, rakefile: config.classifier.rakefile, console_dir: config.classifier.cwd }
      : {};
  const ca =
    config.ca.backend === 'puppet-cert'
      ? { puppet: config.ca.puppet, puppet_conf: config.ca.config, ssldir: config.ca.ssldir }
      : config.ca.backend === 'puppetserver-ca'
        ? { puppetserver: config.ca.puppetserver, puppet_conf: config.ca.config, ssldir: config.ca.ssldir }
        : config.ca.backend === 'puppetserver-api'
          ? { puppet_conf: config.ca.config, ca_api_url: config.ca.apiUrl, ca_api_cert: config.ca.apiCert, ca_api_ca: config.ca.apiCa }
          : {};
  return { ...classifier, ...ca, tls_cert: config.server.cert };
}

/**
 * Loads the config and serves until a stop signal.
 *
 * @param configPath - path of espm.ini
 * @param hooks - test hooks passed through to the daemon
 * @returns the exit status
 */
async function runDaemon(configPath: string, hooks: DaemonHooks): Promise<number> {
  let config;
  try {
    config = loadConfig(configPath);
  } catch (err) {
    console.error(`espm: ${(err as Error).message}`);
    return err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE;
  }
  const logger = createLogger(config.log);
  logger.info(
    {
      version: VERSION,
      config: config.path,
      classifier: config.classifier.backend,
      ca: config.ca.backend,
      paths: backendPaths(config),
      state_dir: config.state.dir,
      node: process.version,
    },
    'starting espm',
  );
  let server: EspmServer;
  try {
    server = await EspmServer.start(config, { logger, ...(hooks.afterBackend === undefined ? {} : { afterBackend: hooks.afterBackend }) });
  } catch (err) {
    const message = (err as Error).message;
    logger.fatal({ error: message }, 'cannot start');
    console.error(`espm: ${message}`);
    return err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE;
  }
  return runUntilSignalled(server, logger);
}
