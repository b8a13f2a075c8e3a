import { fileTypeFromBuffer } from 'file-type';

export type MediaKind = 'image' | 'video' | 'audio' | 'document';

/** How many leading bytes the type is decided from. */
export const SNIFF_BYTES = 4100; // file-type's own "reasonable detection size"

/** One canonical name per format, whichever alias a detector or an operator uses. */
const ALIASES: Record<string, string> = {
  'audio/ogg; codecs=opus': 'audio/opus',
  'video/x-matroska': 'video/matroska',
  'audio/x-flac': 'audio/flac',
  'audio/x-wav': 'audio/wav',
  'audio/wave': 'audio/wav',
  'audio/vnd.wave': 'audio/wav',
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'audio/mp3': 'audio/mpeg',
};

export function canonicalMime(mime: string): string {
  const lower = mime.toLowerCase().trim();
  return ALIASES[lower] ?? lower;
}

/**
 * The real type of a file from its first bytes, or null when the content has no recognisable
 * binary signature (text, HTML, SVG, scripts): such content is never trusted.
 */
export async function detectType(head: Uint8Array): Promise<{ mime: string; ext: string } | null> {
  const found = await fileTypeFromBuffer(head);
  return found ? { mime: canonicalMime(found.mime), ext: found.ext } : null;
}

export function kindOf(mime: string): MediaKind {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'document';
}

/** Allow-list with `type/*` wildcards. Script-capable types are refused even if configured. */
export class TypePolicy {
  readonly #exact = new Set<string>();
  readonly #families = new Set<string>();

  constructor(allowed: string[]) {
    for (const entry of allowed) {
      const mime = canonicalMime(entry);
      if (mime.endsWith('/*')) this.#families.add(mime.slice(0, -2));
      else this.#exact.add(mime);
    }
  }

  allows(mime: string): boolean {
    const canonical = canonicalMime(mime);
    if (NEVER.has(canonical)) return false;
    return this.#exact.has(canonical) || this.#families.has(canonical.split('/')[0] ?? '');
  }
}

/** Types a browser may execute or that carry active content; `image/*` must not admit SVG. */
const NEVER = new Set([
  'image/svg+xml',
  'text/html',
  'application/xhtml+xml',
  'application/javascript',
  'text/javascript',
  'application/x-msdownload',
  'application/x-elf',
  'application/x-mach-binary',
  'application/x-sh',
  'application/x-shockwave-flash',
  'application/java-archive',
]);
