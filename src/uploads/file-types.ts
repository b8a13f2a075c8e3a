import type * as FileType from 'file-type';
import { AppError } from '../errors.ts';

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
 * Loaded with the first upload, not at start: a server that only serves files never needs it
 * (about 4 MiB of memory, bench/dependency-rss.ts).
 */
let fileType: Promise<typeof FileType> | undefined;

/**
 * The real type of a file from its first bytes, or null when the content has no recognisable
 * binary signature (text, HTML, SVG, scripts): such content is never trusted.
 */
export async function detectType(head: Uint8Array): Promise<{ mime: string; ext: string } | null> {
  const { fileTypeFromBuffer } = await (fileType ??= import('file-type'));
  const found = await fileTypeFromBuffer(head);
  return found ? { mime: canonicalMime(found.mime), ext: found.ext } : null;
}

export interface DetectedType {
  mime: string;
  ext: string;
}

/**
 * The one type check for every upload path: collects the first SNIFF_BYTES of a file, decides its
 * type from them, and refuses (415) what the policy does not allow or cannot be recognised. The
 * multipart stream (TypeSniffer) and the tus PATCHes (which may bring the head in several
 * requests) both feed it.
 */
export class TypeDecider {
  readonly #policy: TypePolicy;
  #head: Buffer[] = [];
  #headBytes = 0;
  #type: DetectedType | undefined;

  constructor(policy: TypePolicy) {
    this.#policy = policy;
  }

  get decided(): boolean {
    return this.#type !== undefined;
  }

  get type(): DetectedType {
    if (!this.#type) throw new Error('type not detected yet');
    return this.#type;
  }

  /** Adds bytes of the head; returns a promise (which rejects with 415) when they decide the type. */
  push(chunk: Buffer): Promise<DetectedType> | undefined {
    if (this.#type) return undefined;
    this.#head.push(chunk);
    this.#headBytes += chunk.length;
    return this.#headBytes >= SNIFF_BYTES ? this.decide() : undefined;
  }

  /** The bytes collected so far (for a stream that held them back), handed over once. */
  takeHead(): Buffer {
    const head = Buffer.concat(this.#head);
    this.#head = [];
    return head;
  }

  /** Decides from what was pushed (the whole file when it is shorter than SNIFF_BYTES). */
  async decide(): Promise<DetectedType> {
    if (this.#type) return this.#type;
    const head = Buffer.concat(this.#head);
    this.#head = [head];
    if (head.length === 0) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'The file is empty.');
    const type = await detectType(head);
    if (!type) {
      throw new AppError(
        'UNSUPPORTED_MEDIA_TYPE',
        'The type of this file could not be recognised from its content.',
      );
    }
    if (!this.#policy.allows(type.mime)) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Files of type ${type.mime} are not accepted.`, {
        details: { detectedType: type.mime },
      });
    }
    this.#type = type;
    return type;
  }
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
