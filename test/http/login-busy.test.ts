/**
 * A login flood from many addresses keeps the password hasher busy; the real users' attempts that
 * it crowds out are answered "busy", and those answers must never count as failed logins (contract,
 * second part: limits that protect the server never lock out a user who did nothing wrong).
 */
import { execFileSync } from 'node:child_process';
import { constants, promises as fsp, closeSync, openSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORDS, type TestApp } from '../helpers/app.ts';
import { until } from '../helpers/common.ts';
import { tempDir } from '../helpers/temp.ts';
import { expectError, login } from './http-helpers.ts';

let t: TestApp | undefined;
let release: (() => Promise<void>) | undefined;
afterEach(async () => {
  await release?.();
  release = undefined;
  await t?.close();
  t = undefined;
});

/**
 * Parks every thread of libuv's pool (where argon2 and bcrypt run) in open() on a FIFO until the
 * returned function opens the other ends. While parked, no hash can finish: the hasher's slots and
 * queue stay exactly as full as the flood made them, for as long as the test needs, instead of
 * draining at whatever speed this machine happens to hash at.
 */
function blockThreadPool(): () => Promise<void> {
  const size = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const dir = tempDir('stowage-busy-');
  const fifos = Array.from({ length: size }, (_, i) => join(dir, `fifo${i}`));
  for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
  const readers = fifos.map((fifo) => fsp.open(fifo, 'r'));
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    // A non-blocking open for writing succeeds at once because a reader is waiting: synchronous,
    // so it needs no thread from the blocked pool.
    for (const fifo of fifos) closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    for (const reader of readers) await (await reader).close();
  };
}

/** The answer for an attempt the server was too busy to check: never the lock-out answer. */
function expectBusy(res: LightMyRequestResponse): void {
  if (res.statusCode === 503) {
    expectError(res, 503, 'UNAVAILABLE');
    return;
  }
  expectError(res, 429, 'RATE_LIMITED');
  expect(res.json<{ error: { message: string } }>().error.message).toMatch(/busy/i);
  expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(5);
}

function loginCount(metrics: string, outcome: string): number {
  return Number(
    new RegExp(`^stowage_logins_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0,
  );
}

describe('a login flood that keeps the hasher busy', () => {
  it('does not lock out the real user whose attempts were answered busy', async () => {
    t = await createTestApp({ STOWAGE_LOGIN_ADDRESS_LIMIT: '5' });
    const app = t;
    const hasher = app.services.hasher;
    release = blockThreadPool();

    // The flood: unknown users from many addresses, more than the hasher runs and queues.
    const total = os.availableParallelism() + 64 + 32;
    let refused = 0;
    const flood = Array.from({ length: total }, (_, i) =>
      login(app, `flood${i}`, 'password1', `10.77.${i >> 8}.${i & 255}`).then((res) => {
        if (res.statusCode !== 401) refused++;
        return res;
      }),
    );
    await until(() => refused > 0 && hasher.stats.queued > 0, 10_000, 'hasher saturated');

    // Alice tries, with her password and with typos, more often than the lock-out allows.
    const alice = '192.0.2.77';
    for (let i = 0; i < 8; i++) {
      const password = i % 2 === 0 ? PASSWORDS.alice : `typo-${i}`;
      expectBusy(await login(app, 'alice', password, alice));
    }

    await release();
    for (const res of await Promise.all(flood)) {
      if (res.statusCode === 401) expectError(res, 401, 'INVALID_CREDENTIALS');
      else expectBusy(res);
    }
    await until(() => hasher.stats.active === 0 && hasher.stats.queued === 0, 30_000, 'hasher idle');

    // No failure was recorded for alice, neither for her name nor for her address.
    expect((await login(app, 'alice', PASSWORDS.alice, alice)).statusCode).toBe(200);
    // Her real failures still count from zero: five lock her out, not fewer.
    for (let i = 0; i < 4; i++)
      expectError(await login(app, 'alice', `wrong-${i}`, alice), 401, 'INVALID_CREDENTIALS');
    expect((await login(app, 'alice', PASSWORDS.alice, alice)).statusCode).toBe(200);

    const metrics = (await app.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(loginCount(metrics, 'busy')).toBe(8 + refused);
    expect(loginCount(metrics, 'failure')).toBe(total - refused + 4);
  });

  it('gives a busy attempt back to the per-address cap as well', async () => {
    t = await createTestApp({ STOWAGE_LOGIN_ADDRESS_LIMIT: '2' });
    const app = t;
    release = blockThreadPool();
    const total = os.availableParallelism() + 64 + 8;
    let refused = 0;
    const flood = Array.from({ length: total }, (_, i) =>
      login(app, `flood${i}`, 'password1', `2001:db8:77:${i.toString(16)}::1`).then((res) => {
        if (res.statusCode !== 401) refused++;
        return res;
      }),
    );
    await until(() => refused > 0, 10_000, 'hasher saturated');
    // An office behind one address: five people, each answered busy once.
    const office = '198.51.100.77';
    for (const name of ['u1', 'u2', 'u3', 'u4', 'u5'])
      expectBusy(await login(app, name, 'password1', office));
    await release();
    await Promise.all(flood);
    await until(() => app.services.hasher.stats.queued === 0 && app.services.hasher.stats.active === 0);
    expect((await login(app, 'bob', PASSWORDS.bob, office)).statusCode).toBe(200);
  });
});
