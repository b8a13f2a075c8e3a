import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadlineExceededError, withDeadline } from '../../src/util/deadline.ts';
import { Breaker } from '../../src/util/breaker.ts';
import { DependencyUnavailableError, isDependencyFailure } from '../../src/util/dependency-failure.ts';
import { Readiness, type Check } from '../../src/util/readiness.ts';
import { startListeningApp, type ListeningApp } from '../helpers/app.ts';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.ts';
import { ManualClock } from '../helpers/clock.ts';
import { until } from '../helpers/common.ts';
import { REDIS_DB, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

/** A check that counts its runs and answers what `state.result` says when told to. */
function controlledCheck() {
  const state = { runs: 0, result: 'ok' as 'ok' | 'fail', pending: [] as (() => void)[] };
  const check: Check = () => {
    state.runs++;
    return new Promise((resolve, reject) => {
      state.pending.push(() => (state.result === 'ok' ? resolve('ok') : reject(new Error('down'))));
    });
  };
  const settle = () => {
    for (const finish of state.pending.splice(0)) finish();
  };
  return { state, check, settle };
}

describe('Readiness: checks at most 1 s old, one run at a time', () => {
  it('shares one run among concurrent callers and reuses its report for 1 s', async () => {
    const clock = new ManualClock();
    const { state, check, settle } = controlledCheck();
    const readiness = new Readiness({ database: check }, { timeoutMs: 10_000, clock });
    const reports = Array.from({ length: 50 }, () => readiness.current());
    await Promise.resolve();
    settle();
    const settled = await Promise.all(reports);
    expect(state.runs).toBe(1);
    expect(new Set(settled).size).toBe(1);
    expect(settled[0]).toMatchObject({ ok: true, checks: { database: 'ok' } });

    clock.advance(1000);
    await readiness.current();
    expect(state.runs).toBe(1);
    // Older than 1 s: the next caller runs the checks again and sees the change.
    clock.advance(1);
    state.result = 'fail';
    const next = readiness.current();
    await Promise.resolve();
    settle();
    expect(await next).toMatchObject({ ok: false, checks: { database: 'fail' } });
    expect(state.runs).toBe(2);
    readiness.close();
  });

  it('feeds the breakers: a failed check opens, a later passing one closes', async () => {
    const clock = new ManualClock();
    const { state, check, settle } = controlledCheck();
    const breaker = new Breaker('database');
    const readiness = new Readiness({ database: check }, { timeoutMs: 10_000, clock, breakers: [breaker] });
    state.result = 'fail';
    const failed = readiness.current();
    await Promise.resolve();
    settle();
    await failed;
    expect(breaker.isOpen).toBe(true);
    // While open, callers fail at once and ask for a probe (here: none yet, the report is fresh).
    expect(() => breaker.assertClosed()).toThrow(DependencyUnavailableError);
    expect(state.runs).toBe(1);

    clock.advance(1001);
    state.result = 'ok';
    expect(() => breaker.assertClosed()).toThrow(DependencyUnavailableError);
    expect(state.runs).toBe(2);
    await Promise.resolve();
    settle();
    await readiness.current();
    expect(breaker.isOpen).toBe(false);
    readiness.close();
  });

  it('a check that began before a failure cannot close the breaker it opened', async () => {
    const clock = new ManualClock();
    const { check, settle } = controlledCheck();
    const breaker = new Breaker('database');
    const readiness = new Readiness({ database: check }, { timeoutMs: 10_000, clock, breakers: [breaker] });
    const early = readiness.current();
    await Promise.resolve();
    breaker.open();
    settle();
    await early;
    expect(breaker.isOpen).toBe(true);
    readiness.close();
  });
});

describe('Breaker', () => {
  it('opens on a dependency failure only, and answers 503 UNAVAILABLE with Retry-After', async () => {
    const breaker = new Breaker('redis');
    await expect(breaker.run(() => Promise.reject(new Error('syntax error')))).rejects.toThrow(
      'syntax error',
    );
    expect(breaker.isOpen).toBe(false);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
    const error = await breaker.run(() => Promise.reject(refused)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DependencyUnavailableError);
    expect(error).toMatchObject({ status: 503, code: 'UNAVAILABLE', headers: { 'Retry-After': '2' } });
    expect(breaker.isOpen).toBe(true);
    let called = false;
    await expect(breaker.run(async () => void (called = true))).rejects.toThrow(DependencyUnavailableError);
    expect(called).toBe(false);
  });

  it('classifies what pg, pg-pool and ioredis say when a dependency is gone, and nothing else', () => {
    for (const failure of [
      new Error('Query read timeout'),
      new Error('Connection terminated due to connection timeout'),
      new Error('Connection terminated unexpectedly'),
      new Error('Command timed out'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      Object.assign(new Error('the database system is shutting down'), { code: '57P01' }),
      Object.assign(new Error('connection failure'), { code: '08006' }),
      new Error('wrapped', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }),
    ]) {
      expect(isDependencyFailure(failure), failure.message).toBe(true);
    }
    for (const other of [
      new Error('boom'),
      Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' }),
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
      new TypeError('The database connection is not open'),
      'a string',
      undefined,
    ]) {
      expect(isDependencyFailure(other)).toBe(false);
    }
  });
});

describe('withDeadline', () => {
  it('fails a call that does not answer in time', async () => {
    await expect(withDeadline(new Promise(() => undefined), 50, 'redis')).rejects.toThrow(
      DeadlineExceededError,
    );
  });

  // The peer must be another process (here Redis): one in this process would be stalled too.
  it.skipIf(!redisAvailable())(
    'lets an answer that arrived while the process was stalled win over the expired deadline',
    async () => {
      const url = new URL(redisUrlFor(REDIS_DB.partition));
      const socket = net.connect(Number(url.port || 6379), url.hostname);
      socket.on('error', () => undefined);
      try {
        await new Promise((resolve) => socket.once('connect', resolve));
        const reply = new Promise<string>((resolve) =>
          socket.once('data', (data) => resolve(data.toString())),
        );
        const answer = withDeadline(reply, 100, 'redis');
        socket.write('PING\r\n');
        // A stall (a busy CPU) past the deadline, during which Redis's answer reaches the socket.
        const until = Date.now() + 400;
        while (Date.now() < until);
        await expect(answer).resolves.toBe('+PONG\r\n');
      } finally {
        socket.destroy();
      }
    },
  );
});

describe.skipIf(!clamdAvailable())('/readyz called by many at once', () => {
  let clamd: RunningClamd;
  let proxy: TcpProxy;
  let t: ListeningApp;

  beforeAll(async () => {
    clamd = await startClamd();
    proxy = await startTcpProxy({ port: Number(new URL(clamd.url).port) });
    t = await startListeningApp({ STOWAGE_CLAMD: `tcp://127.0.0.1:${proxy.port}` });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.close();
    await clamd?.stop();
  });

  it('runs the checks at most a couple of times for 50 parallel calls (one clamd connection per run)', async () => {
    const before = proxy.accepted;
    const runsBefore = t.services.readiness.runs;
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => fetch(`${t.base}/readyz`, { signal: AbortSignal.timeout(20_000) })),
    );
    expect(answers.map((r) => r.status)).toEqual(Array.from({ length: 50 }, () => 200));
    const bodies = await Promise.all(answers.map((r) => r.json()));
    expect(bodies[0]).toEqual({ status: 'ok', checks: { database: 'ok', storage: 'ok', scanner: 'ok' } });
    expect(t.services.readiness.runs - runsBefore).toBeLessThanOrEqual(2);
    expect(proxy.accepted - before).toBeLessThanOrEqual(2);
  });

  it('still notices a change within about a second', async () => {
    await proxy.setMode('refuse');
    await until(
      async () => {
        const res = await fetch(`${t.base}/readyz`);
        return (
          res.status === 503 &&
          ((await res.json()) as { checks: { scanner: string } }).checks.scanner === 'fail'
        );
      },
      5000,
      '/readyz naming the scanner',
    );
    await proxy.setMode('forward');
    await until(async () => (await fetch(`${t.base}/readyz`)).status === 200, 5000, 'ready again');
  });
});
