/**
 * dependency-cruiser configuration (issue #13): `npm run depcheck`, run by `npm test`'s pretest,
 * fails on any import cycle under src/ — type-only imports included (tsPreCompilationDeps), so a
 * cycle made only of `import type` fails too.
 *
 * The tree is ESM TypeScript with NodeNext resolution: `./x.js` in an import names `./x.ts`,
 *
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'An import cycle under src/ (type-only imports count). Break it by moving the shared ' +
        'types or functions into a module both sides import (docs/design.md, "Layers").',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.build.json' },
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.d.ts'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
