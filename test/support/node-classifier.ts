/**
 * Test support: the Node Classifier double (test/fixtures/node-classifier/) set up for espm —
 * a throw-away PKI (test/support/ca-pki.ts), the double on a free port allowing the test
 * client certificate (`master.example.test`) and one RBAC token, and the `[classifier]` keys
 * pointing espm at it with that certificate. Used by the `pe-node-classifier` entry of
 * CLASSIFIER_BACKENDS and by the backend's own tests.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from './ca-pki.js';
import { NodeClassifierDouble, type NcGroup } from '../fixtures/node-classifier/double.js';
import type { ClassifierView, StoredClassification } from './classifier-backends.js';

/** The RBAC token the double accepts. */
export const NC_TOKEN = '0Vk7sJxN2dC-test-rbac-token-7f3a9c';
/** The certname of the test client certificate (the "master"). */
export const NC_CLIENT_CERTNAME = 'master.example.test';

/** A running double with its PKI. */
export interface NcRig {
  pki: TestPki;
  nc: NodeClassifierDouble;
  /** `[classifier]` keys: certificate authentication. */
  config: Record<string, string>;
  /** A file holding {@link NC_TOKEN} (for `token_file`). */
  tokenFile: string;
  teardown(): Promise<void>;
}

/** Starts the double. */
export async function startNodeClassifier(): Promise<NcRig> {
  const pki = await makeTestPki();
  const nc = await new NodeClassifierDouble({
    tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca },
    allowlist: [NC_CLIENT_CERTNAME],
    tokens: [NC_TOKEN],
  }).start();
  const tokenFile = join(pki.dir, 'token');
  await writeFile(tokenFile, `${NC_TOKEN}\n`, { mode: 0o600 });
  return {
    pki,
    nc,
    tokenFile,
    config: { backend: 'pe-node-classifier', url: nc.url, api_cert: pki.clientCertPath, api_key: pki.clientKeyPath, api_ca: pki.caPath },
    async teardown() {
      await nc.stop();
      await pki.remove();
    },
  };
}

const isPin = (term: unknown, node: string): boolean => Array.isArray(term) && term.length === 3 && term[0] === '=' && term[1] === 'name' && term[2] === node;
/** Whether a rule names the node anywhere. */
export function names(rule: unknown, node: string): boolean {
  return Array.isArray(rule) && (isPin(rule, node) || rule.some((t) => names(t, node)));
}
/** Whether `g` is espm's per-node group (by its name). */
const isEspmGroup = (g: NcGroup): boolean => g.name.startsWith('espm: ');

/** The double's state as a {@link ClassifierView} (read directly, not through espm). */
export function ncView(nc: NodeClassifierDouble): ClassifierView {
  return {
    groups: () => Promise.resolve([...nc.groups.values()].filter((g) => !isEspmGroup(g)).map((g) => g.name)),
    classes: () => Promise.resolve([...(nc.classes.get('production') ?? [])]),
    node: (name) => {
      const holders = [...nc.groups.values()].filter((g) => names(g.rule, name));
      if (holders.length === 0) return Promise.resolve(undefined);
      const own = holders.find((g) => g.name === `espm: ${name}`);
      const stored: StoredClassification = {
        groups: holders.filter((g) => g !== own).map((g) => g.name).sort(),
        classes: Object.keys(own?.classes ?? {}),
        parameters: Object.fromEntries(Object.entries(own?.variables ?? {}).map(([k, v]) => [k, String(v)])),
      };
      return Promise.resolve(stored);
    },
    removeBehindEspm: (name) => {
      // As an operator in the console would: unpin the node everywhere, delete espm's group.
      for (const g of nc.groups.values()) {
        if (Array.isArray(g.rule) && g.rule[0] === 'or') {
          const kept = g.rule.filter((t) => !isPin(t, name));
          if (kept.length !== g.rule.length) g.rule = kept.length === 1 ? null : kept;
        }
      }
      const own = nc.byName(`espm: ${name}`);
      if (own !== undefined) nc.groups.delete(own.id);
      return Promise.resolve();
    },
  };
}
