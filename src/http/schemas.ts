import { Type } from 'typebox';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      details: Type.Object({}, { additionalProperties: true }),
    }),
  },
  { $id: 'Error', description: 'Every error has this shape.' },
);

/** Error responses documented for a route, by status. */
export function errors(...statuses: number[]): Record<number, typeof ErrorResponse> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
}

export const IsoTime = Type.String({ format: 'date-time' });

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
