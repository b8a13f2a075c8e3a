import type { RequestRelease } from '@tus/utils';
import { AppError } from '../errors.ts';

/**
 * What the upload lockers (MemoryLocker, RedisLocker) share. Both follow tus's lock contract
 * (@tus/utils `Lock`; tusd docs/locks.md "Avoiding locked uploads"): a request that wants a held
 * lock asks the holder to let go through the holder's `requestRelease`, then waits, bounded by
 * its abort signal and an acquisition timeout.
 */

/** How long a request waits for an upload's lock by default: the holder is asked to let go. */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000;

/**
 * The lock stayed with another request (which did not let go in time), or the waiting request
 * was cancelled. 409: another request is working on this upload, the client may retry (stock tus
 * clients retry 409 and resume from HEAD).
 */
export function lockBusy(id: string, why: 'timeout' | 'aborted'): AppError {
  return new AppError('CONFLICT', 'Another request is working on this upload; try again shortly.', {
    headers: { 'Retry-After': '1' },
    cause: new Error(`lock on upload ${id} not acquired: ${why}`),
  });
}

/**
 * Asks a holder to let go. Its callback is the holder's business: an error it throws or rejects
 * with must not fail the request that asks, which keeps waiting.
 */
export function askToRelease(requestRelease: RequestRelease): void {
  try {
    void Promise.resolve(requestRelease()).catch(() => undefined);
  } catch {
    // as above
  }
}

/** A waiter that can be woken (the lock was freed) and waits for that, a delay or an abort. */
export class Wakeable {
  #woken = false;
  #wake: (() => void) | undefined;

  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /**
   * Resolves when woken since the last call (at once if that happened already), after `ms`, or
   * when `signal` aborts, whichever is first.
   */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#woken || signal.aborted) {
      this.#woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
    this.#woken = false;
  }
}
