/**
 * The error catalogue: every failure a client can see has one code and one status, mapped to HTTP
 * only here and in the error handler. Domain code throws AppError; the `cause` is kept for logs and
 * never leaves the server.
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, message: 'The request is malformed.' },
  VALIDATION_FAILED: { status: 400, message: 'The request is not valid.' },
  UNAUTHENTICATED: { status: 401, message: 'Authentication is required.' },
  INVALID_CREDENTIALS: { status: 401, message: 'Invalid username or password.' },
  FORBIDDEN: { status: 403, message: 'You are not allowed to do this.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed.' },
  CONFLICT: { status: 409, message: 'The request conflicts with the current state.' },
  GONE: { status: 410, message: 'The resource is gone.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request took too long to arrive.' },
  PRECONDITION_FAILED: { status: 412, message: 'A precondition failed.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The payload is too large.' },
  QUOTA_EXCEEDED: { status: 413, message: 'This upload would exceed your storage quota.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'This type of content is not accepted.' },
  RANGE_NOT_SATISFIABLE: { status: 416, message: 'The requested range cannot be satisfied.' },
  MALWARE_DETECTED: { status: 422, message: 'The file was rejected by the malware scanner.' },
  INVALID_FILE: { status: 422, message: 'The file cannot be processed.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests. Try again later.' },
  // tus checksum extension: the bytes of a PATCH did not match its Upload-Checksum.
  CHECKSUM_MISMATCH: { status: 460, message: 'The upload checksum does not match the bytes sent.' },
  INTERNAL: { status: 500, message: 'An unexpected error occurred.' },
  SCANNER_UNAVAILABLE: { status: 503, message: 'The malware scanner is unavailable; nothing was stored.' },
  UNAVAILABLE: { status: 503, message: 'The service is busy. Try again later.' },
  INSUFFICIENT_STORAGE: { status: 507, message: 'The server has no room to store this; nothing was kept.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface AppErrorOptions {
  /** Safe, client-visible details (never secrets, paths or stack traces). */
  details?: Record<string, unknown>;
  /** Extra response headers, e.g. Retry-After or Content-Range. */
  headers?: Record<string, string>;
  /** The underlying failure, for logs only. */
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, options: AppErrorOptions = {}) {
    super(message ?? ERRORS[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options.details ?? {};
    this.headers = options.headers ?? {};
  }
}

/** One entry of a 400 VALIDATION_FAILED's `details.issues`. */
export interface ValidationIssue {
  path: string;
  message: string;
}

/** 400 VALIDATION_FAILED naming what is wrong: the one way to build `details.issues`. */
export function validationFailed(
  issues: ValidationIssue | ValidationIssue[],
  message?: string,
  options: Omit<AppErrorOptions, 'details'> = {},
): AppError {
  return new AppError('VALIDATION_FAILED', message, {
    ...options,
    details: { issues: Array.isArray(issues) ? issues : [issues] },
  });
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details: Record<string, unknown> };
}

export function errorBody(error: AppError): ErrorBody {
  return { error: { code: error.code, message: error.message, details: error.details } };
}
