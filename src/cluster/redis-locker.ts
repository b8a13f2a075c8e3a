import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Lock, Locker, RequestRelease } from '@tus/utils';
import { AppError } from '../errors.ts';
import { DEFAULT_ACQUIRE_TIMEOUT_MS, Wakeable, askToRelease, lockBusy } from './locks.ts';

/** Takes the lock if it is free; answers the holder's token either way (ours when taken). */
const ACQUIRE = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])`;
/** Extends the lease, only for the token that holds it. */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
/** Frees the lock, only for the token that holds it, and wakes every instance's waiters at once. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0`;

/**
 * Every Redis round trip of a lock is bounded, whatever the client's own settings: a Redis that
 * drops packets must not hold a request past the contract's 5 s for an unreachable dependency.
 */
const REDIS_ANSWER_MS = 2_000;
/** A waiter also tries again this often: the backstop for a lost message or a lapsed lease. */
const POLL_MAX_MS = 250;
/** A waiter asks a holder that keeps the lock again this often (a pub/sub message can be lost). */
const ASK_AGAIN_MS = 1_000;

export interface RedisLockerOptions {
  /** How long a request waits for an upload's lock before it gets 409 (default 10 s). */
  acquireTimeoutMs?: number;
  /**
   * The lock's lease (default 5 s). The holder renews it every third of it, so only a holder that
   * crashed or lost Redis keeps a lock past its end, and then for at most this long.
   */
  leaseMs?: number;
}

/** A message on the locker's channel: a waiter asks `holder` to let go, or a holder freed `id`. */
type LockMessage = { op: 'release'; id: string; holder: string } | { op: 'freed'; id: string };

/**
 * tus upload locks shared by all instances, so requests for one upload may reach any instance (no
 * sticky sessions) and never run at the same time. A lock is a Redis key holding its owner's
 * random token, with a lease the owner keeps renewing. As in tus (tusd docs/locks.md, @tus/utils
 * `Lock`), a request that finds the lock held asks the holder to let go: the request goes out on
 * a pub/sub channel, and the instance holding the lock calls the holder's `requestRelease`, which
 * stops its PATCH and unlocks. Freeing a lock publishes on the same channel, so waiters on any
 * instance try again at once instead of waiting out a poll.
 *
 * The locker subscribes on a connection of its own (a duplicate of `redis`), opened at the first
 * lock; close() ends it.
 */
export class RedisLocker implements Locker {
  readonly #hub: LockHub;
  readonly #opts: Required<RedisLockerOptions>;

  constructor(redis: Redis, opts: RedisLockerOptions = {}) {
    this.#opts = { acquireTimeoutMs: DEFAULT_ACQUIRE_TIMEOUT_MS, leaseMs: 5_000, ...opts };
    // Pub/sub channels are server-wide; the database index keeps deployments that share a server apart.
    this.#hub = new LockHub(redis, `stowage:tus-locks:${redis.options.db ?? 0}`);
  }

  newLock(id: string): Lock {
    return new RedisLock(id, this.#hub, this.#opts);
  }

  /** Ends the subscription. Locks still held lapse at the end of their lease. */
  async close(): Promise<void> {
    await this.#hub.close();
  }
}

/** This instance's side of the channel: its subscription, the locks it holds, its waiters. */
class LockHub {
  readonly redis: Redis;
  readonly channel: string;
  readonly holders = new Map<string, RedisLock>();
  readonly #waiters = new Map<string, Set<Wakeable>>();
  #subscriber: Promise<Redis> | undefined;

  constructor(redis: Redis, channel: string) {
    this.redis = redis;
    this.channel = channel;
  }

