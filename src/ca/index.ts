/**
 * Builds the CA adapter `[ca] backend` names.
 *
 * @packageDocumentation
 */
import type { Config } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import type { CertificateAuthority } from './authority.js';
import { PuppetCertAuthority } from './puppet-cert.js';
import { PuppetserverApiAuthority } from './puppetserver-api.js';
import { PuppetserverCaAuthority } from './puppetserver-ca.js';
import { SandboxCertificateAuthority } from './sandbox.js';

/**
 * The configured CA.
 *
 * @param config - `[ca]`
 * @param runner - runs the backend's commands (the sandbox runs none; puppetserver-api one
 *   `puppet config print` at first use, unless `[ca] api_*` are all set)
 * @param stateDir - `[state] dir`: the sandbox keeps its CA under `<stateDir>/sandbox/ca/`
 * @param logger - the daemon's logger
 */
export function createCertificateAuthority(config: Config['ca'], runner: CommandRunner, stateDir: string, logger?: Logger): CertificateAuthority {
  switch (config.backend) {
    case 'puppet-cert':
      return new PuppetCertAuthority(config, runner, logger);
    case 'puppetserver-ca':
      return new PuppetserverCaAuthority(config, runner, logger);
    case 'puppetserver-api':
      return new PuppetserverApiAuthority(config, runner, logger);
    case 'sandbox':
      return new SandboxCertificateAuthority(stateDir, logger === undefined ? {} : { logger });
  }
}
