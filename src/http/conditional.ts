import rangeParser from 'range-parser';

/** What a representation offers to conditional and range requests. */
export interface Validators {
  /** A strong entity tag, quoted. */
  etag: string;
  lastModified: Date;
}

export interface RequestConditions {
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifRange?: string;
  range?: string;
}

function tags(header: string): string[] {
  return header.split(',').map((t) => t.trim().replace(/^W\//, ''));
}

function seconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/** RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since; either may answer 304. */
export function notModified(v: Validators, c: RequestConditions): boolean {
  if (c.ifNoneMatch !== undefined) {
    const list = tags(c.ifNoneMatch);
    return list.includes('*') || list.includes(v.etag.replace(/^W\//, ''));
  }
  if (c.ifModifiedSince !== undefined) {
    const since = Date.parse(c.ifModifiedSince);
    return !Number.isNaN(since) && seconds(v.lastModified) <= Math.floor(since / 1000);
  }
  return false;
}

export type RangeDecision =
  { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * One byte range or the whole representation. Several ranges are answered with the whole file
 * (allowed by RFC 9110 §14.2), so an abusive multi-range request costs at most one full read.
 * A malformed Range header is ignored, as the RFC asks; If-Range that does not match (strong ETag
 * or exact date) also means the whole file.
 */
export function decideRange(size: number, v: Validators, c: RequestConditions): RangeDecision {
  if (c.range === undefined) return { kind: 'full' };
  if (c.ifRange !== undefined && !ifRangeMatches(v, c.ifRange)) return { kind: 'full' };
  if (c.range.length > 1024 || hasReversedSpec(c.range)) return { kind: 'full' };
  const parsed = rangeParser(size, c.range, { combine: true });
  if (parsed === -1) return { kind: 'unsatisfiable' };
  if (parsed === -2 || parsed.type !== 'bytes' || parsed.length !== 1) return { kind: 'full' };
  const [range] = parsed;
  if (!range) return { kind: 'full' };
  return { kind: 'partial', start: range.start, end: range.end };
}

/** RFC 9110 §13.1.5: If-Range holds a strong ETag (compared strongly) or an exact date. */
export function ifRangeMatches(v: Validators, ifRange: string): boolean {
  const ir = ifRange.trim();
  if (ir.startsWith('"')) return ir === v.etag;
  const date = Date.parse(ir);
  return !Number.isNaN(date) && Math.floor(date / 1000) === seconds(v.lastModified);
}

/**
 * RFC 9110 §14.1.1: a byte-range-spec whose last-pos is below its first-pos ("bytes=5-2") makes
 * the whole header invalid, to be ignored; range-parser would call it unsatisfiable (416) instead.
 */
function hasReversedSpec(range: string): boolean {
  const specs = range.slice(range.indexOf('=') + 1).split(',');
  return specs.some((spec) => {
    const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(spec);
    return match !== null && BigInt(match[2]!) < BigInt(match[1]!);
  });
}
