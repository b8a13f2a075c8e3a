import type { ScanVerdict } from './scanner.ts';

/** clamd's replies are one short line; anything longer is not clamd. */
const MAX_REPLY_BYTES = 4096;

/** Collects one NUL-terminated reply (the `z` command form) from a socket's data events. */
export class ReplyReader {
  #chunks: Buffer[] = [];
  #length = 0;
  overflowed = false;

  /** Returns the reply once its NUL arrived; bytes after it are ignored. */
  push(data: Buffer): string | undefined {
    const end = data.indexOf(0);
    const part = end === -1 ? data : data.subarray(0, end);
    this.#length += part.length;
    if (this.#length > MAX_REPLY_BYTES) {
      this.overflowed = true;
      return undefined;
    }
    this.#chunks.push(part);
    if (end === -1) return undefined;
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

const FOUND = /^stream: (.+) FOUND$/;
/** With ExtendedDetectionInfo, clamd appends `(hash:size)` to hash-based signature names. */
const EXTENDED_INFO = /\([0-9a-f]+:\d+\)$/i;

/** The verdict in an INSTREAM reply, or undefined when the reply is not one. */
export function parseReply(reply: string): ScanVerdict | undefined {
  if (reply === 'stream: OK') return { clean: true };
  const signature = FOUND.exec(reply)?.[1]?.replace(EXTENDED_INFO, '').trim();
  if (signature === undefined || signature === '' || /\s/.test(signature)) return undefined;
  return { clean: false, signature };
}
