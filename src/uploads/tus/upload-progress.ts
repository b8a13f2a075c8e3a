import crypto, { type Hash } from 'node:crypto';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { AppError } from '../../errors.ts';
import type { ScanSession, ScanVerdict } from '../../scan/scanner.ts';
import { TypeDecider, type DetectedType, type TypePolicy } from '../file-types.ts';
import { CHECKSUM_ALGORITHMS, type Checksum } from './tus-headers.ts';

/**
 * What this process has seen of one upload's bytes, in order from byte 0: the SHA-256 state, the
 * type decided from the first bytes, and an open scan. It is what lets the completing PATCH store
 * the file without reading it again. It lives in one process only: a restart, or a PATCH that
 * reached another instance (the stored offset is then ahead of `offset`), loses it, and the
 * completion falls back to one pass over the stored bytes.
 */
export class UploadProgress {
  offset = 0;
  hash: Hash = crypto.createHash('sha256');
  readonly type: TypeDecider;
  readonly #scan: ScanSession | undefined;
  #scanLost = false;

  /**
   * `scan` is the open scan when scanning is on; scanning on without one (no scan could be
   * spared for this upload) means the completion reads the file once for the scanner.
   */
  constructor(policy: TypePolicy, scanning: boolean, scan: ScanSession | undefined) {
    this.type = new TypeDecider(policy);
    this.#scan = scan;
    this.#scanLost = scanning && !scan;
    // A scanner that gives up between PATCHes (clamd's own read timeout closes an idle stream)
    // only costs the fast path: the completion then scans the stored bytes, failing closed.
    scan?.stream.on('error', () => (this.#scanLost = true));
    scan?.verdict().catch(() => (this.#scanLost = true));
  }

  get scanning(): boolean {
    return this.#scan !== undefined && !this.#scanLost && !this.#scan.stream.destroyed;
  }

  /** The scan's input while it is still usable; undefined once it failed. */
  get scanStream(): Writable | undefined {
    return this.#scanLost || !this.#scan || this.#scan.stream.destroyed ? undefined : this.#scan.stream;
  }

  get intact(): boolean {
    return !this.#scanLost;
  }

  /**
   * Everything the ingest needs about the whole file, or undefined when this process cannot vouch
   * for it (the scan was lost): then the file is read once more. A refused type throws 415.
   */
  async finish(
    size: number,
  ): Promise<{ size: number; sha256: string; mime: string; verdict: ScanVerdict } | undefined> {
    if (this.offset !== size) return undefined;
    const type = await this.type.decide();
    if (!this.intact) return undefined;
    let verdict: ScanVerdict = { clean: true };
    if (this.#scan) {
      const scan = this.#scan;
      try {
        await new Promise<void>((resolve, reject) => {
          scan.stream.once('error', reject);
          scan.stream.end(() => resolve());
        });
        verdict = await scan.verdict();
      } catch {
        // Lost on the way: the one pass over the stored bytes asks the scanner again.
        return undefined;
      }
    }
    return { size, sha256: this.hash.digest('hex'), mime: type.mime, verdict };
  }

  drop(): void {
    this.#scan?.abort();
  }
}

export interface PatchStageOptions {
  /** Bytes this request may carry; one more fails the stream with `limitError()`. */
  limit: number;
  limitError: () => AppError;
  checksum: Checksum | undefined;
  /** The upload's single-pass state, when this process has seen every byte before this PATCH. */
  progress: UploadProgress | undefined;
}

/**
 * The one pass over a PATCH's bytes on their way to the store: counted against the limit, the
 * checksum extension's digest, and the upload's running SHA-256, type decision and scan. The
 * SHA-256 runs on a copy of the upload's hash state, taken back only once the bytes are stored
 * (commit), so a PATCH cut short or refused leaves the state as it was.
 */
export class PatchStage extends Transform {
  readonly #opts: PatchStageOptions;
  readonly #checksum: Hash | undefined;
  readonly #hash: Hash | undefined;
  #bytes = 0;
  #checksumOk: boolean | undefined;
  /** Our own refusal (limit, type), as opposed to a failure of the client or the store. */
  refusal: AppError | undefined;

  constructor(opts: PatchStageOptions) {
    super({ highWaterMark: 1024 * 1024 });
    this.#opts = opts;
    this.#checksum = opts.checksum && crypto.createHash(CHECKSUM_ALGORITHMS[opts.checksum.algorithm]);
    this.#hash = opts.progress?.hash.copy();
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the bytes matched Upload-Checksum (true without one); known once the stream ended. */
  get checksumMatches(): boolean {
    return this.#checksumOk ?? false;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#opts.limit) return done(this.#refuse(this.#opts.limitError()));
    this.#checksum?.update(chunk);
    const progress = this.#opts.progress;
    if (!progress || !this.#hash) return done(null, chunk);
    this.#hash.update(chunk);
    const scan = progress.scanStream;
    const scanned = scan && !scan.write(chunk) ? drained(scan) : undefined;
    // Once decided, the head the type was read from is let go (it may be a whole 1 MiB chunk).
    const typed = progress.type.decided
      ? undefined
      : progress.type.push(chunk)?.then(() => progress.type.takeHead());
    if (!scanned && !typed) return done(null, chunk);
    Promise.all([scanned, typed]).then(
      () => done(null, chunk),
      (error: unknown) => done(error instanceof AppError ? this.#refuse(error) : null, chunk),
    );
  }

  override _flush(done: TransformCallback): void {
    const expected = this.#opts.checksum?.digest;
    this.#checksumOk = !expected || (this.#checksum?.digest().equals(expected) ?? false);
    done();
  }

  /** The bytes are stored: the upload's state moves on with them. */
  commitTo(progress: UploadProgress): void {
    if (!this.#hash) return;
    progress.hash = this.#hash;
    progress.offset += this.#bytes;
  }

  #refuse(error: AppError): AppError {
    this.refusal = error;
    return error;
  }
}

/** Resolves when a full stream drains; a stream that fails instead is simply no longer waited on. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const settle = () => {
      stream.off('drain', settle);
      stream.off('close', settle);
      resolve();
    };
    stream.on('drain', settle);
    stream.on('close', settle);
  });
}

export type { DetectedType };
