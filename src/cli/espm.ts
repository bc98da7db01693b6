/**
 * `espm`: the daemon's command line. Parses arguments (commander), loads the config, runs
 * the server in the foreground until SIGTERM/SIGINT. Exit codes: 0 stopped cleanly,
 * 1 failed at run time (e.g. the port is taken), 2 configuration error.
 *
 * @packageDocumentation
 */
import { Command } from 'commander';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { EspmServer, runUntilSignalled } from '../server.js';
import { VERSION } from '../version.js';

/** Exit status for a configuration error (unreadable, invalid or insecure config). */
export const EXIT_CONFIG_ERROR = 2;
/** Exit status for any other failure. */
export const EXIT_FAILURE = 1;

/**
 * Builds the `espm` command.
 *
 * @returns a commander program; `parseAsync(argv)` runs it and sets `process.exitCode`
 */
export function espmCommand(): Command {
  const program = new Command('espm')
    .description(
      'Puppet master daemon for a cloud management platform: lists console node groups and classes, ' +
        'creates and deletes the nodes it owns in the console ENC, pre-signs and revokes their certificates.\n' +
        'Runs in the foreground and logs JSON lines to stdout. SIGHUP reloads the config; SIGTERM/SIGINT stop it.',
    )
    .version(VERSION, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .option('-c, --config <path>', 'config file written by espm_setup', DEFAULT_CONFIG_PATH)
    .addHelpText(
      'after',
      '\nExit status: 0 stopped by SIGTERM/SIGINT, 1 run-time failure, 2 configuration error.\n' +
        'Set up a new install with espm_setup; see etc/espm.ini.example for every config key.',
    )
    .action(async (options: { config: string }) => {
      process.exitCode = await runDaemon(options.config);
    });
  return program;
}

/**
 * Loads the config and serves until a stop signal.
 *
 * @param configPath - path of espm.ini
 * @returns the exit status
 */
async function runDaemon(configPath: string): Promise<number> {
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
      state_dir: config.state.dir,
    },
    'starting espm',
  );
  let server: EspmServer;
  try {
    server = await EspmServer.start(config, { logger });
  } catch (err) {
    const message = (err as Error).message;
    logger.fatal({ error: message }, 'cannot start');
    console.error(`espm: ${message}`);
    return err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE;
  }
  return runUntilSignalled(server, logger);
}
