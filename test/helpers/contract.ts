import { expect } from 'vitest';

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/**
 * The contract's error shape, whatever client produced the response: the status, a JSON body that
 * is `{ error: { code, message, details } }` and nothing else, and no stack trace or server path.
 */
export function expectErrorShape(
  res: { status: number; contentType: string | undefined; text: string },
  status: number,
  code: string,
): ErrorBody {
  expect({ status: res.status, body: res.text }).toMatchObject({ status });
  expect(res.contentType).toMatch(/^application\/json/);
  const body = JSON.parse(res.text) as ErrorBody;
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.details).toBeTypeOf('object');
  expect(body.error.details).not.toBeNull();
  expect(Array.isArray(body.error.details)).toBe(false);
  expect(res.text).not.toMatch(/\bat .+\(.+:\d+:\d+\)|node_modules|\/src\/|\.ts\b/);
  return body;
}

/** A response read in full: app.inject's (statusCode) or the media helpers' (status). */
type ReadResponse = { headers: Record<string, unknown>; body: string } & (
  { statusCode: number } | { status: number }
);

/**
 * Asserts the contract's error shape (expectErrorShape) on any response the tests hold: a fetch
 * Response (read here, hence the promise) or one already read (app.inject's or the media helpers').
 */
export function expectError(res: Response, status: number, code: string): Promise<ErrorBody>;
export function expectError(res: ReadResponse, status: number, code: string): ErrorBody;
export function expectError(
  res: Response | ReadResponse,
  status: number,
  code: string,
): ErrorBody | Promise<ErrorBody> {
  if (res instanceof Response) {
    const contentType = res.headers.get('content-type') ?? undefined;
    return res
      .text()
      .then((text) => expectErrorShape({ status: res.status, contentType, text }, status, code));
  }
  const contentType = res.headers['content-type'];
  return expectErrorShape(
    {
      status: 'statusCode' in res ? res.statusCode : res.status,
      contentType: typeof contentType === 'string' ? contentType : undefined,
      text: res.body,
    },
    status,
    code,
  );
}
