import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.ts';

/** Request counts and durations labelled by route pattern (never the raw URL: unbounded labels). */
export function registerMetrics(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: String(reply.statusCode),
    };
    metrics.requests.inc(labels);
    metrics.duration.observe(labels, reply.elapsedTime / 1000);
    done();
  });
}
