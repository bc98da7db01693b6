import { createDefaultEsmPreset } from 'ts-jest';

/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  ...createDefaultEsmPreset({ tsconfig: 'tsconfig.json' }),
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testTimeout: 30000,
  // Two suites at a time even on 2 cores: the long suites mostly wait on puppetserver, PuppetDB,
  // rake and killed daemons, so a second one overlaps that waiting (jest here: 842 s, against 1510 s one at a time on a busier machine).
  maxWorkers: 2,
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
};
