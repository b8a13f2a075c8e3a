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
    const appError = toAppError(error);
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
