/**
 * Builds the classifier adapter `[classifier] backend` names.
 *
 * @packageDocumentation
 */
import type { Config } from '../config.js';
import type { CommandRunner } from '../exec/command.js';
import type { Logger } from '../logger.js';
import type { Classifier } from './classifier.js';
import { DashboardRakeClassifier } from './dashboard-rake.js';

/**
 * The configured classifier.
 *
 * @param config - `[classifier]`
 * @param runner - runs the backend's commands
 * @param logger - the daemon's logger
 */
export function createClassifier(config: Config['classifier'], runner: CommandRunner, logger?: Logger): Classifier {
  switch (config.backend) {
    case 'dashboard-rake':
      return new DashboardRakeClassifier(config, runner, logger);
  }
}
