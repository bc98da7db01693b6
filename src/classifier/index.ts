/**
 * Builds the classifier adapter `[classifier] backend` names. Adding a backend is one `case`
 * here (plus its adapter, its `[classifier]` schema block in src/config.ts, one entry in
 * test/support/classifier-backends.ts, docs): see docs/design.md ("Adding a backend").
 *
 * @packageDocumentation
 */
import type { Config } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import type { Classifier } from './classifier.js';
import { DashboardRakeClassifier } from './dashboard-rake.js';
import { EncClassifier } from './enc.js';
import { PeNodeClassifier } from './pe-node-classifier.js';
import { SandboxClassifier } from './sandbox.js';

/**
 * The configured classifier.
 *
 * @param config - `[classifier]`
 * @param runner - runs the backend's commands (the sandbox runs none)
 * @param stateDir - `[state] dir`: the sandbox keeps its console under `<stateDir>/sandbox/`;
 *   dashboard-rake writes its console worker program there
 * @param logger - the daemon's logger
 */
export function createClassifier(config: Config['classifier'], runner: CommandRunner, stateDir: string, logger?: Logger): Classifier {
  switch (config.backend) {
    case 'dashboard-rake':
      return new DashboardRakeClassifier(config, runner, { stateDir, ...(logger === undefined ? {} : { logger }) });
    case 'sandbox':
      return new SandboxClassifier(stateDir, logger === undefined ? {} : { logger });
    case 'enc':
      return new EncClassifier(config, runner, logger);
    case 'pe-node-classifier':
      return new PeNodeClassifier(config, runner, logger);
  }
}
