import type { FastifyReply, FastifyRequest } from 'fastify';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import { AppError } from '../errors.ts';
import {
  decideRange,
  ifRangeMatches,
  notModified,
  type RangeDecision,
  type RequestConditions,
  type Validators,
} from './conditional.ts';
import type { BlobOffload } from './offload.ts';

export interface BlobResponse extends Validators {
  /** Where the bytes are; only asked for when the response is not a 304 (renditions render here). */
  locate: () => Promise<{ key: string; size: number; bytes?: Buffer }>;
  contentType: string;
  /** null: no Content-Disposition (renditions). */
  disposition: { type: 'inline' | 'attachment'; filename: string } | null;
  cacheControl: string;
  /** Who sends the bytes instead of Stowage, if anyone (renditions: no one, they are small). */
  offload?: BlobOffload | undefined;
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

/**
 * Answers GET and HEAD for a blob: conditional requests and single byte ranges, then the bytes,
 * streamed by Stowage or, with an `offload`, sent by nginx or the object store. What Stowage can
 * decide itself (304, 416) it always answers itself, so those answers are the same either way.
 */
export async function serveBlob(
  request: FastifyRequest,
  reply: FastifyReply,
  store: BlobStore,
  blob: BlobResponse,
) {
  const { offload } = blob;
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
  const disposition = blob.disposition
    ? contentDisposition(blob.disposition.type, blob.disposition.filename)
    : undefined;
  // A presigned URL is for one method, GET; HEAD is answered here, from what the database knows.
  if (offload?.kind === 'presign' && !bytes && request.method === 'GET') {
    const url = await offload.url(key, {
      contentType: blob.contentType,
      contentDisposition: disposition,
      cacheControl: blob.cacheControl,
    });
    // The object store applies the Range itself. The URL expires within a minute, so the
    // redirect must not be stored and reused; the validators belong to the object, not to it.
    reply.removeHeader('ETag');
    reply.removeHeader('Last-Modified');
    reply.removeHeader('Accept-Ranges');
    return reply.code(302).header('Location', url).header('Cache-Control', 'no-store').send();
  }
  void reply.type(blob.contentType);
  if (disposition !== undefined) void reply.header('Content-Disposition', disposition);
  if (offload?.kind === 'accel' && !bytes && nginxDecidesAlike(request, conditions, blob, range)) {
    // nginx replaces this empty answer with the file from its internal location, keeping these
    // headers (deploy/nginx.conf passes those it would otherwise drop) and applying the Range
    // itself; it adds Content-Length and Content-Range of its own.
    // nginx adds Accept-Ranges to a whole file (200) but not to a range (206), where it keeps ours.
    if (range.kind === 'full') reply.removeHeader('Accept-Ranges');
    return reply.header('X-Accel-Redirect', offload.uri(key)).send();
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

/**
 * One byte-range-spec that nginx and range-parser read alike (RFC 9110 §14.1.1). Up to 15 digits:
 * nginx refuses (416) numbers near 2^63 that range-parser would clamp to the file's size.
 */
const SIMPLE_RANGE = /^bytes=(\d{1,15}-\d{0,15}|-\d{1,15})$/;

/**
 * Whether nginx, serving the file, reaches the answer Stowage decided. nginx evaluates the request
 * headers again in its internal location: If-None-Match and If-Modified-Since never match there
 * (`etag off`, `if_modified_since off`: Stowage has already answered those that do), and If-Range
 * compares against the ETag and Last-Modified passed on from here. What remains different is
 * answered by Stowage itself: ranges nginx parses differently (several, malformed, reversed) and
 * If-Match / If-Unmodified-Since, which nginx would check against validators it does not have.
 */
function nginxDecidesAlike(
  request: FastifyRequest,
  conditions: RequestConditions,
  validators: Validators,
  range: RangeDecision,
): boolean {
  if (request.headers['if-match'] !== undefined || request.headers['if-unmodified-since'] !== undefined) {
    return false;
  }
  if (conditions.range === undefined) return true;
  if (conditions.ifRange !== undefined && !ifRangeMatches(validators, conditions.ifRange)) return true;
  return range.kind === 'partial' && SIMPLE_RANGE.test(conditions.range);
}
