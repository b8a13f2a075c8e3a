import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { AppError, type ErrorCode } from '../../errors.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { TUS_PATH, type TusOutcome, type TusUploads } from '../../uploads/tus/tus-uploads.ts';

const TUS_STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  410: 'GONE',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  460: 'CONFLICT',
};

const tags = ['uploads'];
const description = 'tus 1.0.0 resumable uploads (creation, creation-with-upload, termination, expiration).';

/**
 * Turns @tus/server's response into ours: our own refusals and its plain-text errors become the
 * contract's error body through the one error handler, and its CORS headers are dropped (ours
 * apply to every route).
 */
async function send(reply: FastifyReply, { response, error }: TusOutcome): Promise<FastifyReply> {
  const body = await response.text();
  for (const [name, value] of response.headers) {
    if (name.startsWith('access-control-') || name === 'content-length' || name === 'content-type') continue;
    // Deferred lengths would upload without a quota reservation, so they are not offered.
    const advertised = name === 'tus-extension' ? value.replace(/,?creation-defer-length/, '') : value;
    void reply.header(name, advertised);
  }
  if (error) throw error;
  if (response.status >= 400) {
    const code = TUS_STATUS_CODES[response.status] ?? (response.status >= 500 ? 'INTERNAL' : 'BAD_REQUEST');
    throw new AppError(code, response.status >= 500 ? undefined : body.trim() || undefined);
  }
  return reply.code(response.status).send(body === '' ? undefined : body);
}

/** Upload requests: every one needs the caller's token, and only the creator can see an upload. */
export async function tusRoutes(app: FastifyInstance, tus: TusUploads): Promise<void> {
  // The bytes go to tus untouched: Fastify must not read or buffer the body.
  app.addContentTypeParser('application/offset+octet-stream', (_request, _payload, done) => done(null));

  app.post(
    TUS_PATH,
    { schema: { tags, description, summary: 'Create an upload (tus creation)', security: [{ bearer: [] }] } },
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
    // Before Fastify parses a body: a PATCH carries tus's byte stream and nothing else (415).
    onRequest: async (request) => {
      if (request.method === 'PATCH' && !isOffsetStream(request.headers['content-type'])) {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'A PATCH must be application/offset+octet-stream.');
      }
    },
    handler: async (request, reply) => {
      const owner = callerOf(request).username;
      // The id is the path's, and the only upload tus may act on in this request.
      const { id } = request.params as { id: string };
      await tus.assertOwner(id, owner);
      return send(reply, await tus.handle(request.raw, owner, id));
    },
  });
}

function isOffsetStream(contentType: string | undefined): boolean {
  return contentType?.split(';')[0]?.trim().toLowerCase() === 'application/offset+octet-stream';
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
