import crypto from 'node:crypto';
import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.ts';
import { until } from '../helpers/common.ts';

/**
 * tus's lock contract (@tus/utils `Lock`; tusd docs/locks.md), run against every upload locker:
 * memory-locker.test.ts (one process) and redis-locker.test.ts (two instances, each with its own
 * Redis connection). A lock is exclusive; a request that wants a held lock asks the holder to let
 * go; a holder that does lets the waiter in at once, one that does not keeps the lock until the
 * waiter gives up (its timeout or its cancelled request, answered 409); only the holder frees it.
 */
export interface LockerOptions {
  acquireTimeoutMs?: number;
  leaseMs?: number;
}

/** The lockers of two instances sharing one lock space (in one process: the same locker twice). */
export type Instances = (opts?: LockerOptions) => Promise<[Locker, Locker]>;

const noop: RequestRelease = () => undefined;

/** Bounds a wait that must end well before the test's own timeout. */
const within = (ms: number) => AbortSignal.timeout(ms);
const forever = () => new AbortController().signal;

/** A requestRelease that counts its calls and optionally acts on them. */
function holderCallback(act?: () => unknown): { fn: RequestRelease; calls: () => number } {
  let calls = 0;
  return {
    fn: () => {
      calls++;
      void act?.();
    },
    calls: () => calls,
  };
}

/** A promise and whether it has settled yet (without waiting for it). */
function track(promise: Promise<unknown>): { promise: Promise<unknown>; settled: () => boolean } {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { promise, settled: () => settled };
}

/** The lock was not acquired: 409 CONFLICT, retryable. */
async function expectBusy(attempt: Promise<unknown>): Promise<void> {
  const error: unknown = await attempt.then(
    () => new Error('the lock was acquired'),
    (e: unknown) => e,
  );
  expect(isAppError(error) && { code: error.code, status: error.status }).toEqual({
    code: 'CONFLICT',
    status: 409,
  });
}

/**
 * Whether `locker` gives lock `id` to a request that waits at most `ms` (then frees it again).
 * Asserting "free" waits generously (a loaded machine only makes it slower); asserting "held"
 * waits a little (the lock cannot become free by waiting in these tests).
 */
const expectFree = async (locker: Locker, id: string) => expect(await isFree(locker, id, 3000)).toBe(true);
const expectHeld = async (locker: Locker, id: string) => expect(await isFree(locker, id, 300)).toBe(false);

async function isFree(locker: Locker, id: string, ms: number): Promise<boolean> {
  const probe = locker.newLock(id);
  try {
    await probe.lock(within(ms), noop);
  } catch (error) {
    if (isAppError(error) && error.code === 'CONFLICT') return false;
    throw error;
  }
  await probe.unlock();
  return true;
}

