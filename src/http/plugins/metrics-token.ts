import crypto from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.ts';
import { vouchFor } from './anonymous-limit.ts';

const METRICS_URL = '/metrics';
const BEARER_RE = /^Bearer +([^\s]+) *$/i;

/**
 * Whether the request carries `Authorization: Bearer <token>`. Both sides are hashed first, so
 * the comparison takes the same time whatever was presented, its length included.
 */
export function presentsBearer(request: FastifyRequest, token: string): boolean {
  const presented = BEARER_RE.exec(request.headers.authorization ?? '')?.[1] ?? '';
  const digest = (value: string) => crypto.createHash('sha256').update(value).digest();
  return crypto.timingSafeEqual(digest(presented), digest(token)) && presented !== '';
}

/** Whether the request is for /metrics and carries the metrics token. */
export function presentsMetricsToken(request: FastifyRequest, token: string | undefined): boolean {
  return token !== undefined && request.routeOptions.url === METRICS_URL && presentsBearer(request, token);
}

/**
 * With STOWAGE_METRICS_TOKEN set, GET /metrics needs `Authorization: Bearer <token>`; anything
 * else is 401 UNAUTHENTICATED (with the Bearer challenge, like every 401). The metrics name every
 * route, status and upload outcome of the server: not for anyone who can reach it.
 */
export function registerMetricsToken(app: FastifyInstance, token: string | undefined): void {
  if (token === undefined) return;
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.url !== METRICS_URL) return;
    if (!presentsBearer(request, token)) {
      throw new AppError('UNAUTHENTICATED', 'The metrics token is missing or wrong.');
    }
    vouchFor(request);
  });
}
