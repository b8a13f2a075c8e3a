import crypto from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import cors from '@fastify/cors';
import type { Config } from '../../config.ts';

/** Headers a client may read cross-origin: what tus clients and downloads need. */
export const EXPOSED_HEADERS = [
  'Location',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Tus-Checksum-Algorithm',
  'Media-Id',
  'X-Request-Id',
  'Content-Range',
  'Content-Disposition',
  'Content-Length',
  'ETag',
  'Retry-After',
];

const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'If-None-Match',
  'If-Modified-Since',
  'If-Range',
  'Range',
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Upload-Checksum',
  'Upload-Complete',
  'Upload-Draft-Interop-Version',
  'X-HTTP-Method-Override',
  'X-Requested-With',
  'X-Request-Id',
];

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts a proxy's request id when it is harmless, so logs can be correlated across hops. */
export function requestId(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID_RE.test(header) ? header : crypto.randomUUID();
}

/**
 * Security headers for every response, the set helmet would send for an API, computed once:
 * setting them from one object is cheaper than helmet's chain of middlewares on every request,
 * which matters for small JSON reads. JSON never needs to load anything; routes that serve other
 * content (files, the docs page) set their own policy over these.
 */
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Origin-Agent-Cluster': '?1',
  'Referrer-Policy': 'no-referrer',
  'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
  'X-Content-Type-Options': 'nosniff',
  'X-DNS-Prefetch-Control': 'off',
  'X-Download-Options': 'noopen',
  'X-Frame-Options': 'DENY',
  'X-Permitted-Cross-Domain-Policies': 'none',
  'X-XSS-Protection': '0',
};

export async function registerSecurity(app: FastifyInstance, config: Config): Promise<void> {
  // Callback hooks (here and in onSend below): an async hook costs a promise and a microtask on
  // every request, for work that never waits.
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.headers(SECURITY_HEADERS);
    done();
  });
  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      // Exact string comparison only: no wildcards, regexes or reflected origins.
      origin: config.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
      allowedHeaders: ALLOWED_HEADERS,
      exposedHeaders: EXPOSED_HEADERS,
      credentials: false,
      maxAge: 600,
      strictPreflight: true,
    });
  }
  app.addHook('onSend', (request, reply, payload, done) => {
    void reply.header('X-Request-Id', request.id);
    if (!reply.hasHeader('Cache-Control') && request.url.startsWith('/api/')) {
      void reply.header('Cache-Control', 'no-store');
    }
    done(null, payload);
  });
}
