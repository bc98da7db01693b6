/**
 * Test support: gating suites on real components (ruby/rake, puppetserver, puppet-agent,
 * supervisord, …) so that CI can never be green by skipping.
 *
 * Outside CI a suite whose component is missing is skipped with a warning naming what to
 * install. Under CI (`CI=true`, as `.ci/run` is run) it is not skipped: it fails, with one
 * test whose message names what is missing — `.ci/run` installs every component the suites
 * need, so a missing one is a broken CI machine or a broken install step.
 *
 * @packageDocumentation
 */

/** Whether the tests run under CI (`CI=true`, `CI=1`): missing components then fail. */
export function underCi(): boolean {
  const value = (process.env['CI'] ?? '').toLowerCase();
  return value !== '' && value !== 'false' && value !== '0';
}

/**
 * The `describe` a suite needing a real component should use.
 *
 * @param component - what the suite needs, for messages (e.g. `rake (Debian packages ruby rake)`)
 * @param missing - undefined when the component is here; otherwise why not (what is missing)
 * @returns `describe` when the component is here; outside CI `describe.skip` (after a warning);
 *   under CI a `describe` whose body is replaced by one failing test naming what is missing
 */
export function describeWith(component: string, missing: string | undefined): jest.Describe {
  if (missing === undefined) return describe;
  const why = `needs ${component}: ${missing}`;
  if (!underCi()) {
    console.warn(`SKIPPING: ${why}`);
    return describe.skip;
  }
  const failing = (name: string): void => {
    describe(name, () => {
      it(`cannot run under CI: ${why}`, () => {
        throw new Error(`CI=true and a real component is missing: ${why} (.ci/run must install it)`);
      });
    });
  };
  const each = ((...table: unknown[]) => (name: string) => failing(`${name} [${table.length} table rows not run]`)) as unknown as jest.Describe['each'];
  return Object.assign(failing, { each, only: describe.only, skip: describe.skip }) as unknown as jest.Describe;
}

/**
 * The `it` a single test needing a real component should use (same rules as
 * {@link describeWith}).
 *
 * @param component - what the test needs, for messages
 * @param missing - undefined when it is here; otherwise what is missing
 */
export function itWith(component: string, missing: string | undefined): jest.It {
  if (missing === undefined) return it;
  const why = `needs ${component}: ${missing}`;
  if (!underCi()) {
    console.warn(`SKIPPING: ${why}`);
    return it.skip;
  }
  const failing = ((name: string) => {
    it(`${name} — cannot run under CI: ${why}`, () => {
      throw new Error(`CI=true and a real component is missing: ${why} (.ci/run must install it)`);
    });
  }) as unknown as jest.It;
  return failing;
}
