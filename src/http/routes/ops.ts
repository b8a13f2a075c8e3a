import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Metrics } from '../../metrics.ts';
import type { Readiness } from '../../util/readiness.ts';

export type { Check } from '../../util/readiness.ts';

export interface OpsDeps {
  metrics: Metrics;
  /** Named readiness checks, run at most once a second however often /readyz is called. */
  readiness: Readiness;
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
      const { checks, ok } = await deps.readiness.current();
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
