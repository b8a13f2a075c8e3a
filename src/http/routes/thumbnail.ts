import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { validationFailed } from '../../errors.ts';
import { negotiateFormat } from '../../images/negotiate-format.ts';
import { defaultThumbnailSize, type Thumbnails } from '../../media/thumbnails.ts';
import { errors } from '../schemas.ts';
import { assertRenderable, serveRendition } from '../serve-rendition.ts';
import { ContentParams, readableItem, type ContentDeps } from './content.ts';

export async function thumbnailRoutes(
  base: FastifyInstance,
  deps: ContentDeps & { thumbnails: Thumbnails; sizes: number[] },
): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const defaultSize = defaultThumbnailSize(deps.sizes);
  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/media/:id/thumbnail',
    schema: {
      tags: ['media'],
      summary:
        "A resized rendition of an image or of a video's poster frame (WebP, or AVIF/JPEG by Accept), metadata stripped",
      params: ContentParams,
      querystring: Type.Object({
        size: Type.Integer({ default: defaultSize, description: `One of ${deps.sizes.join(', ')}` }),
        token: Type.Optional(Type.String({ maxLength: 2048 })),
      }),
      response: errors(400, 401, 404, 415, 422, 503),
    },
    handler: async (request, reply) => {
      const { id } = request.params;
      const { size, token } = request.query;
      const item = await readableItem(deps, request, id, token);
      assertRenderable(item);
      if (!deps.sizes.includes(size)) {
        throw validationFailed({ path: 'query.size', message: `must be one of ${deps.sizes.join(', ')}` });
      }
      const format = negotiateFormat(request.headers.accept);
      return serveRendition(request, reply, deps.storage, item, {
        format,
        negotiated: true,
        variant: String(size),
        locate: () => deps.thumbnails.get(item, size, format),
      });
    },
  });
}
