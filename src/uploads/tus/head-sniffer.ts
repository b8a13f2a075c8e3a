import { Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../../errors.ts';
import { SNIFF_BYTES, detectType, type TypePolicy } from '../file-types.ts';

/**
 * Looks at the first bytes of a resumable upload as they arrive and stops the request when they
 * show a type that is not allowed, so a refused file costs one chunk, not gigabytes. When a first
 * request carries too few bytes to decide, the decision is left to the ingest at completion.
 */
export class HeadSniffer extends Transform {
  readonly #policy: TypePolicy;
  #head: Buffer[] = [];
  #size = 0;
  #decided = false;
  rejection: AppError | undefined;

  constructor(policy: TypePolicy) {
    super();
    this.#policy = policy;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#decided) return done(null, chunk);
    this.#head.push(chunk);
    this.#size += chunk.length;
    if (this.#size < SNIFF_BYTES) return done();
    this.#decide(true).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    if (this.#decided) return done();
    this.#decide(false).then(() => done(), done);
  }

  async #decide(complete: boolean): Promise<void> {
    this.#decided = true;
    const head = Buffer.concat(this.#head);
    this.#head = [];
    const type = head.length > 0 ? await detectType(head) : null;
    if (type ? !this.#policy.allows(type.mime) : complete) {
      this.rejection = new AppError(
        'UNSUPPORTED_MEDIA_TYPE',
        type
          ? `Files of type ${type.mime} are not accepted.`
          : 'The type of this file could not be recognised from its content.',
        type ? { details: { detectedType: type.mime } } : {},
      );
      throw this.rejection;
    }
    this.push(head);
  }
}
