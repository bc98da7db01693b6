import { certnameSchema, classNameSchema, groupNameSchema, nodeRequestSchema, parameterKeySchema, parameterValueSchema } from '../src/names.js';

const ok = (schema: { safeParse(v: unknown): { success: boolean } }, v: unknown) => schema.safeParse(v).success;

describe('names (docs/design.md rules)', () => {
  it.each(['web01', 'web01.example.test', 'a', 'a-b_c.d9', 'x'.repeat(253)])('certname %s is valid', (v) => {
    expect(ok(certnameSchema, v)).toBe(true);
  });
  it.each(['', 'Web01', 'web01.', '.web01', '-web', 'a..b', 'a b', 'a/b', '../etc', 'a;b', 'é', 'x'.repeat(254), 'a\nb', 'a\u0000b'])(
    'certname %j is refused',
    (v) => {
      expect(ok(certnameSchema, v)).toBe(false);
    },
  );
  it.each(['motd', 'apache::vhost', 'pe_accounts', 'a-b', 'ntp9'])('class %s is valid', (v) => {
    expect(ok(classNameSchema, v)).toBe(true);
  });
  it.each(['Motd', '::motd', 'motd::', 'a::B', '-motd', 'a b', 'a,b', 'a\n', ''])('class %j is refused', (v) => {
    expect(ok(classNameSchema, v)).toBe(false);
  });
  it.each(['default', 'no mcollective', 'puppet_master', 'Web Servers (EU)', 'ünïcode ok'])('group %j is valid', (v) => {
    expect(ok(groupNameSchema, v)).toBe(true);
  });
  it.each(['', 'a,b', ' lead', 'trail ', 'a\nb', 'a\tb', 'a\u0000b', 'a\u2028b', 'x'.repeat(256)])('group %j is refused', (v) => {
    expect(ok(groupNameSchema, v)).toBe(false);
  });
  it.each(['role', '_x', 'motd_message', 'A1'])('parameter key %s is valid', (v) => {
    expect(ok(parameterKeySchema, v)).toBe(true);
  });
  it.each(['1x', 'a-b', 'a=b', 'a b', '', '__proto__', 'constructor', 'a,b'])('parameter key %j is refused', (v) => {
    expect(ok(parameterKeySchema, v)).toBe(false);
  });
  it.each(['x', 'a = b', 'a,b', 'ünï', 'x'.repeat(4096)])('parameter value %j is valid (commas are the console\'s call)', (v) => {
    expect(ok(parameterValueSchema, v)).toBe(true);
  });
  it.each(['', 'a\nb', 'a\rb', 'a\u0000b', 'x'.repeat(4097)])('parameter value %j is refused', (v) => {
    expect(ok(parameterValueSchema, v)).toBe(false);
  });
  it('a node request refuses unknown members, wrong types and oversized lists', () => {
    expect(ok(nodeRequestSchema, { name: 'a', extra: 1 })).toBe(false);
    expect(ok(nodeRequestSchema, { name: 'a', groups: 'default' })).toBe(false);
    expect(ok(nodeRequestSchema, { name: 'a', parameters: { a: 1 } })).toBe(false);
    expect(ok(nodeRequestSchema, { name: 'a', classes: Array.from({ length: 101 }, (_, i) => `c${i}`) })).toBe(false);
    expect(nodeRequestSchema.parse({ name: 'a' })).toEqual({ name: 'a', groups: [], classes: [], parameters: {} });
  });
});
