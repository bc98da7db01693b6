/**
 * Classification routes: `GET /v1/groups`, `GET /v1/classes`, `POST /v1/nodes`,
 * `GET /v1/nodes/{name}`, `DELETE /v1/nodes/{name}` (docs/design.md, "HTTP contract v1").
 * Service errors thrown here become problem+json in the app's error handler.
 *
 * @packageDocumentation
 */
import { Router, type Request, type Response } from 'express';
import { certnameSchema, nodeRequestSchema } from '../../names.js';
import type { CachedList } from '../../service/list-cache.js';
import type { NodeService } from '../../service/nodes.js';
import { requireJsonBody, validate } from './service-problems.js';

/** Sends a cached list with its ETag; 304 when the caller has it already. */
function sendList(req: Request, res: Response, member: 'groups' | 'classes', list: CachedList): void {
  res.setHeader('ETag', list.etag);
  res.setHeader('Cache-Control', 'no-cache');
  if (req.fresh) {
    res.status(304).end();
    return;
  }
  res.json({ [member]: list.names });
}

/** `?refresh=true` (also `1`). */
function wantsRefresh(req: Request): boolean {
  const value = req.query['refresh'];
  return value === 'true' || value === '1';
}

/**
 * Router of the classification routes (mounted under `/v1`).
 *
 * @param nodes - the classification service
 */
export function classificationRouter(nodes: NodeService): Router {
  const router = Router();

  router.get('/groups', async (req, res) => {
    const list = await nodes.listGroups(wantsRefresh(req));
    sendList(req, res, 'groups', list);
  });

  router.get('/classes', async (req, res) => {
    const list = await nodes.listClasses(wantsRefresh(req));
    sendList(req, res, 'classes', list);
  });

  router.post('/nodes', async (req, res) => {
    requireJsonBody(req);
    const request = validate(nodeRequestSchema, req.body, 'node');
    const node = await nodes.create(request);
    res.status(201).location(`/v1/nodes/${encodeURIComponent(node.name)}`).json(node);
  });

  router.get('/nodes/:name', async (req, res) => {
    const name = validate(certnameSchema, req.params['name'], 'node name');
    res.json(await nodes.describe(name));
  });

  router.delete('/nodes/:name', async (req, res) => {
    const name = validate(certnameSchema, req.params['name'], 'node name');
    await nodes.delete(name);
    res.status(204).end();
  });

  return router;
}
