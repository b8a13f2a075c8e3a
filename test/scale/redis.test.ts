import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, type Lock } from '@tus/utils';
import { RedisCounterStore } from '../../src/cluster/redis-counter-store.ts';
import { RedisInvalidationBus } from '../../src/cluster/redis-bus.ts';
import { RedisLocker } from '../../src/cluster/redis-locker.ts';
import { SessionService } from '../../src/auth/sessions.ts';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import type { InvalidationEvent } from '../../src/util/invalidation-bus.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { ManualClock } from '../helpers/clock.ts';
import { until } from './scale-helpers.ts';

/**
 * The Redis parts that let several instances act as one: shared rate-limit counters, the
 * invalidation bus (logout and revocation reach every instance), and the tus upload lock. Each
 * "instance" here has its own connection, as separate processes would.
 */
const DB = REDIS_DB.redisUnit;
const logger = pino({ level: 'silent' });

describe.skipIf(!redisAvailable())('Redis', () => {
  const clients: Redis[] = [];
  const connect = () => {
    const client = new Redis(redisUrlFor(DB), { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  beforeAll(() => flushRedisDb(DB));
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await flushRedisDb(DB);
  });

  describe('RedisCounterStore', () => {
    it('counts hits in a window that opens at the first hit, shared by every instance', async () => {
      const [a, b] = [new RedisCounterStore(connect()), new RedisCounterStore(connect())];
      const key = `login:${crypto.randomUUID()}`;
      expect(await a.get(key)).toBeNull();
      const first = await a.increment(key, 60_000);
      expect(first.count).toBe(1);
      expect(first.resetInMs).toBeGreaterThan(59_000);
      expect(first.resetInMs).toBeLessThanOrEqual(60_000);
      expect((await b.increment(key, 60_000)).count).toBe(2);
      expect((await a.increment(key, 60_000)).count).toBe(3);
      const seen = await b.get(key);
      expect(seen?.count).toBe(3);
      // Later hits do not push the window's end out.
      expect(seen!.resetInMs).toBeLessThanOrEqual(first.resetInMs);
      // Another key is counted apart.
      expect((await b.increment(`${key}:other`, 60_000)).count).toBe(1);
    });

    it('starts again from zero once the window has passed', async () => {
      const store = new RedisCounterStore(connect());
      const key = `win:${crypto.randomUUID()}`;
      await store.increment(key, 200);
      expect((await store.increment(key, 200)).count).toBe(2);
      await until(async () => (await store.get(key)) === null, 1000);
      expect((await store.increment(key, 200)).count).toBe(1);
    });

    it('forgets a key on reset, for every instance', async () => {
      const [a, b] = [new RedisCounterStore(connect()), new RedisCounterStore(connect())];
      const key = `reset:${crypto.randomUUID()}`;
      for (let i = 0; i < 4; i++) await a.increment(key, 60_000);
      await b.reset(key);
      expect(await a.get(key)).toBeNull();
      expect((await a.increment(key, 60_000)).count).toBe(1);
    });

    it('takes one back within the window, never below zero, and never revives an ended window', async () => {
      const store = new RedisCounterStore(connect());
      const key = `decrement-${Date.now()}`;
      await store.increment(key, 60_000);
      await store.increment(key, 60_000);
      await store.decrement(key);
      expect((await store.get(key))?.count).toBe(1);
      await store.decrement(key);
      await store.decrement(key);
      expect((await store.get(key))?.count ?? 0).toBe(0);
      await store.decrement(`${key}-missing`);
      expect(await store.get(`${key}-missing`)).toBeNull();
    });

    it('counts concurrent hits from several instances exactly', async () => {
      const stores = [connect(), connect(), connect()].map((c) => new RedisCounterStore(c));
      const key = `burst:${crypto.randomUUID()}`;
      const counts = await Promise.all(
        Array.from({ length: 30 }, (_, i) => stores[i % 3]!.increment(key, 60_000)),
      );
      expect(counts.map((c) => c.count).sort((x, y) => x - y)).toEqual(
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
    });
  });

  describe('RedisInvalidationBus', () => {
    const buses: RedisInvalidationBus[] = [];
    afterAll(async () => {
      for (const bus of buses) await bus.close();
    });
    const bus = async () => {
      const created = await RedisInvalidationBus.create(connect(), logger);
      buses.push(created);
      return created;
    };

    it('delivers events between instances, both ways, within a second', async () => {
      const [a, b] = [await bus(), await bus()];
      const toA: InvalidationEvent[] = [];
      const toB: InvalidationEvent[] = [];
      a.subscribe((e) => toA.push(e));
      b.subscribe((e) => toB.push(e));
      // Channels are server-wide: other test files' events may arrive too, so look for ours.
      const fromA = { sessionIds: [crypto.randomUUID()] };
      const fromB = { username: crypto.randomUUID(), mediaIds: [crypto.randomUUID()] };
      await a.publish(fromA);
      await b.publish(fromB);
      await until(() => toB.some((e) => e.sessionIds?.[0] === fromA.sessionIds[0]), 1000);
      await until(() => toA.some((e) => e.username === fromB.username), 1000);
      expect(toA.find((e) => e.username === fromB.username)).toEqual(fromB);
    });

    it('never fails or holds up the change it announces when Redis cannot take the message', async () => {
      const warnings: string[] = [];
      const recording = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      const client = connect();
      const created = await RedisInvalidationBus.create(client, recording);
      buses.push(created);
      client.disconnect(); // the publishing connection is gone; the change is already in the database
      await expect(created.publish({ sessionIds: [crypto.randomUUID()] })).resolves.toBeUndefined();
      await until(() => warnings.some((w) => w.includes('could not broadcast')), 5000);
    });

    it('ends a session on every instance within a second of its revocation on one', async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-redis-'));
      let database: DatabaseHandle | undefined;
      try {
        database = await openDatabase({ kind: 'sqlite', file: path.join(dir, 'stowage.db') });
        // A clock that stands still: the caches never expire, so only the broadcast can make the
        // second instance notice.
        const opts = { refreshTtlSeconds: 3600, cacheTtlMs: 1_000, clock: new ManualClock() };
        const one = new SessionService(database.db, await bus(), opts);
        const two = new SessionService(database.db, await bus(), opts);
        const user = `user-${crypto.randomUUID()}`;
        const s1 = await one.create(user, null, null);
        const s2 = await one.create(user, null, null);
        expect(await two.getLive(s1.session.id)).not.toBeNull(); // now cached on instance two
        expect(await two.getLive(s2.session.id)).not.toBeNull();

        await one.revoke(user, s1.session.id);
        await until(async () => (await two.getLive(s1.session.id)) === null, 1000);
        expect(await two.getLive(s2.session.id)).not.toBeNull();

        // A removed user: every session of theirs, on every instance.
        await one.revokeAllForUser(user);
        await until(async () => (await two.getLive(s2.session.id)) === null, 1000);
      } finally {
        await database?.close();
        await fs.rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('RedisLocker', () => {
    const release = () => Promise.resolve();
    const signal = () => new AbortController().signal;
    const settled = (p: Promise<unknown>) => {
      let done = false;
      void p.then(
        () => (done = true),
        () => (done = true),
      );
      return () => done;
    };

    it('makes a second holder wait until the first unlocks, across instances', async () => {
      const id = crypto.randomUUID();
      const first = new RedisLocker(connect()).newLock(id);
      const second = new RedisLocker(connect()).newLock(id);
      await first.lock(signal(), release);
      const waiting = second.lock(signal(), release);
      const acquired = settled(waiting);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(acquired()).toBe(false);
      await first.unlock();
      await until(acquired, 1000);
      await expect(waiting).resolves.toBeUndefined();
      await second.unlock();
    });

    it('locks different uploads independently', async () => {
      const locker = new RedisLocker(connect());
      const a = locker.newLock(crypto.randomUUID());
      const b = locker.newLock(crypto.randomUUID());
      await a.lock(signal(), release);
      await b.lock(signal(), release);
      await Promise.all([a.unlock(), b.unlock()]);
    });

    it('keeps a held lock alive past its lease while the holder runs', async () => {
      const id = crypto.randomUUID();
      const holder = new RedisLocker(connect(), { leaseMs: 300 }).newLock(id);
      await holder.lock(signal(), release);
      await new Promise((resolve) => setTimeout(resolve, 900));
      const other = new RedisLocker(connect(), { leaseMs: 300, acquireTimeoutMs: 200 }).newLock(id);
      await expect(other.lock(signal(), release)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
      await holder.unlock();
    });

    it("frees a crashed holder's lock once its lease runs out", async () => {
      const id = crypto.randomUUID();
      const crashing = connect();
      const holder = new RedisLocker(crashing, { leaseMs: 400 }).newLock(id);
      await holder.lock(signal(), release);
      crashing.disconnect(); // the process is gone: no renewals, no unlock
      const next = new RedisLocker(connect(), { leaseMs: 400 }).newLock(id);
      const started = Date.now();
      await next.lock(signal(), release);
      expect(Date.now() - started).toBeLessThan(1500);
      await next.unlock();
      await holder.unlock().catch(() => undefined);
    });

    it('gives up with a lock timeout when the request is cancelled or waits too long', async () => {
      const id = crypto.randomUUID();
      const holder = new RedisLocker(connect()).newLock(id);
      await holder.lock(signal(), release);
      const impatient = new RedisLocker(connect(), { acquireTimeoutMs: 200 }).newLock(id);
      await expect(impatient.lock(signal(), release)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
      const cancelled = new AbortController();
      const waiting = new RedisLocker(connect()).newLock(id).lock(cancelled.signal, release);
      cancelled.abort();
      await expect(waiting).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
      await holder.unlock();
    });

    it("does not delete another holder's lock when a holder that lost its lease unlocks", async () => {
      const id = crypto.randomUUID();
      const stalled = connect();
      const lost: Lock = new RedisLocker(stalled, { leaseMs: 300 }).newLock(id);
      await lost.lock(signal(), release);
      stalled.disconnect(); // cut off long enough for the lease to run out
      const winner = new RedisLocker(connect(), { leaseMs: 5000 }).newLock(id);
      await winner.lock(signal(), release);
      await stalled.connect(); // the stalled holder comes back and unlocks what it no longer holds
      await lost.unlock();

      const third = new RedisLocker(connect(), { acquireTimeoutMs: 300 }).newLock(id);
      await expect(third.lock(signal(), release)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
      await winner.unlock();
      const fourth = new RedisLocker(connect(), { acquireTimeoutMs: 1000 }).newLock(id);
      await fourth.lock(signal(), release);
      await fourth.unlock();
    });
  });
});
