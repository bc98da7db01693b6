/**
 * `pe-node-classifier`'s groups read (`GET /v1/groups`) shared by creates (issue #19;
 * src/classifier/nc-groups-read.ts), counted from the Node Classifier double's request log:
 * concurrent creates of different names share one read; a delete (answered or not while a
 * read is in flight) makes every earlier read unusable, so a create of the deleted name never
 * gets a false NodeExistsError from it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Classification, Classifier } from '../../src/classifier/classifier.js';
import type { Receipt } from '../../src/ownership/entries.js';
import { adapterFor } from '../support/classifier-backends.js';
import { startNodeClassifier, type NcRig } from '../support/node-classifier.js';

let rig: NcRig;
let stateDir: string;
let classifier: Classifier;
let serial = 0;
/** A fresh node name for each use. */
const fresh = (what: string): string => `${what}-${++serial}.reads.test`;
const node = (name: string): Classification => ({ name, groups: ['default'], classes: ['ntp'], parameters: { role: 'web' } });
/** `GET /v1/groups` requests the double answered since the log was last emptied. */
const groupsReads = (): number => rig.nc.log.filter((i) => i.method === 'GET' && i.path === '/v1/groups').length;

beforeAll(async () => {
  rig = await startNodeClassifier();
  stateDir = await mkdtemp(join(tmpdir(), 'espm-nc-reads-'));
});
afterAll(async () => {
  await rig?.teardown();
  if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true });
});
beforeEach(() => {
  // A new adapter per test: no read remembered from the one before.
  classifier = adapterFor({ config: rig.config } as never, stateDir);
  rig.nc.log.length = 0;
});
afterEach(async () => {
  rig.nc.faults = [];
  await classifier.close?.();
});

it('10 concurrent creates of different names share ONE groups read; each gets its group and pin', async () => {
  const names = Array.from({ length: 10 }, () => fresh('burst'));
  await Promise.all(names.map((n) => classifier.create(node(n))));
  expect(groupsReads()).toBe(1);
  for (const n of names) expect(rig.nc.byName(`espm: ${n}`)?.rule).toEqual(['or', ['=', 'name', n]]);
  expect(rig.nc.writes().filter((w) => w === 'POST /v1/groups')).toHaveLength(10);
});

it('a create after a delete of the same name reads again (no false NodeExistsError from the earlier read)', async () => {
  const name = fresh('again');
  const receipt = await classifier.create(node(name));
  await classifier.listGroups(); // a read that shows espm's group for the name, answered just now
  expect(await classifier.delete(name, JSON.parse(JSON.stringify(receipt)) as Receipt)).toBe('deleted');
  rig.nc.log.length = 0;
  await expect(classifier.create(node(name))).resolves.toBeDefined();
  expect(groupsReads()).toBe(1);
  expect(rig.nc.byName(`espm: ${name}`)).toBeDefined();
});

it('a read in flight while a delete ends answers no later create: neither one that joins it nor one after it', async () => {
  const [a, b] = [fresh('inflight'), fresh('inflight')];
  const receipts = [await classifier.create(node(a)), await classifier.create(node(b))];
  // The next groups read holds the state of the moment it came in (both groups), answered 800 ms later.
  rig.nc.faults = [{ method: 'GET', path: /^\/v1\/groups$/, action: 'delay', ms: 800, afterWork: true, times: 1 }];
  const listing = classifier.listGroups();
  await new Promise((r) => setTimeout(r, 100)); // the read has reached the double (the connection is up)
  expect(await classifier.delete(a, receipts[0]!)).toBe('deleted');
  expect(await classifier.delete(b, receipts[1]!)).toBe('deleted');
  // The stale read is still in flight: a create of a deleted name must not join it.
  const createA = classifier.create(node(a));
  await listing;
  await expect(createA).resolves.toBeDefined();
  // The stale read has been answered (< 1 s ago): a create of the other deleted name must not reuse it.
  await expect(classifier.create(node(b))).resolves.toBeDefined();
  expect(await listing).toContain('default');
  expect(rig.nc.byName(`espm: ${a}`)).toBeDefined();
  expect(rig.nc.byName(`espm: ${b}`)).toBeDefined();
});
