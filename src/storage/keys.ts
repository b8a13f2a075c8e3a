import { assertValidKey } from './blob-store.ts';

/** A prefix is a valid key followed by "/"; the empty prefix (everything) only where allowed. */
export function assertPrefix(prefix: string, allowEmpty: boolean): void {
  if (prefix === '' && allowEmpty) return;
  if (!prefix.endsWith('/')) throw new Error(`invalid blob prefix: ${JSON.stringify(prefix)}`);
  assertValidKey(prefix.slice(0, -1));
}

/** Ranges are resolved against the blob's size by the caller; here they only need to be sane. */
export function assertRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range: ${start}-${end}`);
  }
}
