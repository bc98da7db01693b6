/**
 * Checks of a JSON body that `JSON.parse` cannot make: a member name given twice in one object
 * (JSON.parse silently keeps the last, so `{"name":"a","name":"b"}` would be read as one of two
 * intents) and the member name `__proto__` (which schema libraries drop silently). Both are
 * refused with 400 `invalid_request` before the body is used. The text is parsed into a syntax
 * tree with @humanwhocodes/momoa (ESLint's JSON parser), which keeps every member.
 *
 * @packageDocumentation
 */
import type { IncomingMessage } from 'node:http';
import { iterator, parse, type ObjectNode } from '@humanwhocodes/momoa';
import { HttpProblem } from './problem.js';

/** Member names refused anywhere in a body. */
export const RESERVED_MEMBER_NAMES: readonly string[] = ['__proto__'];

/**
 * The first problem of a JSON text's member names, or undefined.
 *
 * @param text - the body, already known to be JSON (syntax errors are left to JSON.parse)
 */
export function memberNameProblem(text: string): string | undefined {
  let document;
  try {
    document = parse(text, { mode: 'json' });
  } catch {
    return undefined;
  }
  for (const { node } of iterator(document)) {
    if (node.type !== 'Object') continue;
    const seen = new Set<string>();
    for (const member of (node as ObjectNode).members) {
      const name = member.name.type === 'String' ? member.name.value : member.name.name;
      if (RESERVED_MEMBER_NAMES.includes(name)) return `member name ${JSON.stringify(name)} is reserved`;
      if (seen.has(name)) return `member ${JSON.stringify(name)} appears twice in one object`;
      seen.add(name);
    }
  }
  return undefined;
}

/**
 * A `verify` hook for `express.json`: refuses bodies with duplicate or reserved member names.
 *
 * @throws {@link HttpProblem} 400 `invalid_request`
 */
export function verifyJsonMembers(_req: IncomingMessage, _res: unknown, body: Buffer, encoding: string): void {
  const problem = memberNameProblem(body.toString(encoding as BufferEncoding));
  if (problem !== undefined) throw new HttpProblem(400, 'invalid_request', `invalid JSON body: ${problem}`);
}
