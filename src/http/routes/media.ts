import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Ingest } from '../../uploads/ingest.ts';
import type { IssuedLink, MediaService } from '../../media/media-service.ts';
import { SORTS } from '../../media/media-repo.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { MediaItem, mediaJson } from '../media-json.ts';
import { errors, iso, IsoTime } from '../schemas.ts';
import { receiveMultipart } from '../multipart-upload.ts';

export interface MediaRouteDeps {
  media: MediaService;
  ingest: Ingest;
  linkMaxTtl: number;
}

const tags = ['media'];
const security = [{ bearer: [] }];
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const Visibility = Type.Union([Type.Literal('private'), Type.Literal('public')]);
const Link = Type.Object(
  {
    id: Type.String({ description: 'The link id, for revoking it' }),
    url: Type.String({
      description: 'The content URL with the token; the same token works on the thumbnail',
    }),
    createdAt: IsoTime,
    expiresAt: IsoTime,
  },
  { $id: 'Link' },
);

/** The token is the credential: it appears in this URL only, never in logs (see logger.ts). */
function linkJson(link: IssuedLink) {
  return {
    id: link.id,
    url: `/api/media/${link.mediaId}/content?token=${encodeURIComponent(link.token)}`,
    createdAt: iso(link.createdAt),
    expiresAt: iso(link.expiresAt),
  };
}

/** A media item in the trash: the item as it was, and when it was moved there. */
const TrashedItem = Type.Object({ ...MediaItem.properties, deletedAt: IsoTime }, { $id: 'TrashedMediaItem' });

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'lowercase hex SHA-256' });
/** Digests per lookup request (the contract's limit). */
const LOOKUP_MAX = 1000;
/**
 * A lookup body of 1000 digests is about 67 KB compact (66 bytes a digest with quotes and comma),
 * over the app's 64 KiB JSON limit; 72 KiB admits it also pretty-printed (JSON.stringify's two-space
 * indent makes it 72,0xx bytes), and little more.
 */
const LOOKUP_BODY_LIMIT = 72 * 1024;

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

  app.post(
    '/api/media/lookup',
    {
      bodyLimit: LOOKUP_BODY_LIMIT,
      schema: {
        tags,
        security,
        summary: 'Which of these SHA-256 digests you have stored, with your newest item of each',
        description:
          'Lets a sync client skip files it already stored. Digests you have no item for are left out; ' +
          "other users' items are never considered (also for administrators).",
        body: Type.Object(
          { sha256: Type.Array(Sha256, { maxItems: LOOKUP_MAX }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            found: Type.Record(Type.String(), Type.String(), {
              description: 'digest → id of your newest item with those bytes',
            }),
          }),
          ...errors(400, 401, 413),
        },
      },
    },
    async (request) => {
      const found = await deps.media.lookup(callerOf(request), request.body.sha256);
      return { found: Object.fromEntries(found) };
    },
  );

  app.get(
    '/api/media/trash',
    {
      schema: {
        tags,
        security,
        summary: 'Your items in the trash, most recently deleted first, with cursor pagination',
        description:
          'Only when STOWAGE_TRASH_DAYS is above 0 does DELETE move items here; they are removed for ' +
          'good that many days after their deletion. Trashed items still count toward usage and quota.',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
          cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(TrashedItem),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors(400, 401),
        },
      },
    },
    async (request) => {
      const page = await deps.media.listTrash(callerOf(request), request.query);
      return {
        items: page.items.map((item) => ({ ...mediaJson(item), deletedAt: iso(item.deletedAt) })),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.post(
    '/api/media/:id/restore',
    {
      schema: {
        tags,
        security,
        summary: 'Take an item out of the trash, as it was (its links, which ended, excepted)',
        params: IdParams,
        response: { 200: MediaItem, ...errors(401, 404) },
      },
    },
    async (request) => mediaJson(await deps.media.restore(callerOf(request), request.params.id)),
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
        summary: 'Delete the item (to the trash when it is on), or with permanent=true at once',
        description:
          'With STOWAGE_TRASH_DAYS above 0 the item moves to the trash (its links end); otherwise, ' +
          'or with permanent=true (also for an item already in the trash), the item, its file and ' +
          'every rendition are removed at once.',
        params: IdParams,
        querystring: Type.Object({
          permanent: Type.Optional(
            Type.Boolean({ default: false, description: 'remove at once, also from the trash' }),
          ),
        }),
        response: { 204: Type.Null(), ...errors(400, 401, 404) },
      },
    },
    async (request, reply) => {
      await deps.media.delete(callerOf(request), request.params.id, {
        permanent: request.query.permanent === true,
      });
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
        summary: 'Create a signed, expiring, revocable link to the content (and thumbnails)',
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
          201: Type.Object({ id: Type.String(), url: Type.String(), expiresAt: IsoTime }),
          ...errors(400, 401, 404),
        },
      },
    },
    async (request, reply) => {
      const link = await deps.media.createLink(
        callerOf(request),
        request.params.id,
        request.body.expiresIn ?? 3600,
      );
      const { id, url, expiresAt } = linkJson(link);
      return reply.code(201).send({ id, url, expiresAt });
    },
  );

  app.get(
    '/api/media/:id/links',
    {
      schema: {
        tags,
        security,
        summary: "The item's live (unexpired, unrevoked) signed links, newest first",
        params: IdParams,
        response: { 200: Type.Object({ items: Type.Array(Link) }), ...errors(401, 404) },
      },
    },
    async (request) => {
      const links = await deps.media.listLinks(callerOf(request), request.params.id);
      return { items: links.map(linkJson) };
    },
  );

  app.delete(
    '/api/media/:id/links/:linkId',
    {
      schema: {
        tags,
        security,
        summary: 'Revoke a signed link: refused (401) from then on, on every instance within a second',
        params: Type.Object({
          id: Type.String({ minLength: 1, maxLength: 64 }),
          linkId: Type.String({ minLength: 1, maxLength: 64 }),
        }),
        response: { 204: Type.Null(), ...errors(401, 404) },
      },
    },
    async (request, reply) => {
      await deps.media.revokeLink(callerOf(request), request.params.id, request.params.linkId);
      return reply.code(204).send(null);
    },
  );
}
