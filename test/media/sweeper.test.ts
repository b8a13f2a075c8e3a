import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SweepScheduler } from '../../src/media/sweeper.ts';
import { startListeningApp, type ListeningApp } from '../helpers/app.ts';
import { ManualClock } from '../helpers/clock.ts';
import { captureLogs, LEVEL } from '../helpers/logs.ts';
import { multipart, pdf } from './media-helpers.ts';

/**
 * The sweeper runs at start and then periodically, every time — not once. Time is a ManualClock
 * and the timer is driven by the test, so "an hour later" and "a week later" take no waiting.
 */

const DAY = 86_400_000;

/** A scheduler the test fires by hand: `fire()` is exactly what the interval timer would call. */
function manualScheduler(): { scheduler: SweepScheduler; fire: () => Promise<void>; stopped: () => boolean } {
  let tick: (() => Promise<void>) | undefined;
  let stopped = false;
  return {
    scheduler: (run) => {
      tick = run;
      return { stop: () => (stopped = true) };
    },
    fire: () => {
      if (!tick) throw new Error('the sweeper did not schedule a periodic run');
      return tick();
    },
    stopped: () => stopped,
  };
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

describe('the periodic sweep', () => {
  const clock = new ManualClock(Date.now());
  const timer = manualScheduler();
  const logs = captureLogs();
  let app: ListeningApp;
  let kept: { id: string };

  beforeAll(async () => {
    app = await startListeningApp({}, { clock, sweepScheduler: timer.scheduler, logger: logs.logger });
    // The start-up pass is over before anything is planted: what is swept below, the timer swept.
    await app.services.sweeper.idle();
    const { body, contentType } = multipart([{ name: 'file', filename: 'kept.pdf', data: pdf(10) }]);
    const res = await fetch(`${app.base}/api/media/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${app.tokens.alice}`, 'content-type': contentType },
      body,
    });
    expect(res.status).toBe(201);
    kept = (await res.json()) as { id: string };
  });
  afterAll(async () => {
    await app?.close();
  });

  const blob = (...parts: string[]) => path.join(app.dir, 'blobs', ...parts);
  /** This instance's own scratch folder under `parent` (the only instance folder there). */
  const ownArea = async (parent: string) => {
    const [area, ...others] = (await fs.readdir(parent)).filter((name) => /^[0-9a-f]{16}$/.test(name));
    expect(others).toEqual([]);
    return path.join(parent, area!);
  };

  /** Everything the sweeper is there for, each made the way the real failure leaves it. */
  async function plant() {
    // Logged in afresh: the sessions' lifetimes run on the same clock, which moves weeks ahead.
    const { accessToken: alice } = await app.login('alice');
    // A resumable upload that was abandoned: tus expires it from its recorded creation time.
    const created = await fetch(`${app.base}/api/media/uploads`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${alice}`,
        'tus-resumable': '1.0.0',
        'upload-length': '5000',
      },
    });
    expect(created.status).toBe(201);
    const uploadId = created.headers.get('location')!.split('/').pop()!;
    // @tus/file-store compares that time with its own wall clock, so the record is moved back.
    const info = path.join(app.dir, 'uploads', `${uploadId}.json`);
    const record = JSON.parse(await fs.readFile(info, 'utf8')) as { creation_date: string };
    await fs.writeFile(
      info,
      JSON.stringify({ ...record, creation_date: new Date(Date.now() - 2 * DAY).toISOString() }),
    );
    // A blob and renditions whose row never came to be (a crash between the two).
    const orphan = crypto.randomBytes(16).toString('base64url');
    await fs.mkdir(blob('media', orphan.slice(0, 2)), { recursive: true });
    await fs.writeFile(blob('media', orphan.slice(0, 2), orphan), pdf());
    await fs.mkdir(blob('thumbs', orphan), { recursive: true });
    await fs.writeFile(blob('thumbs', orphan, '256.webp'), 'rendition');
    // An unfinished write and a spool file whose cleanup failed.
    const write = path.join(await ownArea(blob('.incomplete')), 'stale.tmp');
    await fs.writeFile(write, 'half');
    const spool = path.join(await ownArea(path.join(app.dir, 'tmp')), 'stale.spool');
    await fs.writeFile(spool, 'spooled');
    // A session that ended (logout).
    const login = await fetch(`${app.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'bob', password: 'bob-password-22' }),
    });
    const { accessToken } = (await login.json()) as { accessToken: string };
    const logout = await fetch(`${app.base}/api/auth/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}` },
    });
    expect(logout.status).toBe(204);
    return { uploadId, info, orphan, write, spool };
  }

  async function state(planted: Awaited<ReturnType<typeof plant>>) {
    const db = app.services.database.db;
    return {
      upload: await exists(planted.info),
      reservation: (
        await db.selectFrom('reservations').select('id').where('id', '=', planted.uploadId).execute()
      ).length,
      orphanBlob: await exists(blob('media', planted.orphan.slice(0, 2), planted.orphan)),
      orphanRendition: await exists(blob('thumbs', planted.orphan)),
      write: await exists(planted.write),
      spool: await exists(planted.spool),
      endedSessions: (
        await db.selectFrom('sessions').select('id').where('revoked_at', 'is not', null).execute()
      ).length,
    };
  }

  const GONE = {
    upload: false,
    reservation: 0,
    orphanBlob: false,
    orphanRendition: false,
    write: false,
    spool: false,
    endedSessions: 0,
  };

  test('sweeps everything on every periodic run, not only on the first', async () => {
    for (const round of [1, 2, 3]) {
      const planted = await plant();
      if (round === 1) {
        // Nothing is old yet: a periodic run now keeps all of it (it may be work in progress).
        await timer.fire();
        expect(await state(planted)).toMatchObject({
          upload: false, // tus expires it from its recorded creation time, moved back above
          orphanBlob: true,
          orphanRendition: true,
          write: true,
          spool: true,
          endedSessions: 1,
        });
      }
      // Past every threshold: an hour for orphans, a day for unfinished work and reservations,
      // a week for ended sessions.
      clock.advance(8 * DAY);
      await timer.fire();
      expect(await state(planted), `round ${round}`).toEqual(GONE);
    }
    // What is alive is untouched: the stored item.
    const content = await fetch(`${app.base}/api/media/${kept.id}/content`, {
      headers: { authorization: `Bearer ${(await app.login('alice')).accessToken}` },
    });
    expect(Buffer.from(await content.arrayBuffer())).toEqual(pdf(10));
    expect(
      logs.lines().filter((line) => line.msg.startsWith('swept ') && line.level === LEVEL.info).length,
    ).toBeGreaterThan(0);
  });

  test('a step that fails is logged and does not stop the others', async () => {
    app.services.sweeper.addStep({
      name: 'a broken step',
      run: () => Promise.reject(new Error('the database went away')),
    });
    const planted = await plant();
    clock.advance(8 * DAY);
    const outcome = await app.services.sweeper.sweep();
    expect(outcome['a broken step']).toBe('failed');
    expect(await state(planted)).toEqual(GONE);
    const failure = logs.lines().find((line) => line.step === 'a broken step');
    expect(failure).toMatchObject({ level: LEVEL.error, err: { message: 'the database went away' } });

    // And through the timer: the pass still completes, and the next one runs again.
    const again = await plant();
    clock.advance(8 * DAY);
    await timer.fire();
    expect(await state(again)).toEqual(GONE);
  });

  test('stopping the sweeper stops its timer', async () => {
    const { services } = app;
    expect(timer.stopped()).toBe(false);
    await services.sweeper.stop();
    expect(timer.stopped()).toBe(true);
  });
});

