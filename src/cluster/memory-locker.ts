import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { DEFAULT_ACQUIRE_TIMEOUT_MS, Wakeable, askToRelease, lockBusy } from './locks.ts';

export interface MemoryLockerOptions {
  /** How long a request waits for a held lock before it gets 409 (default 10 s). */
  acquireTimeoutMs?: number;
}

/**
 * Upload locks within one process (a single instance, no Redis), with tus's hand-over: a request
 * that finds the lock held asks the holder to let go (once per holder), then waits to be woken
 * when it is freed. Not @tus/server's MemoryLocker, which asks again and again in a setImmediate
 * loop (a busy core while anyone waits) and whose unlock() frees the lock whoever calls it, so a
 * request that never got the lock could free another's.
 */
export class MemoryLocker implements Locker {
  readonly #table = new LockTable();
  readonly #acquireTimeoutMs: number;

  constructor(opts: MemoryLockerOptions = {}) {
    this.#acquireTimeoutMs = opts.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
  }

  newLock(id: string): Lock {
    return new MemoryLock(id, this.#table, this.#acquireTimeoutMs);
  }
}

interface Holding {
  owner: MemoryLock;
  requestRelease: RequestRelease;
}

/** Who holds which lock, and who waits for it. */
class LockTable {
  readonly #held = new Map<string, Holding>();
  readonly #waiting = new Map<string, Set<Wakeable>>();

  /** Takes the lock if it is free; otherwise returns who holds it. */
  take(id: string, owner: MemoryLock, requestRelease: RequestRelease): Holding | undefined {
    const holder = this.#held.get(id);
    if (holder) return holder;
    this.#held.set(id, { owner, requestRelease });
    return undefined;
  }

  /** Frees the lock if `owner` holds it, and wakes its waiters (they try again in arrival order). */
  release(id: string, owner: MemoryLock): void {
    if (this.#held.get(id)?.owner !== owner) return;
    this.#held.delete(id);
    for (const waiter of this.#waiting.get(id) ?? []) waiter.wake();
  }

  addWaiter(id: string, waiter: Wakeable): void {
    let set = this.#waiting.get(id);
    if (!set) this.#waiting.set(id, (set = new Set()));
    set.add(waiter);
  }

  removeWaiter(id: string, waiter: Wakeable): void {
    const set = this.#waiting.get(id);
    set?.delete(waiter);
    if (set?.size === 0) this.#waiting.delete(id);
  }
}

class MemoryLock implements Lock {
  readonly #id: string;
  readonly #table: LockTable;
  readonly #acquireTimeoutMs: number;
  #holding = false;

  constructor(id: string, table: LockTable, acquireTimeoutMs: number) {
    this.#id = id;
    this.#table = table;
    this.#acquireTimeoutMs = acquireTimeoutMs;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    if (this.#holding) throw new Error(`lock on upload ${this.#id} is already held by this request`);
    const deadline = Date.now() + this.#acquireTimeoutMs;
    const waiter = new Wakeable();
    this.#table.addWaiter(this.#id, waiter);
    try {
      let asked: Holding | undefined;
      for (;;) {
        // Checked before taking: a request that is gone must not end up holding a lock it will
        // never unlock.
        if (signal.aborted) throw lockBusy(this.#id, 'aborted');
        const holder = this.#table.take(this.#id, this, requestRelease);
        if (!holder) {
          this.#holding = true;
          return;
        }
        if (holder !== asked) askToRelease(holder.requestRelease);
        asked = holder;
        const left = deadline - Date.now();
        if (left <= 0) throw lockBusy(this.#id, 'timeout');
        await waiter.wait(left, signal);
      }
    } finally {
      this.#table.removeWaiter(this.#id, waiter);
    }
  }

  /** Frees the lock if this request holds it; otherwise (never acquired, already freed) nothing. */
  async unlock(): Promise<void> {
    if (!this.#holding) return;
    this.#holding = false;
    this.#table.release(this.#id, this);
  }
}
