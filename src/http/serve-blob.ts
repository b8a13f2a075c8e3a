import type { FastifyReply, FastifyRequest } from 'fastify';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { AppError } from '../errors.ts';
import { decideRange, notModified, type Validators } from './conditional.ts';

export interface BlobResponse extends Validators {
  /** Where the bytes are; only asked for when the response is not a 304 (renditions render here). */
  locate: () => Promise<{ key: string; size: number; bytes?: Buffer }>;
  contentType: string;
  /** null: no Content-Disposition (renditions). */
  disposition: { type: 'inline' | 'attachment'; filename: string } | null;
  cacheControl: string;
}

/** An uploaded file may be anything: it must never run script or be framed in our origin. */
const CONTENT_CSP = "default-src 'none'; sandbox";

/**
 * RFC 6266: an ASCII fallback for old clients plus the exact name as RFC 8187 `filename*`. The
 * name is percent-encoded, so quotes, semicolons or line breaks in it cannot inject anything.
 */
export function contentDisposition(type: 'inline' | 'attachment', filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${type}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Streams a blob with conditional requests and single byte ranges (GET and HEAD). */
export async function serveBlob(
  request: FastifyRequest,
  reply: FastifyReply,
  store: BlobStore,
  blob: BlobResponse,
) {
  void reply
    .header('Content-Security-Policy', CONTENT_CSP)
    .header('Cross-Origin-Resource-Policy', 'cross-origin')
    .header('X-Content-Type-Options', 'nosniff')
    .header('Accept-Ranges', 'bytes')
    .header('ETag', blob.etag)
    .header('Last-Modified', blob.lastModified.toUTCString())
    .header('Cache-Control', blob.cacheControl);
  const conditions = {
    ifNoneMatch: header(request, 'if-none-match'),
    ifModifiedSince: header(request, 'if-modified-since'),
    ifRange: header(request, 'if-range'),
    range: header(request, 'range'),
  };
  if (notModified(blob, conditions)) return reply.code(304).send();

  const { key, size, bytes } = await blob.locate();
  const range = decideRange(size, blob, conditions);
  if (range.kind === 'unsatisfiable') {
    throw new AppError('RANGE_NOT_SATISFIABLE', undefined, {
      headers: { 'Content-Range': `bytes */${size}` },
      details: { size },
    });
  }
  void reply.type(blob.contentType);
  if (blob.disposition) {
    void reply.header(
      'Content-Disposition',
      contentDisposition(blob.disposition.type, blob.disposition.filename),
    );
  }
  const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, size - 1];
  if (range.kind === 'partial') {
    void reply.code(206).header('Content-Range', `bytes ${start}-${end}/${size}`);
  }
  void reply.header('Content-Length', String(end - start + 1));
  if (request.method === 'HEAD') {
    // No body to open, so ask: a blob deleted under its item is a 404, as it is for GET.
    if (!bytes && !(await store.stat(key))) throw new BlobNotFoundError(key);
    return reply.send();
  }
  if (bytes) return reply.send(bytes.subarray(start, end + 1));
  const stream = await store.read(key, range.kind === 'partial' ? { start, end } : undefined);
  return reply.send(stream);
}
