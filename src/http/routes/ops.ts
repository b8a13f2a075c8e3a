import crypto from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Metrics } from '../../metrics.ts';
import { AppError } from '../../errors.ts';
import { vouchFor } from '../plugins/anonymous-limit.ts';

export type Check = () => Promise<'ok' | 'off'>;

export interface OpsDeps {
  metrics: Metrics;
  /** Named readiness checks; a check that throws (or takes too long) fails readiness. */
  checks: Record<string, Check>;
  /** When set, /metrics answers only requests with `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string | undefined;
}

const BEARER_RE = /^Bearer +([^\s]+) *$/i;

/**
 * Whether the request carries `Authorization: Bearer <token>`. Both sides are hashed first so
 * the comparison takes the same time whatever the presented value, its length included.
 */
export function presentsBearer(request: FastifyRequest, token: string): boolean {
  const presented = BEARER_RE.exec(request.headers.authorization ?? '')?.[1] ?? '';
  const digest = (value: string) => crypto.createHash('sha256').update(value).digest();
  return crypto.timingSafeEqual(digest(presented), digest(token)) && presented !== '';
}

const CHECK_TIMEOUT_MS = 3000;

async function runCheck(check: Check): Promise<'ok' | 'off' | 'fail'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'fail'>((resolve) => {
    timer = setTimeout(() => resolve('fail'), CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check(), timeout]);
  } catch {
    return 'fail';
  } finally {
    clearTimeout(timer);
  }
}

export async function opsRoutes(base: FastifyInstance, deps: OpsDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const tags = ['operations'];

  app.get(
    '/healthz',
    { schema: { tags, summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );

  const readiness = Type.Object({
    status: Type.Union([Type.Literal('ok'), Type.Literal('fail')]),
    checks: Type.Record(Type.String(), Type.String()),
  });
  app.get(
    '/readyz',
    {
      schema: {
        tags,
        summary: 'Readiness: database, storage, scanner',
        response: { 200: readiness, 503: readiness },
      },
    },
    async (request, reply) => {
      const names = Object.keys(deps.checks);
      const results = await Promise.all(names.map((n) => runCheck(deps.checks[n]!)));
      const checks = Object.fromEntries(names.map((n, i) => [n, results[i]!]));
      const ok = results.every((r) => r !== 'fail');
      if (!ok) request.log.warn({ checks }, 'not ready');
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'fail', checks });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags,
        summary: 'Prometheus metrics',
        description: 'Needs `Authorization: Bearer $STOWAGE_METRICS_TOKEN` when that variable is set.',
        hide: false,
      },
    },
    async (request, reply) => {
      if (deps.metricsToken !== undefined) {
        if (!presentsBearer(request, deps.metricsToken)) {
          throw new AppError('UNAUTHENTICATED', 'The metrics token is missing or wrong.');
        }
        vouchFor(request);
      }
      const text = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(text);
    },
  );
}
