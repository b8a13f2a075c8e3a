import type { Writable } from 'node:stream';

export type ScanVerdict = { clean: true } | { clean: false; signature: string };

/**
 * A malware scanner fed while a file streams in. Implementations: clamd (clamd.ts) and "off"
 * (scanning disabled by configuration).
 */
export interface Scanner {
  readonly enabled: boolean;
  /** Opens one scan; the caller writes the file's bytes to `stream`, ends it, then awaits verdict(). */
  start(): ScanSession;
  /** Resolves when the scanner answers (readiness check); rejects otherwise. */
  ping(): Promise<void>;
}

export interface ScanSession {
  /** Bytes to scan; respects backpressure. */
  readonly stream: Writable;
  /**
   * The verdict after `stream` ended. Rejects with AppError('SCANNER_UNAVAILABLE') when the
   * scanner cannot be reached, times out, or answers anything but a clear verdict (fail closed).
   */
  verdict(): Promise<ScanVerdict>;
  /** Ends the scan early (upload failed); idempotent. */
  abort(): void;
}
