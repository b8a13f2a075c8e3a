import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { AppError } from '../errors.ts';
import type { ScanSession, ScanVerdict } from './scanner.ts';
import { parseReply, ReplyReader } from './clamd-reply.ts';

export interface InstreamOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxChunkBytes: number;
}

type WriteCallback = (error?: Error | null) => void;

const TERMINATOR = Buffer.alloc(4);

/**
 * One clamd `zINSTREAM` scan. The verdict promise is the single source of truth: every failure
 * (connect, timeout, early close, a reply that is not a verdict) settles it as SCANNER_UNAVAILABLE,
 * and also fails the writable if it is still open, so a caller's pipeline stops at once instead of
 * feeding a scan that can no longer succeed.
 */
export class InstreamSession implements ScanSession {
  readonly stream: Writable;
  readonly #socket: Socket;
  readonly #options: InstreamOptions;
  readonly #reader = new ReplyReader();
  readonly #verdict: Promise<ScanVerdict>;
  #resolve!: (verdict: ScanVerdict) => void;
  #reject!: (error: AppError) => void;
  #settled = false;
  #connected = false;
  #terminatorSent = false;
  /** The stream's in-flight write or final callback; at most one exists (Writable serialises). */
  #pending: WriteCallback | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(socket: Socket, options: InstreamOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#verdict = new Promise<ScanVerdict>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A caller that aborts without asking for the verdict must not crash the process.
    this.#verdict.catch(() => undefined);

    this.stream = new Writable({
      // Room for a few chunks, so the uploader runs ahead of clamd's reads instead of in lockstep.
      highWaterMark: 1024 * 1024,
      write: (chunk: Buffer, _encoding, callback) => this.#write(chunk, callback),
      final: (callback) => this.#final(callback),
      destroy: (error, callback) => {
        // The caller gave up on the stream (e.g. its pipeline failed elsewhere): no verdict can come.
        if (!this.#terminatorSent) this.#fail('the scan stream was destroyed before it ended', error);
        callback(error);
      },
    });
    // Failures always reach the caller through verdict(); an 'error' nobody listens to must not
    // become an uncaught exception.
    this.stream.on('error', () => undefined);

    this.#connectTimer = setTimeout(
      () => this.#fail(`no connection to clamd within ${options.connectTimeoutMs} ms`),
      options.connectTimeoutMs,
    );
    socket.setNoDelay(true);
    socket.once('connect', () => {
      this.#connected = true;
      clearTimeout(this.#connectTimer);
      if (this.#pending !== undefined || this.#terminatorSent) this.#armIdle();
    });
    socket.on('data', (data: Buffer) => this.#onData(data));
    socket.on('end', () => this.#fail('clamd closed the connection without a verdict'));
    socket.on('close', () => this.#fail('the connection to clamd closed without a verdict'));
    socket.on('error', (error) => this.#fail('clamd connection failed', error));
    socket.write('zINSTREAM\0');
  }

  verdict(): Promise<ScanVerdict> {
    return this.#verdict;
  }

  abort(): void {
    this.#fail('the scan was aborted');
    if (!this.stream.destroyed) this.stream.destroy();
  }

  #write(chunk: Buffer, callback: WriteCallback): void {
    if (this.#settled) return callback(this.#settledError());
    this.#pending = callback;
    this.#armIdle();
    const { maxChunkBytes } = this.#options;
    // Corked, each header leaves in one writev with its piece rather than as a 4-byte packet.
    this.#socket.cork();
    let offset = 0;
    while (offset < chunk.length) {
      const piece = chunk.subarray(offset, offset + maxChunkBytes);
      offset += piece.length;
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(piece.length);
      this.#socket.write(header);
      const last = offset >= chunk.length;
      // Only the last piece completes the caller's write: that is the backpressure the caller sees.
      this.#socket.write(piece, (error) => {
        if (error || this.#settled) return;
        this.#armIdle();
        if (last) this.#complete();
      });
    }
    this.#socket.uncork();
    if (chunk.length === 0) this.#complete();
  }

  #final(callback: WriteCallback): void {
    if (this.#settled) return callback(this.#settledError());
    this.#pending = callback;
    this.#terminatorSent = true;
    this.#armIdle();
    // The idle timer stays armed after this: from here on, clamd owes us the verdict.
    this.#socket.write(TERMINATOR, (error) => {
      if (!error && !this.#settled) this.#complete();
    });
  }

  #complete(): void {
    const callback = this.#pending;
    this.#pending = undefined;
    if (!this.#terminatorSent) clearTimeout(this.#idleTimer);
    callback?.();
  }

  #onData(data: Buffer): void {
    if (this.#settled) return;
    const reply = this.#reader.push(data);
    if (reply === undefined) {
      if (this.#reader.overflowed) this.#fail('clamd sent an overlong reply');
      return;
    }
    // Anything before the terminator is clamd refusing the stream (e.g. its size limit), and a
    // "clean" answer to a file it has not fully seen would be a lie: fail closed.
    if (!this.#terminatorSent) return this.#fail(`clamd answered before the stream ended: ${reply}`);
    const verdict = parseReply(reply);
    if (verdict === undefined) return this.#fail(`clamd answered without a verdict: ${reply}`);
    this.#settle();
    this.#resolve(verdict);
    this.#complete();
  }

  #armIdle(): void {
    if (!this.#connected) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(
      () => this.#fail(`clamd made no progress for ${this.#options.idleTimeoutMs} ms`),
      this.#options.idleTimeoutMs,
    );
  }

  #settle(): void {
    this.#settled = true;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#idleTimer);
    this.#socket.destroy();
  }

  #settledError(): AppError {
    return new AppError('SCANNER_UNAVAILABLE', undefined, { cause: new Error('the scan already ended') });
  }

  #fail(reason: string, cause?: unknown): void {
    if (this.#settled) return;
    this.#settle();
    const error = new AppError('SCANNER_UNAVAILABLE', undefined, {
      cause: cause === undefined || cause === null ? new Error(reason) : new Error(reason, { cause }),
    });
    this.#reject(error);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending !== undefined) pending(error);
    else if (!this.stream.writableFinished && !this.stream.destroyed) this.stream.destroy(error);
  }
}
