import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Metrics } from '../../metrics.ts';

export type Check = () => Promise<'ok' | 'off'>;

export interface OpsDeps {
  metrics: Metrics;
  /** Named readiness checks; a check that throws (or takes too long) fails readiness. */
  checks: Record<string, Check>;
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
    { schema: { tags, summary: 'Prometheus metrics', hide: false } },
    async (_request, reply) => {
      const text = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(text);
    },
  );
}
