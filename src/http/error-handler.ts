import crypto from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, errorBody, type ErrorCode, isAppError } from '../errors.ts';
import { LimiterFullError } from '../util/limiter.ts';
import { BlobNotFoundError, isStorageFull } from '../storage/blob-store.ts';
import { asDependencyUnavailable } from '../util/dependency-failure.ts';

interface ValidationIssue {
  path: string;
  message: string;
}

/**
 * The one place where failures become HTTP responses. Fastify's own errors (bad JSON, body too
 * large, unsupported content type, schema validation) are translated to the contract's codes;
 * anything unexpected becomes a bare 500 whose cause goes to the log with the request id.
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    // A request cut off by a timeout fails in its route as a broken body stream would; what the
    // client got (if anything) was the 408, so that is what this request ended with.
    const appError = timedOut.has(request)
      ? new AppError('REQUEST_TIMEOUT', undefined, { cause: error })
      : toAppError(error);
    if (appError.code === 'INSUFFICIENT_STORAGE') {
      // The operator's problem, not the client's: said at error level, with the system's error.
      request.log.error({ err: appError.cause ?? error }, 'storage is full: request refused with 507');
    } else if (
      appError.status >= 500 &&
      appError.code !== 'SCANNER_UNAVAILABLE' &&
      appError.code !== 'UNAVAILABLE'
    ) {
      request.log.error({ err: error }, 'request failed');
    } else if (appError.status >= 500) {
      request.log.warn({ err: appError.cause ?? error }, appError.message);
    }
    return sendError(reply, appError);
  });

  app.setNotFoundHandler((_request, reply) => sendError(reply, new AppError('NOT_FOUND', 'No such route.')));
}

/**
 * For Fastify's `frameworkErrors` option: errors raised before routing (a malformed URL, a path
 * parameter over maxParamLength) never reach the error handler or the hooks, so without this they
 * would answer in Fastify's own shape, without a request id or nosniff.
 */
export function handleFrameworkError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  void reply
    .header('X-Content-Type-Options', 'nosniff')
    .header('X-Request-Id', request.id)
    .header('Cache-Control', 'no-store');
  void sendError(reply, toAppError(error));
}

const timedOut = new WeakSet<FastifyRequest>();

/** Records that a request was cut off by a timeout (plugins/timeouts.ts). */
export function markTimedOut(request: FastifyRequest): void {
  timedOut.add(request);
}

/**
 * A whole HTTP/1.1 error response in the contract's shape, for a connection that has no Fastify
 * reply to send it with (a request not yet parsed, or one cut off by a timeout). It closes the
 * connection: what follows on it cannot be trusted to start at a request boundary.
 */
export function rawErrorResponse(error: AppError, requestId: string = crypto.randomUUID()): string {
  const body = JSON.stringify(errorBody(error));
  return [
    `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? 'Error'}`,
    `Date: ${new Date().toUTCString()}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    'Cache-Control: no-store',
    'X-Content-Type-Options: nosniff',
    `X-Request-Id: ${requestId}`,
    '',
    body,
  ].join('\r\n');
}

/**
 * For Fastify's `clientErrorHandler`: errors of a connection before a request could be parsed
 * (headers past `headersTimeout`, unparsable or oversized headers). Fastify's default answers
 * in its own shape; this answers in the contract's, then closes the connection as Node does.
 */
export function handleClientError(this: FastifyInstance, error: Error, socket: Socket): void {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET' || socket.destroyed) return;
  this.log.debug({ err: error }, 'client connection error');
  // Node's own rule: no answer once a response on this connection has begun (it would corrupt it).
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  // A connection that never sent a byte gets no answer, only closed: there was no request.
  if (socket.writable && !inFlight?.headersSent && socket.bytesRead > 0) {
    const answer =
      code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new AppError('REQUEST_TIMEOUT', 'The request headers did not arrive in time.')
        : code === 'HPE_HEADER_OVERFLOW'
          ? new AppError('BAD_REQUEST', 'The request headers are too large.')
          : new AppError('BAD_REQUEST', 'The request is malformed.');
    socket.write(rawErrorResponse(answer));
  }
  socket.destroy(error);
}

export function sendError(reply: FastifyReply, error: AppError): FastifyReply {
  // A failed request must not leave a half-set content response behind (e.g. Content-Disposition);
  // the error's own headers (a 416's Content-Range, Retry-After) are applied after this cleanup.
  for (const name of ['content-disposition', 'content-length', 'content-range', 'etag', 'last-modified']) {
    void reply.removeHeader(name);
  }
  if (error.code === 'UNAUTHENTICATED' && !error.headers['WWW-Authenticate']) {
    void reply.header('WWW-Authenticate', 'Bearer');
  }
  for (const [name, value] of Object.entries(error.headers)) void reply.header(name, value);
  return reply.code(error.status).type('application/json; charset=utf-8').send(errorBody(error));
}

export function toAppError(error: unknown): AppError {
  if (isAppError(error)) return error;
  // A blob deleted between finding its item and opening it: the item is gone, not broken.
  if (error instanceof BlobNotFoundError)
    return new AppError('NOT_FOUND', 'No such media item.', { cause: error });
  if (isStorageFull(error)) return new AppError('INSUFFICIENT_STORAGE', undefined, { cause: error });
  // The database or Redis down, unreachable or timing out: 503 with Retry-After, never a 500.
  const unavailable = asDependencyUnavailable(error);
  if (unavailable) return unavailable;
  if (error instanceof LimiterFullError) {
    return new AppError('RATE_LIMITED', 'The server is busy; try again shortly.', {
      headers: { 'Retry-After': '1' },
    });
  }
  const fe = error as Partial<FastifyError> & { validation?: unknown[]; validationContext?: string };
  if (Array.isArray(fe.validation)) {
    return new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      details: { issues: validationIssues(fe.validation, fe.validationContext) },
      cause: error,
    });
  }
  const code = typeof fe.code === 'string' ? fe.code : '';
  const mapped = FRAMEWORK_CODES[code];
  if (mapped) return new AppError(mapped, undefined, { cause: error });
  if (error instanceof SyntaxError || code.startsWith('FST_ERR_CTP'))
    return new AppError('BAD_REQUEST', undefined, { cause: error });
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status === 429) {
    return new AppError('RATE_LIMITED', undefined, { cause: error, headers: { 'Retry-After': '60' } });
  }
  if (status >= 400 && status < 500)
    return new AppError(STATUS_CODES[status] ?? 'BAD_REQUEST', undefined, { cause: error });
  return new AppError('INTERNAL', undefined, { cause: error });
}

const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_REQ_FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_PARTS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'BAD_REQUEST',
  FST_FIELDS_LIMIT: 'BAD_REQUEST',
  FST_PROTO_VIOLATION: 'BAD_REQUEST',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST',
};

const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
};

interface AjvIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: { missingProperty?: string; additionalProperty?: string };
}

function validationIssues(errors: unknown[], context: string | undefined): ValidationIssue[] {
  return (errors as AjvIssue[]).map((e) => {
    let pointer = e.instancePath ?? '';
    let message = e.message ?? 'is invalid';
    if (e.params?.missingProperty) {
      pointer += `/${e.params.missingProperty}`;
      message = 'is required';
    } else if (e.params?.additionalProperty) {
      pointer += `/${e.params.additionalProperty}`;
      message = 'is not a known field';
    }
    const part = context === 'querystring' ? 'query' : (context ?? 'body');
    return { path: `${part}${pointer.replaceAll('/', '.')}`, message };
  });
}