  /** Subscribed, so that no message to this instance is missed from now on (lazily, once). */
  async ready(): Promise<void> {
    this.#subscriber ??= this.#subscribe().catch((error: unknown) => {
      this.#subscriber = undefined; // the next lock tries again
      throw error;
    });
    await this.#subscriber;
  }

  async #subscribe(): Promise<Redis> {
    // A new connection is not up yet when SUBSCRIBE is sent: it waits in the offline queue (the
    // main client may run without one, to fail fast), bounded by answered() like every call here.
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true });
    // The main client reports connection problems; this one reconnects and resubscribes by itself.
    subscriber.on('error', () => undefined);
    subscriber.on('message', (_channel: string, text: string) => this.#onMessage(text));
    try {
      await answered(subscriber.subscribe(this.channel));
    } catch (error) {
      subscriber.disconnect();
      throw error;
    }
    return subscriber;
  }

  #onMessage(text: string): void {
    const message = parseMessage(text);
    if (message?.op === 'release') this.holders.get(message.id)?.askedToRelease(message.holder);
    else if (message?.op === 'freed') for (const waiter of this.#waiters.get(message.id) ?? []) waiter.wake();
  }

  publish(message: LockMessage): Promise<number> {
    return this.redis.publish(this.channel, JSON.stringify(message));
  }

  addWaiter(id: string, waiter: Wakeable): void {
    let set = this.#waiters.get(id);
    if (!set) this.#waiters.set(id, (set = new Set()));
    set.add(waiter);
  }

  removeWaiter(id: string, waiter: Wakeable): void {
    const set = this.#waiters.get(id);
    set?.delete(waiter);
    if (set?.size === 0) this.#waiters.delete(id);
  }

  async close(): Promise<void> {
    const subscriber = await this.#subscriber?.catch(() => undefined);
    this.#subscriber = undefined;
    subscriber?.disconnect();
  }
}

class RedisLock implements Lock {
  readonly #id: string;
  readonly #key: string;
  readonly #hub: LockHub;
  readonly #opts: Required<RedisLockerOptions>;
  readonly #token = crypto.randomBytes(16).toString('hex');
  #requestRelease: RequestRelease | undefined;
  #holding = false;
  /** Set once the lease may have run out under us; the holder has been asked to stop. */
  #lost = false;
  /** Until when the lease is known to hold (from the send time of the last successful renewal). */
  #confirmedUntil = 0;
  #renewal: NodeJS.Timeout | undefined;
  /** Counts holds, so a renewal still under way from an earlier hold of this lock stops. */
  #generation = 0;

