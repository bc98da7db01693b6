/**
 * The Classifier contract (src/classifier/classifier.ts), run over every backend with its real
 * component or double (test/support/classifier-backends.ts): the console double under real
 * rake for each puppet-dashboard version it plays, with the console worker on and off, and
 * the sandbox. Assertions are at the interface, against the backend's own state read behind
 * the adapter's back. A new backend joins by adding one entry to CLASSIFIER_BACKENDS.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { outcomeUnknown } from '../../src/backend.js';
import { ClassifierError, NodeExistsError, type Classification, type Classifier } from '../../src/classifier/classifier.js';
import { adapterFor, CLASSIFIER_BACKENDS, type ClassifierRig, type ClassifierView } from '../support/classifier-backends.js';
import { describeWith } from '../support/components.js';

describe.each(CLASSIFIER_BACKENDS.map((b) => [b.name, b] as const))('Classifier contract: %s', (label, backend) => {
  describeWith(backend.component, backend.missing)(`${label} at the interface`, () => {
    let rig: ClassifierRig;
    let stateDir: string;
    let classifier: Classifier;
    let view: ClassifierView;
    let serial = 0;
    /** A fresh node name for each test. */
    const fresh = (what: string): string => `${what}-${++serial}.contract.test`;
    const classification = (name: string, changes: Partial<Classification> = {}): Classification => ({ name, groups: [], classes: [], parameters: {}, ...changes });

    beforeAll(async () => {
      rig = await backend.setup();
      stateDir = await mkdtemp(join(tmpdir(), 'espm-classifier-contract-'));
      classifier = adapterFor(rig, stateDir);
      view = rig.view(stateDir);
    }, 240_000); // a real puppetserver (enc) starts in about a minute on 2 busy cores
    afterAll(async () => {
      await classifier?.close?.();
      await rig?.teardown();
      if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true });
    }, 60_000);

    it('start() finds the console and says which it is', async () => {
      expect(await classifier.start?.()).toMatchObject({ console: expect.any(String) });
    });

    it('lists groups and classes exactly as the backend holds them, sorted by code point', async () => {
      const groups = await classifier.listGroups();
      expect(groups).toEqual([...(await view.groups())].sort());
      expect(groups).toEqual(expect.arrayContaining(['default', 'no mcollective', 'puppet_master']));
      const classes = await classifier.listClasses();
      expect(classes).toEqual([...(await view.classes())].sort());
      expect(classes).toEqual(expect.arrayContaining(['motd', 'ntp', 'apache::vhost']));
      for (const name of [...groups, ...classes]) expect(name).not.toMatch(/^\(in |NodeClass|^$/);
    });

    it('create: the backend holds exactly the classification; the receipt is a JSON object', async () => {
      const name = fresh('web');
      const parameters: Record<string, string> = backend.stores.parameters ? { motd_message: 'hello = world', role: 'web' } : {};
      const wanted = classification(name, { groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters });
      const receipt = await classifier.create(wanted);
      expect(receipt).toEqual(expect.any(Object));
      expect(JSON.parse(JSON.stringify(receipt))).toEqual(receipt);
      expect(await view.node(name)).toEqual({ groups: ['default', 'no mcollective'], classes: ['ntp', 'apache::vhost'], parameters });
    });

    it('create with neither groups, classes nor parameters', async () => {
      const name = fresh('bare');
      await classifier.create(classification(name));
      expect(await view.node(name)).toEqual({ groups: [], classes: [], parameters: {} });
    });

    it.each(backend.preExisting)('NodeExistsError for %s, which espm did not create; it stays as it was', async (name) => {
      const before = await view.node(name);
      expect(before).toBeDefined();
      await expect(classifier.create(classification(name, { groups: ['default'] }))).rejects.toBeInstanceOf(NodeExistsError);
      expect(await view.node(name)).toEqual(before);
    });

    it('NodeExistsError for a node it created; nothing changes', async () => {
      const name = fresh('dup');
      await classifier.create(classification(name, { classes: ['motd'] }));
      const error = await classifier.create(classification(name, { classes: ['ntp'] })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NodeExistsError);
      expect((error as NodeExistsError).output).toContain(backend.words.exists);
      expect(await view.node(name)).toMatchObject({ classes: ['motd'] });
    });

    it('delete with the receipt (after a JSON round trip) → deleted and gone; again → absent', async () => {
      const name = fresh('del');
      const receipt = await classifier.create(classification(name, { groups: ['default'] }));
      const stored = JSON.parse(JSON.stringify(receipt)) as typeof receipt;
      expect(await classifier.delete(name, stored)).toBe('deleted');
      expect(await view.node(name)).toBeUndefined();
      expect(await classifier.delete(name, stored)).toBe('absent');
    });

    it('delete without a receipt (an entry adopted by an operator) → deleted', async () => {
      const name = fresh('adopted');
      await classifier.create(classification(name));
      expect(await classifier.delete(name, null)).toBe('deleted');
      expect(await view.node(name)).toBeUndefined();
    });

    it('delete of a node removed behind espm → absent', async () => {
      const name = fresh('gone');
      const receipt = await classifier.create(classification(name));
      await view.removeBehindEspm(name);
      expect(await classifier.delete(name, receipt)).toBe('absent');
    });

    it('unstorableParameters names what this console cannot store, and never writes', async () => {
      await view.clearOperations?.();
      const asked = { plain: 'a value = 1', comma: 'a,b', backslash: 'a\\b' };
      const refused = await classifier.unstorableParameters(asked);
      const expected = backend.stores.parameters
        ? [...(backend.stores.commas ? [] : ['comma']), ...(backend.stores.backslashes ? [] : ['backslash'])]
        : Object.keys(asked);
      expect(Object.keys(refused).sort()).toEqual(expected.sort());
      for (const why of Object.values(refused)) expect(why).toMatch(/\w/);
      expect(await classifier.unstorableParameters({})).toEqual({});
      const operations = (await view.operations?.()) ?? [];
      expect(operations.filter((t) => t.startsWith('node:'))).toEqual([]);
    });

    if (backend.knobs.secondStep) {
      it('a failing second step is rolled back: ClassifierError failed, nothing left', async () => {
        const name = fresh('rollback');
        await rig.faults.failSecondStep!();
        try {
          const error = await classifier.create(classification(name, { groups: ['default'], parameters: { role: 'web' } })).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(ClassifierError);
          expect(error).toMatchObject({ failure: 'failed', message: expect.stringContaining('(the node was rolled back: nothing was created)') });
          expect((error as ClassifierError).output).toContain(backend.words.secondStep);
          expect(await view.node(name)).toBeUndefined();
        } finally {
          await rig.faults.reset();
        }
        await classifier.create(classification(name, { parameters: { role: 'web' } }));
        expect(await view.node(name)).toEqual({ groups: [], classes: [], parameters: { role: 'web' } });
      });

      it('a failing second step whose rollback fails too: outcome unknown (interrupted), the node left', async () => {
        const name = fresh('stuck');
        await rig.faults.failSecondStep!();
        await rig.faults.failRollback!();
        try {
          const error = await classifier.create(classification(name, { groups: ['default'], parameters: { role: 'web' } })).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(ClassifierError);
          expect(error).toMatchObject({ failure: 'interrupted', message: expect.stringContaining('rolling the node back failed too') });
          expect(outcomeUnknown((error as ClassifierError).failure)).toBe(true);
          expect(await view.node(name)).toBeDefined();
        } finally {
          await rig.faults.reset();
        }
        await view.removeBehindEspm(name);
      });
    }

    if (backend.knobs.hang) {
      it('a create past its timeout: ClassifierError timeout, outcome unknown', async () => {
        const slow = adapterFor(rig, stateDir, { timeout: 1 });
        await rig.faults.hangCreate!(5);
        try {
          const error = await slow.create(classification(fresh('slow'))).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(ClassifierError);
          expect(error).toMatchObject({ failure: 'timeout' });
          expect(outcomeUnknown((error as ClassifierError).failure)).toBe(true);
        } finally {
          await rig.faults.reset();
          await slow.close?.();
        }
      }, 60_000);
    }
  });
});
