import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Ingest } from '../../uploads/ingest.ts';
import type { MediaService } from '../../media/media-service.ts';
import { SORTS } from '../../media/media-repo.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { MediaItem, mediaJson } from '../media-json.ts';
import { errors } from '../schemas.ts';
import { receiveMultipart } from './upload.ts';

export interface MediaRouteDeps {
  media: MediaService;
  ingest: Ingest;
  linkMaxTtl: number;
}

const tags = ['media'];
const security = [{ bearer: [] }];
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const Visibility = Type.Union([Type.Literal('private'), Type.Literal('public')]);

export async function mediaRoutes(base: FastifyInstance, deps: MediaRouteDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/api/media/upload',
    {
      schema: {
        tags,
        security,
        summary: 'Upload one file (multipart/form-data: file, optional visibility and tags)',
        consumes: ['multipart/form-data'],
        response: { 201: MediaItem, ...errors(400, 401, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const item = await receiveMultipart(request, reply, deps.ingest, callerOf(request).username);
      return reply.code(201).header('Location', `/api/media/${item.id}`).send(mediaJson(item));
    },
  );

  app.get(
    '/api/media/list',
    {
      schema: {
        tags,
        security,
        summary: 'List media, newest first by default, with cursor pagination',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
          cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
          sort: Type.Union(
            Object.keys(SORTS).map((k) => Type.Literal(k)),
            { default: '-createdAt' },
          ),
          type: Type.Optional(
            Type.Union([
              Type.Literal('image'),
              Type.Literal('video'),
              Type.Literal('audio'),
              Type.Literal('document'),
            ]),
          ),
          tag: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          q: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
          owner: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(MediaItem),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors(400, 401, 403),
        },
      },
    },
    async (request) => {
      const query = request.query;
      const page = await deps.media.list(callerOf(request), query);
      return { items: page.items.map(mediaJson), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/media/:id',
    {
      schema: {
        tags,
        security,
        summary: 'One media item',
        params: IdParams,
        response: { 200: MediaItem, ...errors(401, 404) },
      },
    },
    async (request) => mediaJson(await deps.media.getFor(callerOf(request), request.params.id)),
  );

  app.patch(
    '/api/media/:id',
    {
      schema: {
        tags,
        security,
        summary: 'Change the file name, visibility or tags',
        params: IdParams,
        body: Type.Object(
          {
            filename: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
            visibility: Type.Optional(Visibility),
            tags: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 64 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: MediaItem, ...errors(400, 401, 404) },
      },
    },
    async (request) => mediaJson(await deps.media.update(callerOf(request), request.params.id, request.body)),
  );

  app.delete(
    '/api/media/:id',
    {
      schema: {
        tags,
        security,
        summary: 'Delete the item, its file and every rendition',
        params: IdParams,
        response: { 204: Type.Null(), ...errors(401, 404) },
      },
    },
    async (request, reply) => {
      await deps.media.delete(callerOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/media/:id/links',
    {
      // Every field has a default, so a request with no body at all asks for the default link.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags,
        security,
        summary: 'Create a signed, expiring link to the content (and thumbnails)',
        params: IdParams,
        body: Type.Object(
          {
            expiresIn: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: deps.linkMaxTtl,
                default: Math.min(3600, deps.linkMaxTtl),
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({ url: Type.String(), expiresAt: Type.String({ format: 'date-time' }) }),
          ...errors(400, 401, 404),
        },
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      const { token, expiresAt } = await deps.media.createLink(
        callerOf(request),
        id,
        request.body.expiresIn ?? 3600,
      );
      return reply.code(201).send({
        url: `/api/media/${id}/content?token=${encodeURIComponent(token)}`,
        expiresAt: new Date(expiresAt).toISOString(),
      });
    },
  );
}
