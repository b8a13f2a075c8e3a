import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SessionService } from '../../src/auth/sessions.ts';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { isAppError } from '../../src/errors.ts';
import type { Caller } from '../../src/auth/caller.ts';
import { MediaRepo } from '../../src/media/media-repo.ts';
import { MediaService } from '../../src/media/media-service.ts';
import { Signer } from '../../src/media/signing.ts';
import { LocalBlobStore } from '../../src/storage/local.ts';
import { LocalInvalidationBus } from '../../src/util/invalidation-bus.ts';
import { ACCESS_CACHE_TTL_MS, TtlCache } from '../../src/util/ttl-cache.ts';
import { ManualClock } from '../helpers/clock.ts';
import { record } from './database.contract.ts';

/**
 * Two "instances" (each with its own caches) on one SQLite database, with buses that carry
 * nothing between them: every invalidation message is lost. Only the caches' lifetime can end
 * what instance A revoked on instance B, and it must within ACCESS_CACHE_TTL_MS (1 s) — shown on
 * a manual clock, so the test can step to just before and exactly at the bound.
 */
describe('what decides access is trusted for at most a second, even when every message is lost', () => {
  let dir: string;
  let database: DatabaseHandle;
  let repo: MediaRepo;
  const secret = crypto.randomBytes(32);
  const clock = new ManualClock();

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-access-cache-'));
    database = await openDatabase({ kind: 'sqlite', file: path.join(dir, 'stowage.db') });
    repo = new MediaRepo(database.db, database.dialect);
  });
  afterAll(async () => {
    await database?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const sessions = () =>
    new SessionService(database.db, new LocalInvalidationBus(), {
      refreshTtlSeconds: 3600,
      // A longer lifetime asked for is capped: nothing can make the bound looser.
      cacheTtlMs: 60_000,
      clock,
    });
  const media = async () =>
    new MediaService({
      repo,
      storage: await LocalBlobStore.create(path.join(dir, 'blobs')),
      cursors: new Signer(secret, 'cursor'),
      links: new Signer(secret, 'link-record'),
      legacyLinks: new Signer(secret, 'link'),
      bus: new LocalInvalidationBus(),
      cacheTtlMs: 60_000,
      clock,
    });
  const callerFor = (username: string): Caller => ({
    username,
    roles: ['user'],
    sessionId: 'test',
    isAdmin: false,
  });
  const refused = (promise: Promise<unknown>) =>
    expect(promise).rejects.toSatisfy((e) => isAppError(e) && e.code === 'UNAUTHENTICATED');

  it('ends a revoked session on the other instance 1 s later at the latest', async () => {
    const [a, b] = [sessions(), sessions()];
    const user = `user-${crypto.randomUUID()}`;
    const { session } = await a.create(user, null, null);
    expect(await b.getLive(session.id)).not.toBeNull(); // cached on B now
    expect(await a.revoke(user, session.id)).toBe(true);
    expect(await a.getLive(session.id)).toBeNull(); // at once where it happened
    clock.advance(ACCESS_CACHE_TTL_MS - 1);
    expect(await b.getLive(session.id)).not.toBeNull(); // B may still trust its lookup...
    clock.advance(1);
    expect(await b.getLive(session.id)).toBeNull(); // ...but not a millisecond longer
  });

  it('ends every session of a user (password change, removal) on the other instance within 1 s', async () => {
    const [a, b] = [sessions(), sessions()];
    const user = `user-${crypto.randomUUID()}`;
    const ids = [
      (await a.create(user, null, null)).session.id,
      (await b.create(user, null, null)).session.id,
    ];
    for (const id of ids) expect(await b.getLive(id)).not.toBeNull();
    await a.revokeAllForUser(user);
    clock.advance(ACCESS_CACHE_TTL_MS);
    for (const id of ids) expect(await b.getLive(id)).toBeNull();
  });

  it('makes an item turned private, or deleted, unreadable by others on the other instance within 1 s', async () => {
    const [a, b] = [await media(), await media()];
    const owner = `owner-${crypto.randomUUID()}`;
    const item = record(owner, { visibility: 'public' });
    await repo.insert(item, null);
    expect((await b.find(item.id))?.visibility).toBe('public');
    await a.update(callerFor(owner), item.id, { visibility: 'private' });
    expect((await a.find(item.id))?.visibility).toBe('private');
    clock.advance(ACCESS_CACHE_TTL_MS);
    expect((await b.find(item.id))?.visibility).toBe('private');

    await a.delete(callerFor(owner), item.id);
    clock.advance(ACCESS_CACHE_TTL_MS);
    expect(await b.find(item.id)).toBeUndefined();
  });

  it('refuses a revoked link on the other instance within 1 s', async () => {
    const [a, b] = [await media(), await media()];
    const owner = `owner-${crypto.randomUUID()}`;
    const item = record(owner);
    await repo.insert(item, null);
    const link = await a.createLink(callerFor(owner), item.id, 600);
    await b.verifyLink(item.id, link.token); // cached on B now
    await a.revokeLink(callerFor(owner), item.id, link.id);
    await refused(a.verifyLink(item.id, link.token));
    clock.advance(ACCESS_CACHE_TTL_MS - 1);
    await b.verifyLink(item.id, link.token);
    clock.advance(1);
    await refused(b.verifyLink(item.id, link.token));
  });

  it('does not keep what a lookup read while the entry was being invalidated', async () => {
    const cache = new TtlCache<string, string>({ ttlMs: ACCESS_CACHE_TTL_MS, maxEntries: 10, clock });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // A lookup reads the old value, then the change (and its invalidation) lands before it returns.
    const inFlight = cache.get('k', async () => {
      await gate;
      return 'before the change';
    });
    cache.delete('k');
    release();
    expect(await inFlight).toBe('before the change');
    expect(await cache.get('k', () => Promise.resolve('after the change'))).toBe('after the change');
  });
});
