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
