import { describe, expect, it } from '@jest/globals';
import { readFileSync, existsSync } from 'node:fs';
import {
  REGISTERED_EXTENSIONS,
  extensionKeyProblem,
  resolveExtensions,
  trustedExtensionsSchema,
} from '../../src/ca/trusted-extensions.js';

const OIDS_RB = '/usr/lib/ruby/vendor_ruby/puppet/ssl/oids.rb';

describe('trusted extensions', () => {
  it('knows exactly the registered short names of the installed Puppet (oids.rb)', () => {
    if (!existsSync(OIDS_RB)) throw new Error(`${OIDS_RB} missing: install puppet-agent (see .ci/run)`);
    const source = readFileSync(OIDS_RB, 'utf8');
    const registered = Object.fromEntries(
      [...source.matchAll(/\["(1\.3\.6\.1\.4\.1\.34380\.1\.1\.\d+)",\s*'(pp_\w+)'/g)].map((m) => [m[2], m[1]]),
    );
    expect(Object.keys(registered).length).toBeGreaterThanOrEqual(26);
    expect(REGISTERED_EXTENSIONS).toEqual(registered);
  });

  it('accepts short names and private-arc OIDs and resolves them sorted by OID', () => {
    const parsed = trustedExtensionsSchema.parse({ pp_role: 'web', '1.3.6.1.4.1.34380.1.2.10': 'x', pp_uuid: 'u-1' });
    expect(resolveExtensions(parsed)).toEqual([
      { oid: '1.3.6.1.4.1.34380.1.1.1', shortName: 'pp_uuid', value: 'u-1' },
      { oid: '1.3.6.1.4.1.34380.1.1.13', shortName: 'pp_role', value: 'web' },
      { oid: '1.3.6.1.4.1.34380.1.2.10', shortName: undefined, value: 'x' },
    ]);
  });

  it.each([
    ['pp_authorization'],
    ['pp_auth_role'],
    ['pp_cli_auth'],
    ['1.3.6.1.4.1.34380.1.3.1'],
    ['1.3.6.1.4.1.34380.1.3.39'],
  ])('refuses the authorization arc: %s', (key) => {
    expect(extensionKeyProblem(key)).toMatch(/authorization arc/);
    expect(trustedExtensionsSchema.safeParse({ [key]: 'v' }).success).toBe(false);
  });

  it.each([['pp_nope'], ['1.2.3.4'], ['1.3.6.1.4.1.34380.1.2'], ['1.3.6.1.4.1.34380.1.2.01'], ['PP_ROLE'], ['']])(
    'refuses an unknown name or an OID outside the private arc: %j',
    (key) => {
      expect(extensionKeyProblem(key)).toBeDefined();
    },
  );

  it('refuses empty, long, control-character values, too many members and one extension named twice', () => {
    expect(trustedExtensionsSchema.safeParse({ pp_role: '' }).success).toBe(false);
    expect(trustedExtensionsSchema.safeParse({ pp_role: 'a'.repeat(256) }).success).toBe(false);
    expect(trustedExtensionsSchema.safeParse({ pp_role: 'a'.repeat(255) }).success).toBe(true);
    expect(trustedExtensionsSchema.safeParse({ pp_role: 'a\nb' }).success).toBe(false);
    expect(trustedExtensionsSchema.safeParse({ pp_role: 'café web' }).success).toBe(true);
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`1.3.6.1.4.1.34380.1.2.${i + 1}`, 'v']));
    expect(trustedExtensionsSchema.safeParse(many).success).toBe(false);
    expect(trustedExtensionsSchema.safeParse({ pp_role: 'a', '1.3.6.1.4.1.34380.1.1.13': 'b' }).success).toBe(false);
  });
});