export function lockerContract(name: string, instances: Instances): void {
  const newId = () => crypto.randomUUID();

  describe(`tus locker contract (${name})`, () => {
    it('is exclusive: a second request waits while the first holds the lock and gets it after unlock', async () => {
      const [a, b] = await instances();
      const id = newId();
      const first = a.newLock(id);
      const asked = holderCallback();
      await first.lock(forever(), asked.fn);
      const second = b.newLock(id);
      const waiting = track(second.lock(forever(), noop));
      await until(() => asked.calls() > 0, 5000, 'the holder asked to let go');
      await expectHeld(a, id);
      expect(waiting.settled()).toBe(false);
      await first.unlock();
      await until(waiting.settled, 5000, 'the waiter got the lock');
      await expect(waiting.promise).resolves.toBeUndefined();
      await expectHeld(b, id);
      await second.unlock();
      await expectFree(a, id);
    });

    it("delivers a waiter's release request to the holder, whichever instance holds it", async () => {
      const [a, b] = await instances();
      for (const [holderSide, waiterSide] of [
        [a, b],
        [b, a],
        [a, a],
      ] as const) {
        const id = newId();
        const holder = holderSide.newLock(id);
        const asked = holderCallback(() => holder.unlock());
        await holder.lock(forever(), asked.fn);
        const waiterAsked = holderCallback();
        const waiter = waiterSide.newLock(id);
        await waiter.lock(within(5000), waiterAsked.fn);
        expect(asked.calls()).toBeGreaterThan(0);
        // Nobody wanted the lock from the new holder.
        expect(waiterAsked.calls()).toBe(0);
        await waiter.unlock();
      }
    });

    it('hands the lock over at once when the holder lets go, without waiting for any lease', async () => {
      const [a, b] = await instances({ leaseMs: 60_000, acquireTimeoutMs: 60_000 });
      const id = newId();
      const holder = a.newLock(id);
      await holder.lock(forever(), () => holder.unlock());
      // Bounded far below the lease: the waiter must not be waiting it out.
      const waiter = b.newLock(id);
      await waiter.lock(within(3000), noop);
      await waiter.unlock();
    });

    it('lets a holder that ignores the request keep the lock; the waiter gives up with 409 after its timeout', async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 300 });
      const id = newId();
      const holder = a.newLock(id);
      const asked = holderCallback();
      await holder.lock(forever(), asked.fn);
      await expectBusy(b.newLock(id).lock(forever(), noop));
      expect(asked.calls()).toBeGreaterThan(0);
      // Still the holder's.
      await expectHeld(b, id);
      await holder.unlock();
      await expectFree(b, id);
    });

    it('stops waiting as soon as the waiting request is cancelled, and never takes the lock afterwards', async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 60_000 });
      const id = newId();
      const holder = a.newLock(id);
      const asked = holderCallback();
      await holder.lock(forever(), asked.fn);
      const cancel = new AbortController();
      const waiting = track(b.newLock(id).lock(cancel.signal, noop));
      await until(() => asked.calls() > 0, 5000, 'the holder asked to let go');
      cancel.abort();
      await until(waiting.settled, 3000, 'the cancelled waiter gave up');
      await expectBusy(waiting.promise);
      await holder.unlock();
      // The cancelled request did not take the freed lock.
      await expectFree(a, id);
    });

    it('refuses a request that is already cancelled, without taking a free lock', async () => {
      const [a, b] = await instances();
      const id = newId();
      const cancel = new AbortController();
      cancel.abort();
      await expectBusy(a.newLock(id).lock(cancel.signal, noop));
      await expectFree(b, id);
    });

    it('ignores unlock from a request that does not hold the lock', async () => {
      const [a, b] = await instances();
      const id = newId();
      const holder = a.newLock(id);
      await holder.lock(forever(), noop);
      // One that never asked, and one that waited and gave up.
      const stranger = b.newLock(id);
      await stranger.unlock();
      const gaveUp = b.newLock(id);
      await expectBusy(gaveUp.lock(within(200), noop));
      await gaveUp.unlock();
      await expectHeld(b, id);

      // Nor does a second unlock by the former holder free the next holder's lock.
      await holder.unlock();
      const next = b.newLock(id);
      await next.lock(within(3000), noop);
      await holder.unlock();
      await expectHeld(a, id);
      await next.unlock();
      await expectFree(a, id);
    });

    it('serves many waiters on both instances one at a time, every one of them', async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 60_000 });
      const id = newId();
      let inside = 0;
      let most = 0;
      const served: number[] = [];
      await Promise.all(
        Array.from({ length: 12 }, async (_, n) => {
          const lock: Lock = (n % 2 ? a : b).newLock(id);
          await lock.lock(within(20_000), noop);
          inside++;
          most = Math.max(most, inside);
          // Hold it across a few turns of the event loop (and Redis round trips of the others).
          for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
          inside--;
          served.push(n);
          await lock.unlock();
        }),
      );
      expect(most).toBe(1);
      expect(served.sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, n) => n));
    });

    it('serves waiters one at a time also when each holder lets go as soon as it is asked', async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 60_000 });
      const id = newId();
      let inside = 0;
      let most = 0;
      let served = 0;
      await Promise.all(
        Array.from({ length: 8 }, async (_, n) => {
          const lock: Lock = (n % 2 ? a : b).newLock(id);
          let release!: () => void;
          const asked = new Promise<void>((resolve) => (release = resolve));
          await lock.lock(within(20_000), release);
          inside++;
          most = Math.max(most, inside);
          // Works until asked to stop (or, being last, until it is done).
          await Promise.race([asked, new Promise((resolve) => setTimeout(resolve, 50))]);
          inside--;
          served++;
          await lock.unlock();
        }),
      );
      expect({ most, served }).toEqual({ most: 1, served: 8 });
    });

    it('can be taken again by the same request after it unlocked, and then held as before', async () => {
      const [a, b] = await instances({ leaseMs: 300 });
      const id = newId();
      const lock = a.newLock(id);
      await lock.lock(forever(), noop);
      await lock.unlock();
      await lock.lock(within(3000), noop);
      await expectHeld(b, id);
      await lock.unlock();
      await expectFree(b, id);
    });

    it('locks different uploads independently', async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 1000 });
      const [one, two] = [newId(), newId()];
      const first = a.newLock(one);
      const second = b.newLock(two);
      await first.lock(forever(), noop);
      await second.lock(within(1000), noop);
      await Promise.all([first.unlock(), second.unlock()]);
    });

    it("keeps a waiter waiting when the holder's callback throws, and lets it in once the holder unlocks", async () => {
      const [a, b] = await instances({ acquireTimeoutMs: 60_000 });
      const id = newId();
      const holder = a.newLock(id);
      let calls = 0;
      await holder.lock(forever(), () => {
        calls++;
        throw new Error('the holder fails to stop');
      });
      const waiting = track(b.newLock(id).lock(forever(), noop));
      await until(() => calls > 0, 5000, 'the holder asked to let go');
      expect(waiting.settled()).toBe(false);
      await holder.unlock();
      await until(waiting.settled, 5000, 'the waiter got the lock');
      await expect(waiting.promise).resolves.toBeUndefined();
    });
  });
}
