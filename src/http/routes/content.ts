import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AppError } from '../../errors.ts';
import { originalKey } from '../../storage/key-layout.ts';
import type { MediaRecord } from '../../media/media-repo.ts';
import type { Caller } from '../../auth/caller.ts';
import { mayManage, type MediaService } from '../../media/media-service.ts';
import { identify, type AuthDeps } from '../plugins/authenticate.ts';
import { errors } from '../schemas.ts';
import type { BlobStore } from '../../storage/blob-store.ts';
import { serveBlob } from '../serve-blob.ts';
import type { BlobOffload } from '../offload.ts';

export interface ContentDeps {
  auth: AuthDeps;
  media: MediaService;
  storage: BlobStore;
  /** Who sends the bytes of an item's content when Stowage does not (nginx, the object store). */
  offload?: BlobOffload;
}

export const ContentParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/**
 * Who may read an item's bytes: a live, unrevoked signed link for exactly this item, else a Bearer token of the
 * owner or an admin, else anyone if the item is public. Without any credential a private item and
 * a missing one look the same (401), so ids cannot be probed.
 */
export async function readableItem(
  deps: ContentDeps,
  request: FastifyRequest,
  id: string,
  token: string | undefined,
): Promise<MediaRecord> {
  return (await readableItemAndCaller(deps, request, id, token)).item;
}

/** readableItem(), and who asked: the Bearer token's user, or null (a link token, a public item). */
export async function readableItemAndCaller(
  deps: ContentDeps,
  request: FastifyRequest,
  id: string,
  token: string | undefined,
): Promise<{ item: MediaRecord; caller: Caller | null }> {
  if (token !== undefined) {
    await deps.media.verifyLink(id, token);
    const item = await deps.media.find(id);
    if (!item) throw new AppError('NOT_FOUND', 'No such media item.');
    return { item, caller: null };
  }
  if (request.headers.authorization !== undefined) {
    const caller = await identify(deps.auth, request.headers.authorization);
    const item = await deps.media.find(id);
    if (!item || (!mayManage(caller, item) && item.visibility !== 'public')) {
      throw new AppError('NOT_FOUND', 'No such media item.');
    }
    return { item, caller };
  }
  const item = await deps.media.find(id);
  if (item?.visibility === 'public') return { item, caller: null };
  throw new AppError('UNAUTHENTICATED');
}

export function cacheControlFor(item: MediaRecord): string {
  // Revalidate every time: visibility can change and links expire; the ETag makes that cheap.
  return item.visibility === 'public' ? 'public, no-cache' : 'private, no-cache';
}

const INLINE_KINDS = new Set(['image', 'audio', 'video']);

export async function contentRoutes(base: FastifyInstance, deps: ContentDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/media/:id/content',
    schema: {
      tags: ['media'],
      summary: 'The file, streamed (Range, ETag, conditional requests)',
      description: 'With a Bearer token (owner or admin), a signed link token, or none for public items.',
      params: ContentParams,
      querystring: Type.Object({
        token: Type.Optional(Type.String({ maxLength: 2048 })),
        download: Type.Optional(
          Type.Union([Type.Literal('1'), Type.Literal('0'), Type.Literal('true'), Type.Literal('false')]),
        ),
      }),
      response: errors(401, 404, 416),
    },
    handler: async (request, reply) => {
      const { id } = request.params;
      const item = await readableItem(deps, request, id, request.query.token);
      const download = request.query.download === '1' || request.query.download === 'true';
      return serveBlob(request, reply, deps.storage, {
        locate: () => Promise.resolve({ key: originalKey(item.id), size: item.size }),
        contentType: item.mimeType,
        etag: `"${item.sha256}"`,
        lastModified: new Date(item.createdAt),
        disposition: {
          type: !download && INLINE_KINDS.has(item.kind) ? 'inline' : 'attachment',
          filename: item.filename,
        },
        cacheControl: cacheControlFor(item),
        offload: deps.offload,
      });
    },
  });
}
