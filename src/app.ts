import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import type { Logger } from 'pino';
import type { Services } from './services.ts';
import { AppError } from './errors.ts';
import { handleClientError, handleFrameworkError, installErrorHandling } from './http/error-handler.ts';
import { installValidators } from './http/validation.ts';
import { registerSecurity, requestId } from './http/plugins/security.ts';
import { registerMetrics } from './http/plugins/metrics.ts';
import { registerDocs } from './http/plugins/docs.ts';
import { registerTimeouts, timeoutServerOptions } from './http/plugins/timeouts.ts';
import { registerAnonymousLimit } from './http/plugins/anonymous-limit.ts';
import { presentsMetricsToken, registerMetricsToken } from './http/plugins/metrics-token.ts';
import { authenticateHook, identify } from './http/plugins/authenticate.ts';
import { publicAuthRoutes, sessionRoutes } from './http/routes/auth.ts';
import { userRoutes } from './http/routes/users.ts';
import { opsRoutes } from './http/routes/ops.ts';
import { adminRoutes } from './http/routes/admin.ts';
import { mediaRoutes } from './http/routes/media.ts';
import { contentRoutes } from './http/routes/content.ts';
import { registerMultipart } from './http/plugins/multipart.ts';
import { tusDiscoveryRoutes, tusRoutes } from './http/routes/tus.ts';
import { thumbnailRoutes } from './http/routes/thumbnail.ts';
import { consoleRoutes } from './http/routes/console.ts';
import { renderRoutes } from './http/routes/render.ts';
import { jsonEtags } from './http/plugins/json-etag.ts';
import { createOffload } from './http/offload.ts';
import { clientAddressKey } from './util/client-address.ts';
import { counterRateLimitStore } from './http/rate-limit-store.ts';
import './http/caller.ts';

/** JSON bodies are small; uploads have their own limits and never go through the JSON parser. */
const JSON_BODY_LIMIT = 64 * 1024;

/**
 * Builds the HTTP application from already-constructed services. It never listens: main.ts does,
 * and tests drive it with inject() or listen on an ephemeral port.
 */
export async function buildApp(services: Services, logger: Logger): Promise<FastifyInstance> {
  const { config } = services;
  // Typed as Fastify's logger interface so the instance type stays the default one.
  const baseLogger: FastifyBaseLogger = logger;
  const timeouts = { idleMs: config.idleTimeout * 1000, bodyMs: config.bodyTimeout * 1000 };
  const app = Fastify({
    ...timeoutServerOptions(timeouts),
    clientErrorHandler: handleClientError,
    loggerInstance: baseLogger,
    genReqId: (req) => requestId(req.headers['x-request-id']),
    trustProxy: config.trustProxy ?? false,
    bodyLimit: JSON_BODY_LIMIT,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Requests still arriving on open connections during shutdown are served, not answered with
    // Fastify's own 503 body (which is not in the contract's shape).
    return503OnClosing: false,
    frameworkErrors: handleFrameworkError,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 256 },
  });
  app.decorateRequest('caller', null);
  closeConnectionsAsTheyGoIdle(app);
  // The API speaks JSON; a text body is a client mistake to answer with 415, not a string to parse.
  app.removeContentTypeParser('text/plain');
  installValidators(app);
  installErrorHandling(app);
  registerTimeouts(app, timeouts);
  await registerSecurity(app, config);
  registerMetrics(app, services.metrics);
  await registerDocs(app);

  const authDeps = {
    users: services.users,
    hasher: services.hasher,
    tokens: services.tokens,
    sessions: services.sessions,
    throttle: services.loginThrottle,
    metrics: services.metrics,
    audit: services.audit,
  };

  registerAnonymousLimit(app, {
    counters: services.counters,
    perMinute: config.anonRateLimit,
    hasValidCredential: async (request) =>
      presentsMetricsToken(request, config.metricsToken) ||
      identify(authDeps, request.headers.authorization).then(
        () => true,
        () => false,
      ),
  });
  registerMetricsToken(app, config.metricsToken);

  await app.register(async (open) => {
    await opsRoutes(open, { metrics: services.metrics, readiness: services.readiness });
    await publicAuthRoutes(open, authDeps);
    const contentDeps = {
      auth: authDeps,
      media: services.media,
      storage: services.storage,
      offload: createOffload(config, services.storage),
    };
    await contentRoutes(open, contentDeps);
    await thumbnailRoutes(open, {
      ...contentDeps,
      thumbnails: services.thumbnails,
      sizes: config.thumbnailSizes,
    });
    if (config.render) {
      await renderRoutes(open, {
        ...contentDeps,
        thumbnails: services.thumbnails,
        counters: services.counters,
        perMinute: config.renderRateLimit,
      });
    }
    await tusDiscoveryRoutes(open, services.tus);
    if (config.console.enabled) {
      await consoleRoutes(open, { dir: config.console.dir, warn: (message) => logger.warn(message) });
    }
  });

  // Everything in this context needs a live session; the per-user rate limit counts per caller.
  await app.register(async (secured) => {
    secured.addHook('onRequest', authenticateHook(authDeps));
    if (config.userRateLimit > 0) {
      await secured.register(rateLimit, {
        global: true,
        hook: 'preHandler',
        max: config.userRateLimit,
        timeWindow: 60_000,
        store: counterRateLimitStore(services.counters),
        keyGenerator: (request) => request.caller?.username ?? clientAddressKey(request.ip),
        errorResponseBuilder: (_request, context) =>
          new AppError('RATE_LIMITED', undefined, {
            headers: { 'Retry-After': String(Math.max(1, Math.ceil(context.ttl / 1000))) },
          }),
      });
    }
    await sessionRoutes(secured, authDeps);
    await userRoutes(secured, { usageOf: (u) => services.repo.usage(u), quotaBytes: config.quotaBytes });
    await registerMultipart(secured, config.maxUploadBytes);
    await secured.register(async (items) => {
      jsonEtags(items);
      await mediaRoutes(items, {
        media: services.media,
        ingest: services.ingest,
        linkMaxTtl: config.linkMaxTtl,
      });
    });
    await tusRoutes(secured, services.tus);
    await adminRoutes(secured, {
      users: services.users,
      sessions: services.sessions,
      usageOf: (names) => services.repo.usageOfUsers(names),
      audit: services.audit,
    });
  });

  return app;
}

/**
 * `forceCloseConnections: 'idle'` closes the connections idle when the close begins; one still
 * answering then goes idle later and would hold the close open for its keep-alive timeout (72 s).
 * While closing, each connection is closed as soon as its last response is done.
 */
function closeConnectionsAsTheyGoIdle(app: FastifyInstance): void {
  let sweep: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    sweep.unref();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    clearInterval(sweep);
    done();
  });
}
