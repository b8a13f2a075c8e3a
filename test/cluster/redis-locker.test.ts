import crypto from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Locker } from '@tus/utils';
import { RedisLocker } from '../../src/cluster/redis-locker.ts';
import { isAppError } from '../../src/errors.ts';
import { until } from '../helpers/common.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { lockerContract, type LockerOptions } from './locker.contract.ts';

/**
 * The Redis locker: the tus locker contract across two instances (each its own connection, as
 * separate processes would have); what only a lease can do: outlive a crashed holder for no longer
 * than the lease, and tell a holder that lost it to stop; and a Redis that stops answering, which
 * never makes a lock request hang (503 UNAVAILABLE well within the contract's 5 s).
 */
const DB = REDIS_DB.locker;
const noop = () => undefined;
const forever = () => new AbortController().signal;

describe.skipIf(!redisAvailable())('RedisLocker', () => {
  const clients: Redis[] = [];
  const lockers: RedisLocker[] = [];
  const connect = () => {
    const client = new Redis(redisUrlFor(DB), { maxRetriesPerRequest: 1 });
    client.on('error', noop);
    clients.push(client);
    return client;
  };
  const instance = (opts: LockerOptions = {}, client = connect()) => {
    const locker = new RedisLocker(client, opts);
    lockers.push(locker);
    return locker;
  };
  beforeAll(() => flushRedisDb(DB));
  afterAll(async () => {
    for (const locker of lockers) await locker.close();
    for (const client of clients) client.disconnect();
    await flushRedisDb(DB);
  });

  lockerContract('RedisLocker', async (opts = {}): Promise<[Locker, Locker]> => [
    instance(opts),
    instance(opts),
  ]);

  /** The lock's key as the locker names it, and its remaining lease. */
  const key = (id: string) => `stowage:tus-lock:${id}`;

  it('renews the lease while the lock is held, so it outlives many leases', async () => {
    const id = crypto.randomUUID();
    const holder = instance({ leaseMs: 300 }).newLock(id);
    await holder.lock(forever(), noop);
    const observer = connect();
    // Watch the remaining lease go up again (a renewal) several times: more than a lease passes.
    let last = await observer.pttl(key(id));
    let renewals = 0;
    await until(
      async () => {
        const ttl = await observer.pttl(key(id));
        if (ttl > last) renewals++;
        last = ttl;
        return renewals >= 4;
      },
      5000,
      'four renewals',
    );
    expect(last).toBeGreaterThan(0);
    const other = instance({ acquireTimeoutMs: 200 }).newLock(id);
    await expect(other.lock(forever(), noop)).rejects.toMatchObject({ code: 'CONFLICT' });
    await holder.unlock();
    expect(await observer.exists(key(id))).toBe(0);
  });

  it("frees a crashed holder's lock once its short lease runs out", async () => {
    const id = crypto.randomUUID();
    const crashing = connect();
    const holder = instance({ leaseMs: 400 }, crashing).newLock(id);
    await holder.lock(forever(), noop);
    crashing.disconnect(); // the instance is gone: no more renewals, no unlock
    const next = instance({ leaseMs: 400 }).newLock(id);
    // Bounded: the lease, not the default 10 s acquisition timeout.
    await next.lock(AbortSignal.timeout(3000), noop);
    await next.unlock();
  });

  it('tells a holder that can no longer renew its lease to stop, before the lease runs out', async () => {
    const id = crypto.randomUUID();
    const cut = connect();
    let asked = 0;
    const holder = instance({ leaseMs: 600 }, cut).newLock(id);
    await holder.lock(forever(), () => void asked++);
    cut.disconnect();
    // Told once a renewal has failed and the lease would run out before the next one.
    await until(() => asked > 0, 3000, 'the holder told to stop');
    await holder.unlock();
  });

  it('tells a holder whose lock was taken over after a lapse to stop, and its unlock frees nothing', async () => {
    const id = crypto.randomUUID();
    const admin = connect();
    let asked = 0;
    const lost = instance({ leaseMs: 300 }).newLock(id);
    await lost.lock(forever(), () => void asked++);
    // As if the holder stalled past its lease and another request took the lock.
    await admin.set(key(id), 'someone-else', 'PX', 60_000);
    await until(() => asked > 0, 3000, 'the holder told it lost its lock');
    await lost.unlock();
    expect(await admin.get(key(id))).toBe('someone-else');
  });

  it("does not free another holder's lock when a holder that lost its lease unlocks", async () => {
    const id = crypto.randomUUID();
    const stalled = new Redis(redisUrlFor(DB), { maxRetriesPerRequest: 1, lazyConnect: true });
    stalled.on('error', noop);
    clients.push(stalled);
    await stalled.connect();
    const lost = instance({ leaseMs: 300 }, stalled).newLock(id);
    await lost.lock(forever(), noop);
    stalled.disconnect(); // cut off long enough for the lease to run out
    const winner = instance({ leaseMs: 5000 }).newLock(id);
    await winner.lock(AbortSignal.timeout(3000), noop);
    await stalled.connect(); // the stalled holder comes back and unlocks what it no longer holds
    await lost.unlock();
    const third = instance({ acquireTimeoutMs: 300 }).newLock(id);
    await expect(third.lock(forever(), noop)).rejects.toMatchObject({ code: 'CONFLICT' });
    await winner.unlock();
    const fourth = instance({ acquireTimeoutMs: 3000 }).newLock(id);
    await fourth.lock(forever(), noop);
    await fourth.unlock();
  });

  it('answers a lock attempt with 503 UNAVAILABLE, quickly, when Redis refuses connections', async () => {
    // A port nothing listens on.
    const down = new Redis('redis://127.0.0.1:9/0', { maxRetriesPerRequest: 1, lazyConnect: true });
    down.on('error', noop);
    clients.push(down);
    const locker = instance({}, down);
    const started = Date.now();
    const error: unknown = await locker
      .newLock(crypto.randomUUID())
      .lock(forever(), noop)
      .catch((e: unknown) => e);
    expect(isAppError(error) && error.code).toBe('UNAVAILABLE');
    expect(isAppError(error) && error.headers['Retry-After']).toBeDefined();
    // Never a hang: within the contract's 5 s for an unreachable dependency.
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

/** A TCP proxy in front of Redis that can stop forwarding in both directions, keeping sockets open. */
async function blackHoleProxy(target: URL): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  let forwarding = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk: Buffer) => void (forwarding && to.write(chunk)));
      from.on('error', noop);
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(target);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    cut: () => void (forwarding = false),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe.skipIf(!redisAvailable())(
  'RedisLocker when Redis stops answering (packets dropped, connection left open)',
  () => {
    let proxy: Awaited<ReturnType<typeof blackHoleProxy>>;
    const clients: Redis[] = [];
    const lockers: RedisLocker[] = [];
    const instance = (opts: { leaseMs?: number } = {}) => {
      // As the app connects (src/services.ts): no command timeout of the client's own.
      const client = new Redis(proxy.url, { maxRetriesPerRequest: 2 });
      client.on('error', noop);
      clients.push(client);
      const locker = new RedisLocker(client, opts);
      lockers.push(locker);
      return locker;
    };
    beforeAll(async () => {
      proxy = await blackHoleProxy(new URL(redisUrlFor(DB)));
    });
    afterAll(async () => {
      for (const locker of lockers) await locker.close();
      for (const client of clients) client.disconnect();
      await proxy?.close();
    });

    it('refuses new lock requests with 503 within 5 s, tells the holder to stop, and unlocks without failing', async () => {
      const id = crypto.randomUUID();
      const holding = instance({ leaseMs: 3000 });
      // This instance has subscribed already (it took a lock before); the other has not.
      const subscribed = instance();
      const probe = subscribed.newLock(crypto.randomUUID());
      await probe.lock(new AbortController().signal, noop);
      await probe.unlock();
      const fresh = instance();

      let asked = 0;
      const holder = holding.newLock(id);
      await holder.lock(new AbortController().signal, () => void asked++);
      proxy.cut();

      for (const locker of [subscribed, fresh]) {
        const started = Date.now();
        const error: unknown = await locker
          .newLock(id)
          .lock(new AbortController().signal, noop)
          .catch((e: unknown) => e);
        expect(isAppError(error) && { code: error.code, status: error.status }).toEqual({
          code: 'UNAVAILABLE',
          status: 503,
        });
        expect(Date.now() - started).toBeLessThan(5000);
      }
      // Its renewals go unanswered: it must stop before the lease can have run out on the server.
      await until(() => asked > 0, 3000, 'the holder told to stop');
      const started = Date.now();
      await expect(holder.unlock()).resolves.toBeUndefined();
      expect(Date.now() - started).toBeLessThan(5000);
    });
  },
);
