import crypto from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Context } from '../lib/context.ts';
import { expectClean, load } from '../lib/load.ts';
import { startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figure 6: does listing stay fast as one user's library grows? Two servers, identical but for
 * their databases: the user owns 1,000 items in one and `listItems` (1,000,000 in full mode) in
 * the other. The rows are inserted straight into SQLite (uploading a million files would take
 * hours and measure nothing more), then both servers serve the same request in alternation.
 */

const SMALL = 1_000;

/**
 * Rows shaped like the ones uploads write (src/db/migrations.ts), one second apart, in one
 * transaction with the server stopped.
 */
function insertItems(dbFile: string, owner: string, count: number): void {
  const db = new Database(dbFile);
  try {
    const insert = db.prepare(
      `insert into media (id, owner, filename, mime_type, kind, size, sha256, visibility, tags, width, height, created_at, updated_at)
       values (?, ?, ?, 'video/mp4', 'video', ?, ?, 'private', '[]', null, null, ?, ?)`,
    );
    const start = Date.now() - count * 1000;
    let bytes = 0;
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const size = 1000 + (i % 100_000);
        bytes += size;
        const at = start + i * 1000;
        const id = crypto.randomBytes(16).toString('base64url');
        const sha = crypto.randomBytes(32).toString('hex');
        insert.run(id, owner, `clip-${i}.mp4`, size, sha, at, at);
      }
      db.prepare(
        `insert into usage (username, bytes, files) values (?, ?, ?)
         on conflict (username) do update set bytes = bytes + excluded.bytes, files = files + excluded.files`,
      ).run(owner, bytes, count);
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/** The measured request must return a full page (50 items and a cursor), not an empty list. */
async function expectFullPage(server: Stowage, token: string): Promise<void> {
  const res = await fetch(`${server.url}/api/media/list?limit=50`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const page = (await res.json()) as { items?: unknown[]; nextCursor?: string | null };
  if (res.status !== 200 || page.items?.length !== 50 || !page.nextCursor) {
    throw new Error(`list: HTTP ${res.status}, ${page.items?.length} items, cursor ${page.nextCursor}`);
  }
}

async function dataset(ctx: Context, name: string, count: number): Promise<Stowage> {
  const dataDir = path.join(ctx.tmp, `stowage-list-${name}`);
  // The first start creates the database and runs the migrations.
  await (await startStowage(ctx, dataDir)).stop();
  const started = performance.now();
  insertItems(path.join(dataDir, 'stowage.db'), ctx.user.name, count);
  ctx.log(
    `[6] inserted ${count.toLocaleString('en')} rows in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return startStowage(ctx, dataDir);
}

export async function listFigures(ctx: Context): Promise<Figure[]> {
  const { rounds, loadSeconds, listItems } = ctx.settings;
  const large = await dataset(ctx, 'large', listItems);
  const small = await dataset(ctx, 'small', SMALL);
  const p50 = async (server: Stowage, token: string, seconds: number) => {
    const url = `${server.url}/api/media/list?limit=50`;
    const headers = [`Authorization: Bearer ${token}`];
    return expectClean(await load({ url, connections: 1, seconds, headers, tmp: ctx.tmp }), url).p50Ms;
  };
  const [largeToken, smallToken] = [await large.login(), await small.login()];
  await expectFullPage(large, largeToken);
  await expectFullPage(small, smallToken);
  await p50(large, largeToken, 2);
  await p50(small, smallToken, 2);

  const a: Measure = { label: `${listItems.toLocaleString('en')} items`, unit: 'ms', values: [] };
  const b: Measure = { label: `${SMALL.toLocaleString('en')} items`, unit: 'ms', values: [] };
  for (let r = 0; r < rounds; r++) {
    const [x, y] = await alternate(
      r,
      () => p50(large, largeToken, loadSeconds),
      () => p50(small, smallToken, loadSeconds),
    );
    a.values.push(x);
    b.values.push(y);
    ctx.log(`[6] round ${r + 1}/${rounds}: list p50 ${x.toFixed(2)} ms (large), ${y.toFixed(2)} ms (small)`);
  }
  await large.stop();
  await small.stop();
  return [
    {
      id: '6',
      title: `GET /api/media/list?limit=50 p50, ${listItems.toLocaleString('en')} vs ${SMALL.toLocaleString('en')} items`,
      how:
        `A: p50 latency of GET /api/media/list?limit=50 (first page, newest first) for a user owning ` +
        `${listItems.toLocaleString('en')} items; B: the same user and request on a server whose database holds ` +
        `${SMALL.toLocaleString('en')} items. wrk -t1 -c1 (one request at a time) for ${loadSeconds} s each, after a 2 s warm-up.`,
      a,
      b,
      target: { on: 'ratio', op: '<=', value: 1.5 },
    },
  ];
}
