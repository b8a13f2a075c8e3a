import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';

/**
 * Two validators: JSON bodies are checked exactly as sent (no type coercion, unknown fields are
 * errors, never silently removed), while query strings and path parameters, which are text by
 * nature, are coerced to the declared types.
 */
export function installValidators(app: FastifyInstance): void {
  const common = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false } as const;
  const body = new Ajv({ ...common, coerceTypes: false });
  const text = new Ajv({ ...common, coerceTypes: 'array' });
  for (const ajv of [body, text]) ajv.addKeyword({ keyword: 'example' });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? body : text).compile(schema));
}
