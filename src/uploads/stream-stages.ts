import crypto from 'node:crypto';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { AppError } from '../errors.ts';
import { TypeDecider, type DetectedType, type TypePolicy } from './file-types.ts';

/**
 * Holds back the first bytes until the real type is known from them, and fails the stream with
 * 415 before anything else is written when the type is not allowed.
 */
export class TypeSniffer extends Transform {
  readonly #decider: TypeDecider;

  constructor(policy: TypePolicy) {
    super();
    this.#decider = new TypeDecider(policy);
  }

  get type(): DetectedType {
    return this.#decider.type;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#decider.decided) return done(null, chunk);
    const deciding = this.#decider.push(chunk);
    if (deciding) this.#release(deciding, done);
    else done();
  }

  override _flush(done: TransformCallback): void {
    if (this.#decider.decided) return done();
    this.#release(this.#decider.decide(), done);
  }

  #release(deciding: Promise<DetectedType>, done: TransformCallback): void {
    deciding.then((type) => {
      this.emit('type', type);
      this.push(this.#decider.takeHead());
      done();
    }, done);
  }
}

export function tooLarge(maxBytes: number): AppError {
  return new AppError('PAYLOAD_TOO_LARGE', `The file is larger than the limit of ${maxBytes} bytes.`);
}

export interface MeterLimits {
  maxBytes: number;
  /** Quota room left when the upload started, or null for no quota. */
  quotaRoom: number | null;
}

/**
 * One pass over the bytes: counts them against the size limit and quota, hashes them, and feeds
 * side streams (the scanner, an image spool) while passing them on to storage. A side stream is
 * waited for only when its buffer is full, so storage and the scanner work in parallel and the
 * slowest of them sets the pace (backpressure end to end); a side that fails fails the upload.
 */
export class Meter extends Transform {
  readonly #limits: MeterLimits;
  readonly #hash = crypto.createHash('sha256');
  readonly #sides: Writable[] = [];
  #bytes = 0;
  #digest: string | null = null;

  constructor(limits: MeterLimits) {
    super();
    this.#limits = limits;
  }

  /** Adds a stream that receives a copy of every byte; it is ended when the input ends. */
  tee(side: Writable): void {
    this.#sides.push(side);
    side.on('error', (error) => this.destroy(error));
  }

  get bytes(): number {
    return this.#bytes;
  }

  get sha256(): string {
    if (this.#digest === null) throw new Error('stream not finished');
    return this.#digest;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#limits.maxBytes) {
      return done(tooLarge(this.#limits.maxBytes));
    }
    if (this.#limits.quotaRoom !== null && this.#bytes > this.#limits.quotaRoom) {
      return done(new AppError('QUOTA_EXCEEDED'));
    }
    this.#hash.update(chunk);
    this.push(chunk);
    if (this.#sides.length === 0) return done();
    const waits = this.#sides.map((side) => write(side, chunk)).filter((wait) => wait !== undefined);
    if (waits.length === 0) return done();
    Promise.all(waits).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    this.#digest = this.#hash.digest('hex');
    Promise.all(this.#sides.map(endAcked)).then(() => done(), done);
  }
}

/** Writes; returns a wait only when the stream's buffer is full (until it drains or fails). */
function write(stream: Writable, chunk: Buffer): Promise<void> | undefined {
  if (stream.destroyed) return Promise.reject(stream.errored ?? new Error('side stream closed'));
  if (stream.write(chunk)) return undefined;
  return new Promise((resolve, reject) => {
    const settle = (error?: Error | null) => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(stream.errored ?? new Error('side stream closed'));
    stream.on('drain', onDrain);
    stream.on('close', onClose);
  });
}

function endAcked(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed) return reject(stream.errored ?? new Error('side stream closed'));
    stream.once('error', reject);
    stream.end(() => resolve());
  });
}
