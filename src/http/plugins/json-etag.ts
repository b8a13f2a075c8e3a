import crypto from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { notModified } from '../conditional.ts';

/**
 * Weak ETags on successful JSON reads, answering If-None-Match with 304, so clients polling
 * items and lists revalidate for free. Only GET/HEAD 200s are tagged: errors and writes never.
 * A callback hook with a one-shot hash, not an async one with a Hash object: it runs on every
 * JSON read, the server's most frequent request (figure 5 in BENCHMARKS.md).
 */
export function jsonEtags(app: FastifyInstance): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    if ((request.method !== 'GET' && request.method !== 'HEAD') || reply.statusCode !== 200) {
      return done(null, payload);
    }
    if (typeof payload !== 'string') return done(null, payload);
    const etag = `W/"${crypto.hash('sha1', payload, 'base64url')}"`;
    void reply.header('ETag', etag).header('Cache-Control', 'private, no-cache');
    const inm = request.headers['if-none-match'];
    if (inm !== undefined && notModified({ etag, lastModified: new Date(0) }, { ifNoneMatch: inm })) {
      void reply.code(304);
      return done(null, '');
    }
    done(null, payload);
  });
}
