import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCounterStore } from '../../src/cluster/redis-counter-store.ts';
import { RedisInvalidationBus } from '../../src/cluster/redis-bus.ts';
import { SessionService } from '../../src/auth/sessions.ts';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import type { InvalidationEvent } from '../../src/util/invalidation-bus.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { ManualClock } from '../helpers/clock.ts';
import { until } from './scale-helpers.ts';

/**
 * The Redis parts that let several instances act as one: shared rate-limit counters and the
 * invalidation bus (logout and revocation reach every instance); the tus upload lock has its own
 * suite, test/cluster/redis-locker.test.ts. Each "instance" here has its own connection, as
 * separate processes would.
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
});
