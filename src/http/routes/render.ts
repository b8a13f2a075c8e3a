import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Caller } from '../../auth/caller.ts';
import { AppError, validationFailed } from '../../errors.ts';
import type { RenderSpec } from '../../images/image-processor.ts';
import { negotiateFormat } from '../../images/negotiate-format.ts';
import type { Thumbnails } from '../../media/thumbnails.ts';
import { clientAddressKey } from '../../util/client-address.ts';
import type { CounterStore } from '../../util/counter-store.ts';
import { errors } from '../schemas.ts';
import { assertRenderable, serveRendition } from '../serve-rendition.ts';
import { ContentParams, readableItemAndCaller, type ContentDeps } from './content.ts';

export interface RenderDeps extends ContentDeps {
  thumbnails: Thumbnails;
  /** The rate-limit counters (Redis when configured, so every instance counts together). */
  counters: CounterStore;
  /** Renditions rendered or fetched per minute per user, or per client address without a token; 0 is off. */
  perMinute: number;
}

const WINDOW_MS = 60_000;
const Side = Type.Integer({ minimum: 16, maximum: 2560 });

export async function renderRoutes(base: FastifyInstance, deps: RenderDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/media/:id/render',
    schema: {
      tags: ['media'],
      summary: 'An image rendition on demand (size, fit, format, quality), metadata stripped',
      description:
        'w and/or h from 16 to 2560; fit inside (never enlarged), contain (padded) or cover (cropped); ' +
        'format webp, avif, jpeg or png, else chosen from Accept; q 30–95. Same access as content.',
      params: ContentParams,
      querystring: Type.Object(
        {
          w: Type.Optional(Side),
          h: Type.Optional(Side),
          fit: Type.Optional(
            Type.Union([Type.Literal('inside'), Type.Literal('contain'), Type.Literal('cover')]),
          ),
          format: Type.Optional(
            Type.Union([
              Type.Literal('webp'),
              Type.Literal('avif'),
              Type.Literal('jpeg'),
              Type.Literal('png'),
            ]),
          ),
          q: Type.Optional(Type.Integer({ minimum: 30, maximum: 95 })),
          token: Type.Optional(Type.String({ maxLength: 2048 })),
        },
        // A misspelt parameter would otherwise be a silently different rendition.
        { additionalProperties: false },
      ),
      response: errors(400, 401, 404, 415, 422, 429, 503),
    },
    handler: async (request, reply) => {
      const { id } = request.params;
      const { w, h, fit = 'inside', format, q = 80, token } = request.query;
      if (w === undefined && h === undefined) {
        throw validationFailed({ path: 'query', message: 'w or h (or both) is required' });
      }
      const { item, caller } = await readableItemAndCaller(deps, request, id, token);
      assertRenderable(item);
      const spec: RenderSpec = {
        width: w,
        height: h,
        fit,
        format: format ?? negotiateFormat(request.headers.accept),
        quality: q,
      };
      return serveRendition(request, reply, deps.storage, item, {
        format: spec.format,
        negotiated: format === undefined,
        variant: `r${w ?? 0}x${h ?? 0}-${fit}-q${q}`,
        // Counted only for answers with a body: a revalidation (304) costs no render.
        locate: async () => {
          await limitRenders(deps, request, caller);
          return deps.thumbnails.render(item, spec);
        },
      });
    },
  });
}

/**
 * Renders are the costliest thing a request can ask for, and any number of sizes can be asked
 * for: each user has a budget per minute, and requests without a Bearer token (links, public
 * items) one per client address (an IPv6 /64), so no one fills the CPU or the cache alone.
 */
async function limitRenders(deps: RenderDeps, request: FastifyRequest, caller: Caller | null): Promise<void> {
  if (deps.perMinute <= 0) return;
  const key = caller ? `render:user:${caller.username}` : `render:addr:${clientAddressKey(request.ip)}`;
  let window;
  try {
    window = await deps.counters.increment(key, WINDOW_MS);
  } catch (error) {
    // A limit that cannot be counted is not applied: refusing everyone would be worse.
    request.log.warn({ err: error }, 'render rate limit: counter unavailable');
    return;
  }
  if (window.count <= deps.perMinute) return;
  throw new AppError('RATE_LIMITED', 'Too many renditions requested. Try again later.', {
    headers: { 'Retry-After': String(Math.max(1, Math.ceil(window.resetInMs / 1000))) },
  });
}