describe('steps that fail', () => {
  test('do not stop the others, and each is logged at error level', async () => {
    const clock = new ManualClock(Date.now());
    const timer = manualScheduler();
    const logs = captureLogs();
    const app = await startListeningApp({}, { clock, sweepScheduler: timer.scheduler, logger: logs.logger });
    try {
      await app.services.sweeper.idle();
      // The database is closed under the sweeper: the steps that need it fail, the file steps
      // still run.
      const orphan = crypto.randomBytes(16).toString('base64url');
      const file = path.join(app.dir, 'blobs', 'media', orphan.slice(0, 2), orphan);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, pdf());
      const rendition = path.join(app.dir, 'blobs', 'thumbs', orphan, '256.webp');
      await fs.mkdir(path.dirname(rendition), { recursive: true });
      await fs.writeFile(rendition, 'rendition');
      const spoolParent = path.join(app.dir, 'tmp');
      const [area] = await fs.readdir(spoolParent);
      const spool = path.join(spoolParent, area!, 'stale.spool');
      await fs.writeFile(spool, 'x');
      await app.services.database.close();
      clock.advance(8 * DAY);
      const outcome = await app.services.sweeper.sweep();
      expect(outcome).toMatchObject({
        'orphaned blobs': 'failed',
        'orphaned renditions': 'failed',
        'expired reservations': 'failed',
        'ended sessions': 'failed',
        'expired links': 'failed',
        trash: 'failed',
        'old audit entries': 'failed',
        'rendition cache': 'failed',
        'spool files': 1,
      });
      expect(await exists(spool)).toBe(false);
      expect(await exists(file)).toBe(true); // an orphan is only removed once the database says so
      const failed = logs
        .lines()
        .filter((line) => line.level === LEVEL.error && typeof line.step === 'string');
      expect(failed.map((line) => line.step).sort()).toEqual(
        [
          'ended sessions',
          'expired links',
          'expired reservations',
          'old audit entries',
          'orphaned blobs',
          'orphaned renditions',
          'trash',
          'rendition cache',
        ].sort(),
      );
    } finally {
      await app.app.close();
      await app.services.close().catch(() => undefined);
      await fs.rm(app.dir, { recursive: true, force: true });
    }
  });
});
