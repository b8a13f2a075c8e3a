import crypto from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { notModified } from '../conditional.ts';

/**
 * Weak ETags on successful JSON reads, answering If-None-Match with 304, so clients polling
 * items and lists revalidate for free. Only GET/HEAD 200s are tagged: errors and writes never.
 */
export function jsonEtags(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    if ((request.method !== 'GET' && request.method !== 'HEAD') || reply.statusCode !== 200) return payload;
    if (typeof payload !== 'string') return payload;
    const etag = `W/"${crypto.createHash('sha1').update(payload).digest('base64url')}"`;
    void reply.header('ETag', etag).header('Cache-Control', 'private, no-cache');
    const inm = request.headers['if-none-match'];
    if (inm !== undefined && notModified({ etag, lastModified: new Date(0) }, { ifNoneMatch: inm })) {
      void reply.code(304);
      return '';
    }
    return payload;
  });
}