  constructor(id: string, hub: LockHub, opts: Required<RedisLockerOptions>) {
    this.#id = id;
    this.#key = `stowage:tus-lock:${id}`;
    this.#hub = hub;
    this.#opts = opts;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    if (this.#holding) throw new Error(`lock on upload ${this.#id} is already held by this request`);
    const deadline = Date.now() + this.#opts.acquireTimeoutMs;
    const waiter = new Wakeable();
    // Listening before the first attempt: a lock freed right after it failed still wakes us.
    this.#hub.addWaiter(this.#id, waiter);
    try {
      await this.#hub.ready();
      let asked: { holder: string; at: number } | undefined;
      for (let delay = 25; ; delay = Math.min(delay * 2, POLL_MAX_MS)) {
        // Checked before taking: a request that is gone must not end up holding a lock it will
        // never unlock.
        if (signal.aborted) throw lockBusy(this.#id, 'aborted');
        const sentAt = Date.now();
        const holder = await answered(
          this.#hub.redis.eval(ACQUIRE, 1, this.#key, this.#token, this.#opts.leaseMs),
        );
        if (holder === this.#token) {
          this.#hold(requestRelease, sentAt);
          return;
        }
        // A new holder is asked at once; one that keeps the lock, again now and then.
        if (
          typeof holder === 'string' &&
          (asked?.holder !== holder || Date.now() - asked.at >= ASK_AGAIN_MS)
        ) {
          await answered(this.#hub.publish({ op: 'release', id: this.#id, holder }));
          asked = { holder, at: Date.now() };
        }
        const left = deadline - Date.now();
        if (left <= 0) throw lockBusy(this.#id, 'timeout');
        await waiter.wait(Math.min(delay, left), signal);
      }
    } catch (error) {
      // An attempt Redis carried out but did not confirm in time may have taken the lock.
      if (!this.#holding) this.#freeQuietly();
      throw error;
    } finally {
      this.#hub.removeWaiter(this.#id, waiter);
    }
  }

  /**
   * Frees the lock if this request still holds it; otherwise (never acquired, already freed, or
   * lapsed and taken by another) nothing. When Redis cannot be reached it does not fail the
   * request that unlocks: the lock lapses at the end of its lease.
   */
  async unlock(): Promise<void> {
    if (!this.#holding) return;
    this.#holding = false;
    clearTimeout(this.#renewal);
    if (this.#hub.holders.get(this.#id) === this) this.#hub.holders.delete(this.#id);
    try {
      await answered(this.#release());
    } catch {
      // as above
    }
  }

  /** A waiter asked the holder with token `holder` to let go: this request, if that is us. */
  askedToRelease(holder: string): void {
    if (this.#holding && holder === this.#token && this.#requestRelease) askToRelease(this.#requestRelease);
  }

  #hold(requestRelease: RequestRelease, sentAt: number): void {
    this.#holding = true;
    this.#lost = false;
    this.#requestRelease = requestRelease;
    this.#confirmedUntil = sentAt + this.#opts.leaseMs;
    this.#hub.holders.set(this.#id, this);
    this.#scheduleRenewal(++this.#generation);
  }

  #scheduleRenewal(generation: number): void {
    const every = Math.max(1, Math.floor(this.#opts.leaseMs / 3));
    this.#renewal = setTimeout(() => void this.#renew(every, generation), every);
    this.#renewal.unref();
  }

  async #renew(every: number, generation: number): Promise<void> {
    const sentAt = Date.now();
    let renewed: unknown;
    try {
      renewed = await answered(
        this.#hub.redis.eval(RENEW, 1, this.#key, this.#token, this.#opts.leaseMs),
        Math.min(REDIS_ANSWER_MS, every),
      );
    } catch {
      renewed = undefined;
    }
    if (!this.#holding || generation !== this.#generation) return;
    if (renewed === 1) this.#confirmedUntil = sentAt + this.#opts.leaseMs;
    // The lease ran out (another request may hold the lock now), or it will before we can renew
    // again: the holder must stop writing, as when a waiter asks it to.
    else if (renewed === 0 || Date.now() + every >= this.#confirmedUntil) return this.#loseLease();
    this.#scheduleRenewal(generation);
  }

  #loseLease(): void {
    if (this.#lost) return;
    this.#lost = true;
    if (this.#requestRelease) askToRelease(this.#requestRelease);
  }

  #release(): Promise<unknown> {
    const freed: LockMessage = { op: 'freed', id: this.#id };
    return this.#hub.redis.eval(RELEASE, 1, this.#key, this.#token, this.#hub.channel, JSON.stringify(freed));
  }

  #freeQuietly(): void {
    this.#release().catch(() => undefined);
  }
}

/**
 * The command's answer, or 503 UNAVAILABLE when Redis fails or does not answer within `ms`
 * (a lost answer is never waited for past that: the caller's request must get its answer).
 */
async function answered<T>(command: Promise<T>, ms = REDIS_ANSWER_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      command,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } catch (error) {
    throw new AppError('UNAVAILABLE', 'Upload locks cannot be reached right now; try again shortly.', {
      headers: { 'Retry-After': '5' },
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
}

function parseMessage(text: string): LockMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { op, id, holder } = value as Record<string, unknown>;
  if (typeof id !== 'string') return undefined;
  if (op === 'freed') return { op, id };
  if (op === 'release' && typeof holder === 'string') return { op, id, holder };
  return undefined;
}
