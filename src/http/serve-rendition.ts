import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import type { RenderFormat } from '../images/image-processor.ts';
import { hasSourceImage } from '../media/image-source.ts';
import type { MediaRecord } from '../media/media-repo.ts';
import type { Rendition } from '../media/thumbnails.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { cacheControlFor } from './routes/content.ts';
import { serveBlob } from './serve-blob.ts';

const MIME: Record<RenderFormat, string> = {
  webp: 'image/webp',
  avif: 'image/avif',
  jpeg: 'image/jpeg',
  png: 'image/png',
};

/** Only items with an image of their own have thumbnails and renditions. */
export function assertRenderable(item: MediaRecord): void {
  if (!hasSourceImage(item))
    throw new AppError('NOT_FOUND', 'This item has no thumbnail: it is not an image or a video.');
}

export interface RenditionResponse {
  format: RenderFormat;
  /** The format was chosen from Accept, so the answer varies with it. */
  negotiated: boolean;
  /** What tells this rendition apart from the item's others, in its ETag (e.g. the size). */
  variant: string;
  /** Only asked for when the answer is not a 304 (renders happen here). */
  locate: () => Promise<Rendition>;
}

/**
 * Answers GET and HEAD with a thumbnail or rendition of a readable item: the headers, caching and
 * conditional requests of content (serveBlob), one ETag per rendition, no Content-Disposition.
 */
export function serveRendition(
  request: FastifyRequest,
  reply: FastifyReply,
  storage: BlobStore,
  item: MediaRecord,
  rendition: RenditionResponse,
) {
  if (rendition.negotiated) void reply.header('Vary', 'Accept');
  return serveBlob(request, reply, storage, {
    locate: rendition.locate,
    contentType: MIME[rendition.format],
    etag: `"${item.sha256.slice(0, 32)}-${rendition.variant}-${rendition.format}"`,
    lastModified: new Date(item.createdAt),
    disposition: null,
    cacheControl: cacheControlFor(item),
  });
}
