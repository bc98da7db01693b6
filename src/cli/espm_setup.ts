/**
 * `espm_setup`: writes the PSK, espm's self-signed TLS certificate and espm.ini for a new
 * install, and prints the PSK and certificate for the platform. Refuses (exit 1, nothing
 * written) if any of the files exists.
 *
 * @packageDocumentation
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_CONFIG_DIR, DEFAULTS } from '../config.js';
import { detectBackends, SETUP_CA_BACKENDS, type SetupCaBackendName } from '../setup/detect.js';
import { machineFqdn } from '../setup/hostname.js';
import { assertNothingExists, planSetup, writeSetup } from '../setup/setup.js';
import { VERSION } from '../version.js';

/** Options as commander parses them. */
interface SetupCliOptions {
  configDir: string;
  certDir?: string;
  stateDir: string;
  host: string;
  port: number;
  hostname?: string;
  ip: string[];
  caBackend?: SetupCaBackendName;
  printConfig?: boolean;
}

function parsePort(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
    throw new InvalidArgumentError('must be a port between 1 and 65535');
  }
  return Number(value);
}

function collectIp(value: string, previous: string[]): string[] {
  if (isIP(value) === 0) throw new InvalidArgumentError('must be an IPv4 or IPv6 address');
  return [...previous, value];
}

function parseHostname(value: string): string {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(value)) {
    throw new InvalidArgumentError('must be a DNS host name');
  }
  return value.toLowerCase();
}

/**
 * Builds the `espm_setup` command.
 *
 * @returns a commander program; `parseAsync(argv)` runs it and sets `process.exitCode`
 *   (0 written, 1 refused or failed)
 */
export function espmSetupCommand(): Command {
  return new Command('espm_setup')
    .description(
      "Set up espm on this Puppet master: generate the pre-shared key and espm's self-signed TLS certificate, " +
        'write the config with backends detected for this master, and print the key and certificate ' +
        'to paste into the platform. Never overwrites: exits 1 and writes nothing if a file exists.',
    )
    .version(VERSION, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .option('-d, --config-dir <dir>', 'directory of espm.ini', DEFAULT_CONFIG_DIR)
    .option('-c, --cert-dir <dir>', 'directory of espm.crt and espm.key (default: <config-dir>/certs)')
    .addOption(new Option('-p, --port <port>', 'HTTPS port').default(DEFAULTS.server.port).argParser(parsePort))
    .option('--host <address>', 'address to listen on', DEFAULTS.server.host)
    .option('--hostname <name>', "certificate CN and DNS name (default: this machine's FQDN)", parseHostname)
    .option('--ip <address>', 'IP address added to the certificate (repeatable)', collectIp, [])
    .option('--state-dir <dir>', 'state directory (ledger of what espm created)', DEFAULTS.state.dir)
    .addOption(
      new Option(
        '--ca-backend <name>',
        "[ca] backend instead of the detected one; puppetserver-api: Puppet Server's CA HTTP API, " +
          "no process per certificate (needs pp_cli_auth in the master's host certificate)",
      ).choices(SETUP_CA_BACKENDS),
    )
    .option('--print-config', 'print the config that would be written, write nothing')
    .addHelpText(
      'after',
      '\nWrites <cert-dir>/espm.crt (0644), <cert-dir>/espm.key (0600) and <config-dir>/espm.ini (0600);\n' +
        'missing directories are created 0700. Exit status: 0 written, 1 refused or failed.\n' +
        'Then start the daemon: espm -c <config-dir>/espm.ini\n' +
        'Sandbox backends (integration without Puppet, never production) are set in espm.ini:\n' +
        '[classifier] backend = sandbox and [ca] backend = sandbox.',
    )
    .action(async (options: SetupCliOptions) => {
      process.exitCode = await runSetup(options);
    });
}

async function runSetup(options: SetupCliOptions): Promise<number> {
  const detection = detectBackends(undefined, options.caBackend);
  const plan = planSetup(
    {
      configDir: options.configDir,
      certDir: options.certDir ?? join(options.configDir, 'certs'),
      stateDir: options.stateDir,
      host: options.host,
      port: options.port,
      hostname: options.hostname ?? (await machineFqdn()),
      ips: options.ip,
      espmBin: fileURLToPath(new URL('../../bin/espm', import.meta.url)),
    },
    detection,
  );
  if (options.printConfig === true) {
    process.stdout.write(plan.files.find((f) => f.path === plan.configPath)!.content);
    return 0;
  }
  try {
    await assertNothingExists(plan);
  } catch (err) {
    console.error(`espm_setup: ${(err as Error).message}`);
    return 1;
  }
  process.stdout.write(plan.announcement);
  try {
    await writeSetup(plan);
  } catch (err) {
    console.error(`espm_setup: ${(err as Error).message}`);
    return 1;
  }
  console.error(`espm_setup: ${detection.summary}`);
  // stdout stays what the platform is given; the operator's Puppet steps go with the summary.
  if (plan.enc !== undefined) process.stderr.write(plan.enc.instructions);
  if (plan.autosign !== undefined) process.stderr.write(plan.autosign.instructions);
  for (const line of detection.instructions ?? []) console.error(`espm_setup: ${line}`);
  return 0;
}
