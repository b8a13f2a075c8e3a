import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../../errors.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { PARTIAL_UPLOAD, isUploadBody } from '../../uploads/tus/tus-headers.ts';
import { TUS_PATH, type TusOutcome, type TusUploads } from '../../uploads/tus/tus-uploads.ts';

const tags = ['uploads'];
const description =
  'tus 1.0.0 resumable uploads (creation, creation-with-upload, creation-defer-length, termination, expiration, checksum, concatenation).';

/** The protocol handler's answer; its errors go through the one error handler, with tus's headers. */
function send(reply: FastifyReply, { status, headers, error }: TusOutcome): FastifyReply {
  void reply.headers(headers);
  if (error) throw error;
  return reply.code(status).send();
}

/** Before Fastify parses a body: tus bytes are application/offset+octet-stream and nothing else (415). */
async function offsetStreamOnly(request: FastifyRequest): Promise<void> {
  const contentType = request.headers['content-type'];
  const required = request.method === 'PATCH' || (request.method === 'POST' && contentType !== undefined);
  if (required && !isUploadBody(request.headers)) {
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      'tus bytes must be sent as application/offset+octet-stream.',
      {
        headers: { 'Tus-Resumable': '1.0.0' },
      },
    );
  }
}

/** Upload requests: every one needs the caller's token, and only the creator can see an upload. */
export async function tusRoutes(app: FastifyInstance, tus: TusUploads): Promise<void> {
  // The bytes go to tus untouched: Fastify must not read or buffer the body.
  app.addContentTypeParser(['application/offset+octet-stream', PARTIAL_UPLOAD], (_request, _payload, done) =>
    done(null),
  );

  app.post(
    TUS_PATH,
    {
      schema: { tags, description, summary: 'Create an upload (tus creation)', security: [{ bearer: [] }] },
      onRequest: offsetStreamOnly,
    },
    async (request, reply) => send(reply, await tus.handle(request.raw, callerOf(request).username)),
  );
  app.route({
    method: ['HEAD', 'PATCH', 'DELETE'],
    url: `${TUS_PATH}/:id`,
    schema: {
      tags,
      description,
      summary: 'Offset (HEAD), append bytes (PATCH) or terminate (DELETE) an upload',
      security: [{ bearer: [] }],
      // Ids are opaque: one that cannot exist is simply no upload (404 from assertOwner), not a 400.
      params: Type.Object({ id: Type.String({ maxLength: 256 }) }),
    },
    onRequest: offsetStreamOnly,
    handler: async (request, reply) => {
      const owner = callerOf(request).username;
      // The id is the path's, and the only upload tus may act on in this request.
      const { id } = request.params as { id: string };
      await tus.assertOwner(id, owner);
      return send(reply, await tus.handle(request.raw, owner, id));
    },
  });
}

/**
 * With CORS on, @fastify/cors answers every OPTIONS request itself and refuses one without Origin
 * as an invalid preflight (a 400 in plain text). On these routes it only adds its headers, so a
 * browser's preflight still works and a tus client's discovery request gets tus's answer.
 */
const DISCOVERY_CONFIG = { cors: { strictPreflight: false, preflightContinue: true } };

/** Capability discovery (OPTIONS) needs no credentials, so browsers' preflights and clients work. */
export async function tusDiscoveryRoutes(app: FastifyInstance, tus: TusUploads): Promise<void> {
  for (const url of [TUS_PATH, `${TUS_PATH}/:id`]) {
    app.options(url, { schema: { hide: true }, config: DISCOVERY_CONFIG }, async (request, reply) =>
      send(reply, await tus.handle(request.raw, '')),
    );
  }
}
