/**
 * `GET /v1/status`: version, uptime and backends (docs/design.md, "HTTP contract v1").
 *
 * @packageDocumentation
 */
import { Router } from 'express';
import type { ConnectionCounts } from '../connection-guard.js';

/** Body of `GET /v1/status`. */
export interface StatusBody {
  /** espm's version (package.json). */
  version: string;
  /** Whole seconds since the daemon started. */
  uptime_s: number;
  classifier: { backend: string };
  ca: { backend: string };
  /** Entries of the ownership ledger per kind and state. */
  ledger: {
    nodes: { present: number; uncertain: number };
    certificates: { present: number; uncertain: number };
  };
  /** PuppetDB at termination: whether `[puppetdb] url` is set, and certnames whose deactivation is owed. */
  puppetdb: { enabled: boolean; pending_deactivations: number };
  /** Connections open now, and refused or timed out since start-up (before authentication). */
  connections: ConnectionCounts;
}

/**
 * Router serving `GET /status` (mounted under `/v1`).
 *
 * @param status - produces the current body; called on every request
 */
export function statusRouter(status: () => StatusBody): Router {
  const router = Router();
  router.get('/status', (_req, res) => {
    res.json(status());
  });
  return router;
}
