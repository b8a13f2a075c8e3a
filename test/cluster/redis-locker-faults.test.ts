import crypto from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLocker } from '../../src/cluster/redis-locker.ts';
import { isAppError } from '../../src/errors.ts';
import { until } from '../helpers/common.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';

/**
 * The Redis locker when Redis stops answering (packets dropped, connection left open): no lock
 * request hangs. It is refused with 503 UNAVAILABLE well within the contract's 5 s, a holder is
 * told to stop before its lease can run out, and unlocking does not fail the request.
 */
const DB = REDIS_DB.lockerFaults;
const noop = () => undefined;

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

describe.skipIf(!redisAvailable())('RedisLocker when Redis stops answering', () => {
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
    await flushRedisDb(DB);
    proxy = await blackHoleProxy(new URL(redisUrlFor(DB)));
  });
  afterAll(async () => {
    for (const locker of lockers) await locker.close();
    for (const client of clients) client.disconnect();
    await proxy?.close();
    await flushRedisDb(DB);
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
});
