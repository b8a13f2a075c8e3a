export type ThumbnailFormat = 'webp' | 'avif' | 'jpeg';

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

interface Candidate {
  format: ThumbnailFormat;
  q: number;
  /** Named by its own media type rather than reached through `image/*` or `*\/*`. */
  explicit: boolean;
  /** Where in the header an explicit mention stands: browsers list what they prefer first. */
  position: number;
}

const SUBTYPES: Record<ThumbnailFormat, string> = { webp: 'webp', avif: 'avif', jpeg: 'jpeg' };
const TOKEN = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** RFC 9110 qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * The thumbnail format for a request's Accept header: WebP unless the client prefers AVIF or JPEG,
 * by q-value first, then by naming it explicitly ahead of the others (browsers send
 * `image/avif,image/webp,…` to say they would rather have AVIF). Formats reached only through a
 * wildcard rank WebP, JPEG, AVIF: a bare `*\/*` (curl) says nothing about AVIF support, while
 * every client decodes JPEG. With nothing acceptable, or no usable header, WebP.
 */
export function negotiateFormat(acceptHeader: string | undefined): ThumbnailFormat {
  if (acceptHeader === undefined) return 'webp';
  const ranges = parseAccept(acceptHeader);
  const candidates = (Object.keys(SUBTYPES) as ThumbnailFormat[])
    .map((format) => rate(format, ranges))
    .filter((candidate) => candidate.q > 0)
    .sort(
      (a, b) =>
        b.q - a.q || Number(b.explicit) - Number(a.explicit) || a.position - b.position || rank(b) - rank(a),
    );
  return candidates[0]?.format ?? 'webp';
}

function rank(candidate: Candidate): number {
  switch (candidate.format) {
    case 'webp':
      return 3;
    case 'avif':
      return 0;
    case 'jpeg':
      return 1;
  }
}

/** The q of the most specific range matching `image/<format>` (RFC 9110 §12.5.1). */
function rate(format: ThumbnailFormat, ranges: MediaRange[]): Candidate {
  let best: { specificity: number; q: number; position: number } | undefined;
  for (const [position, range] of ranges.entries()) {
    const specificity =
      range.type === 'image' && range.subtype === SUBTYPES[format]
        ? 2
        : range.type === 'image' && range.subtype === '*'
          ? 1
          : range.type === '*'
            ? 0
            : -1;
    if (specificity < 0) continue;
    // Of two equally specific ranges (a repeated type), the more generous one wins.
    if (!best || specificity > best.specificity || (specificity === best.specificity && range.q > best.q)) {
      best = { specificity, q: range.q, position };
    }
  }
  const explicit = best?.specificity === 2;
  return { format, q: best?.q ?? 0, explicit, position: explicit ? (best?.position ?? 0) : Infinity };
}

/** Malformed entries are dropped one by one, so one bad range does not spoil the others. */
function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const entry of header.split(',')) {
    const [mediaRange = '', ...params] = entry.split(';');
    const slash = mediaRange.indexOf('/');
    const type = mediaRange.slice(0, slash).trim().toLowerCase();
    const subtype = mediaRange
      .slice(slash + 1)
      .trim()
      .toLowerCase();
    if (slash < 0 || !TOKEN.test(type) || !TOKEN.test(subtype) || (type === '*' && subtype !== '*')) continue;
    const q = qOf(params);
    if (q !== undefined) ranges.push({ type, subtype, q });
  }
  return ranges;
}

/** undefined for an invalid q; parameters after q are accept-extensions and ignored. */
function qOf(params: string[]): number | undefined {
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
    const value = param.slice(eq + 1).trim();
    return QVALUE.test(value) ? Number(value) : undefined;
  }
  return 1;
}
