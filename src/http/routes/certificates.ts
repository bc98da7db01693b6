/**
 * Certificate routes: `POST /v1/certificates`, `GET /v1/certificates/{certname}`,
 * `DELETE /v1/certificates/{certname}` (docs/design.md, "HTTP contract v1"). Service errors thrown
 * here become problem+json in the app's error handler.
 *
 * @packageDocumentation
 */
import { Router } from 'express';
import { certificateRequestSchema, certnameSchema } from '../../names.js';
import type { CertificateService } from '../../service/certificates.js';
import { requireJsonBody, validate } from './service-problems.js';

/**
 * Router of the certificate routes (mounted under `/v1`).
 *
 * @param certificates - the certificate service
 */
export function certificatesRouter(certificates: CertificateService): Router {
  const router = Router();

  router.post('/certificates', async (req, res) => {
    requireJsonBody(req);
    const request = validate(certificateRequestSchema, req.body, 'certificate request');
    const issued = await certificates.order(request);
    // The answer carries the node's private key or a one-time challenge: never cached anywhere.
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).location(`/v1/certificates/${encodeURIComponent(issued.certname)}`).json(issued);
  });

  router.get('/certificates/:certname', async (req, res) => {
    const certname = validate(certnameSchema, req.params['certname'], 'certname');
    res.json(await certificates.describe(certname));
  });

  router.delete('/certificates/:certname', async (req, res) => {
    const certname = validate(certnameSchema, req.params['certname'], 'certname');
    await certificates.revoke(certname);
    res.status(204).end();
  });

  return router;
}
