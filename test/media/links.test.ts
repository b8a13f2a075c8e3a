import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadHmacKey } from '../../src/auth/keys.ts';
import { Signer } from '../../src/media/signing.ts';
import {
  expectError,
  pdf,
  png,
  startMediaApp,
  type MediaApp,
  type MediaItem,
  type User,
} from './media-helpers.ts';

const MAX_TTL = 7200;

let app: MediaApp;
let a: MediaItem;
let b: MediaItem;

beforeAll(async () => {
  app = await startMediaApp({ STOWAGE_LINK_MAX_TTL: String(MAX_TTL) });
  a = await app.uploadFile(pdf(1, 'item a'), 'a.pdf');
  b = await app.uploadFile(pdf(2, 'item b'), 'b.pdf');
});
afterAll(async () => {
  await app?.close();
});

interface Link {
  id: string;
  url: string;
  createdAt: string;
  expiresAt: string;
}

async function link(
  id: string,
  body: unknown = {},
  as: User = 'alice',
): Promise<{ id: string; url: string; expiresAt: string }> {
  const res = await app.api('POST', `/api/media/${id}/links`, { as, body });
  expect(res.status, res.body).toBe(201);
  return res.json();
}

function tokenOf(url: string): string {
  return new URL(url, 'http://x').searchParams.get('token')!;
}

/** Over a real socket, with no credential but the link. */
async function open(url: string, method: 'GET' | 'HEAD' = 'GET') {
  const res = await fetch(`${app.base}${url}`, { method });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

describe('creating a link', () => {
  test('expires in 3600 s by default and points at the content', async () => {
    const before = Date.now();
    const { url, expiresAt } = await link(a.id);
    expect(url).toMatch(new RegExp(`^/api/media/${a.id}/content\\?token=[A-Za-z0-9_.%-]+$`));
    const lifetime = Date.parse(expiresAt) - before;
    expect(lifetime).toBeGreaterThanOrEqual(3600_000);
    expect(lifetime).toBeLessThan(3600_000 + 60_000);
  });

  test('needs no body at all for the default link', async () => {
    const res = await app.app.inject({
      method: 'POST',
      url: `/api/media/${a.id}/links`,
      headers: { authorization: `Bearer ${app.tokens.alice}` },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(Date.parse(res.json<{ expiresAt: string }>().expiresAt) - Date.now()).toBeGreaterThan(3500_000);
  });

  test.each([
    ['0 seconds', { expiresIn: 0 }],
    ['more than STOWAGE_LINK_MAX_TTL', { expiresIn: MAX_TTL + 1 }],
    ['a negative time', { expiresIn: -5 }],
    ['a string', { expiresIn: '60' }],
    ['an unknown field', { expiresIn: 60, for: 'bob' }],
  ])('%s → 400 VALIDATION_FAILED', async (_what, body) => {
    expectError(await app.api('POST', `/api/media/${a.id}/links`, { body }), 400, 'VALIDATION_FAILED');
  });

  test('up to STOWAGE_LINK_MAX_TTL is allowed', async () => {
    const { expiresAt } = await link(a.id, { expiresIn: MAX_TTL });
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan((MAX_TTL - 60) * 1000);
  });

  test('only the owner or an admin may create one', async () => {
    expect((await app.api('POST', `/api/media/${a.id}/links`, { as: 'root', body: {} })).status).toBe(201);
    expectError(await app.api('POST', `/api/media/${a.id}/links`, { as: 'bob', body: {} }), 404, 'NOT_FOUND');
    expectError(
      await app.api('POST', `/api/media/${a.id}/links`, { as: null, body: {} }),
      401,
      'UNAUTHENTICATED',
    );
  });
});

describe('using a link', () => {
  test('works without any other credential, for GET and HEAD', async () => {
    const { url } = await link(a.id, { expiresIn: 600 });
    const get = await open(url);
    expect(get.status).toBe(200);
    expect(get.body).toEqual(pdf(1, 'item a'));
    expect(get.headers.get('content-type')).toBe('application/pdf');
    expect(get.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    const head = await open(url, 'HEAD');
    expect({ status: head.status, length: head.body.length }).toEqual({ status: 200, length: 0 });
    expect(head.headers.get('content-length')).toBe(String(a.size));
    const ranged = await fetch(`${app.base}${url}`, { headers: { range: 'bytes=0-3' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).toString()).toBe('%PDF');
  });

  test('is bound to its item: on another item → 401', async () => {
    const { url } = await link(a.id);
    const res = await open(`/api/media/${b.id}/content?token=${encodeURIComponent(tokenOf(url))}`);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body.toString()).error.code).toBe('UNAUTHENTICATED');
  });

  test('a tampered or made-up token → 401', async () => {
    const token = tokenOf((await link(a.id)).url);
    const [payload, signature] = token.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const longer = Buffer.from(JSON.stringify({ ...claims, e: (claims.e as number) + 999_999 })).toString(
      'base64url',
    );
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    // The last base64url character of a 32-byte MAC has two unused bits: a different string that
    // decodes to the same bytes is still not the token that was issued.
    const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sameBytes = signature.slice(0, -1) + B64[B64.indexOf(signature.at(-1)!) ^ 1]!;
    expect(Buffer.from(sameBytes, 'base64url')).toEqual(Buffer.from(signature, 'base64url'));
    for (const bad of [
      `${longer}.${signature}`,
      `${flip(payload, 2)}.${signature}`,
      `${payload}.${flip(signature, 0)}`,
      `${payload}.${sameBytes}`,
      payload,
      'x',
      '',
    ]) {
      const res = await open(`/api/media/${a.id}/content?token=${encodeURIComponent(bad)}`);
      expect({ bad, status: res.status }).toEqual({ bad, status: 401 });
    }
  });

  test('is not a credential for anything but content', async () => {
    const token = encodeURIComponent(tokenOf((await link(a.id)).url));
    for (const [method, url] of [
      ['GET', `/api/media/${a.id}?token=${token}`],
      ['DELETE', `/api/media/${a.id}?token=${token}`],
      ['GET', `/api/media/list?token=${token}`],
    ] as const) {
      const res = await fetch(`${app.base}${url}`, { method });
      expect({ url, status: res.status }).toEqual({ url, status: 401 });
    }
    const put = await fetch(`${app.base}/api/media/${a.id}/content?token=${token}`, {
      method: 'PUT',
      body: 'x',
    });
    expect(put.status).toBeGreaterThanOrEqual(400);
    expect((await app.api('GET', `/api/media/${a.id}`)).status).toBe(200);
  });

  test('works until its expiresAt and not after', async () => {
    const sleepUntil = (ms: number) =>
      new Promise((resolve) => setTimeout(resolve, Math.max(0, ms - Date.now())));
    const created = Date.now();
    const { url, expiresAt } = await link(a.id, { expiresIn: 1 });
    const end = Date.parse(expiresAt);
    expect(end - created).toBeGreaterThanOrEqual(1000);
    // Shortly before the time it was given, the link must still work: it may not die early.
    await sleepUntil(end - 300);
    expect((await open(url)).status).toBe(200);
    await sleepUntil(end + 500);
    const res = await open(url);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body.toString()).error.code).toBe('UNAUTHENTICATED');
  });

  test('is dead once the item is deleted', async () => {
    const item = await app.uploadFile(pdf(3), 'short-lived.pdf');
    const { url } = await link(item.id);
    expect((await open(url)).status).toBe(200);
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    const res = await open(url);
    expect([401, 404]).toContain(res.status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });
});

describe('revocable links', () => {
  let photo: MediaItem;
  beforeAll(async () => {
    photo = await app.uploadFile(await png(40, 30), 'photo.png');
  });

  const list = (id: string, as: User | null = 'alice') => app.api('GET', `/api/media/${id}/links`, { as });
  const revoke = (id: string, linkId: string, as: User | null = 'alice') =>
    app.api('DELETE', `/api/media/${id}/links/${linkId}`, { as });
  const thumbnailUrl = (url: string) => url.replace('/content?', '/thumbnail?');

  test('create → list → use (content and thumbnail) → revoke → 401 for both', async () => {
    const created = await link(photo.id, { expiresIn: 900 });
    expect(created).toEqual({
      id: expect.any(String),
      url: expect.any(String),
      expiresAt: expect.any(String),
    });
    expect(created.url).toMatch(new RegExp(`^/api/media/${photo.id}/content\\?token=[A-Za-z0-9_.%-]+$`));

    const listed = await list(photo.id);
    expect(listed.status, listed.body).toBe(200);
    const items = listed.json<{ items: Link[] }>().items;
    const entry = items.find((l) => l.id === created.id);
    expect(entry).toEqual({
      id: created.id,
      url: created.url,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      expiresAt: created.expiresAt,
    });
    expect(Date.parse(entry!.createdAt)).toBeLessThanOrEqual(Date.parse(entry!.expiresAt) - 900_000);

    expect((await open(created.url)).status).toBe(200);
    const thumb = await open(thumbnailUrl(created.url));
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/webp');

    const revoked = await revoke(photo.id, created.id);
    expect(revoked.status, revoked.body).toBe(204);
    expect(revoked.body).toBe('');
    for (const url of [created.url, thumbnailUrl(created.url)]) {
      const res = await open(url);
      expect({ url, status: res.status }).toEqual({ url, status: 401 });
      expect(JSON.parse(res.body.toString()).error.code).toBe('UNAUTHENTICATED');
    }
    const after = (await list(photo.id)).json<{ items: Link[] }>().items;
    expect(after.map((l) => l.id)).not.toContain(created.id);
    // Revoking it again: it is no longer a live link of this item.
    expectError(await revoke(photo.id, created.id), 404, 'NOT_FOUND');
  });

  test('lists only the live links of that item, newest first; revoking one leaves the others working', async () => {
    const item = await app.uploadFile(pdf(7, 'listed'), 'listed.pdf');
    const first = await link(item.id, { expiresIn: 600 });
    const second = await link(item.id, { expiresIn: 1200 }, 'root'); // an admin's link is the item's too
    await link(a.id); // another item's link never shows here
    const ids = async () => (await list(item.id)).json<{ items: Link[] }>().items.map((l) => l.id);
    expect(await ids()).toEqual([second.id, first.id]);
    expect((await list(item.id, 'root')).json<{ items: Link[] }>().items.map((l) => l.id)).toEqual([
      second.id,
      first.id,
    ]);
    expect(new Set([first.id, second.id, tokenOf(first.url), tokenOf(second.url)]).size).toBe(4);

    expect((await revoke(item.id, second.id, 'root')).status).toBe(204);
    expect(await ids()).toEqual([first.id]);
    expect((await open(second.url)).status).toBe(401);
    expect((await open(first.url)).status).toBe(200);
  });

  test("another user can neither list nor revoke an item's links (404), and without a token it is 401", async () => {
    const created = await link(photo.id);
    expectError(await list(photo.id, 'bob'), 404, 'NOT_FOUND');
    expectError(await revoke(photo.id, created.id, 'bob'), 404, 'NOT_FOUND');
    expectError(await list(photo.id, null), 401, 'UNAUTHENTICATED');
    expectError(await revoke(photo.id, created.id, null), 401, 'UNAUTHENTICATED');
    expectError(await list('no-such-item'), 404, 'NOT_FOUND');
    // bob's own item does not let him reach alice's link through it.
    const bobs = await app.uploadFile(pdf(8, 'bob'), 'bob.pdf', 'bob');
    expectError(await revoke(bobs.id, created.id, 'bob'), 404, 'NOT_FOUND');
    expect((await open(created.url)).status).toBe(200);
  });

  test("revoking a link through another item's id is 404 and leaves it working", async () => {
    const created = await link(a.id);
    expectError(await revoke(b.id, created.id), 404, 'NOT_FOUND');
    expectError(await revoke(a.id, 'no-such-link'), 404, 'NOT_FOUND');
    expect((await open(created.url)).status).toBe(200);
  });

  test('a link of item X does not open item Y, its thumbnail included', async () => {
    const created = await link(photo.id);
    const other = await app.uploadFile(await png(20, 20), 'other.png');
    const token = encodeURIComponent(tokenOf(created.url));
    for (const url of [
      `/api/media/${other.id}/content?token=${token}`,
      `/api/media/${other.id}/thumbnail?token=${token}`,
    ]) {
      const res = await open(url);
      expect({ url, status: res.status }).toEqual({ url, status: 401 });
    }
  });

  test('knowing a link id is not enough: neither the id nor a token made without the server key opens it', async () => {
    const created = await link(a.id);
    const forged = new Signer(crypto.randomBytes(32), 'link-record').sign({ l: created.id });
    for (const token of [created.id, forged, `${created.id}.${tokenOf(created.url).split('.')[1]}`]) {
      const res = await open(`/api/media/${a.id}/content?token=${encodeURIComponent(token)}`);
      expect({ token, status: res.status }).toEqual({ token, status: 401 });
    }
  });

  test('ends with its item: after deletion the link is refused and the record is gone', async () => {
    const item = await app.uploadFile(pdf(9, 'deleted'), 'deleted.pdf');
    const created = await link(item.id);
    expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
    expect((await open(created.url)).status).toBe(401);
    const rows = await app.services.database.db
      .selectFrom('links')
      .selectAll()
      .where('media_id', '=', item.id)
      .execute();
    expect(rows).toEqual([]);
  });

  test('a link issued before links were records (self-contained token) works until it expires, for its item only', async () => {
    // What the previous version handed out: an HMAC-signed { item, expiry } under the link key.
    const legacy = new Signer(await loadHmacKey(app.config.linkKeyFile), 'link');
    const inAnHour = Math.ceil(Date.now() / 1000) + 3600;
    const open_ = (id: string, token: string) =>
      open(`/api/media/${id}/content?token=${encodeURIComponent(token)}`);
    expect((await open_(a.id, legacy.sign({ m: a.id, e: inAnHour }))).status).toBe(200);
    expect((await open_(b.id, legacy.sign({ m: a.id, e: inAnHour }))).status).toBe(401);
    expect((await open_(a.id, legacy.sign({ m: a.id, e: Math.floor(Date.now() / 1000) - 1 }))).status).toBe(
      401,
    );
    // A legacy-signed payload never passes as a record's token, nor the other way round.
    const created = await link(a.id);
    expect((await open_(a.id, legacy.sign({ l: created.id }))).status).toBe(401);
  });

  test('the sweeper removes expired link records', async () => {
    const item = await app.uploadFile(pdf(10, 'swept'), 'swept.pdf');
    const live = await link(item.id);
    const db = app.services.database.db;
    await db
      .insertInto('links')
      .values({
        id: 'expired-link-record',
        media_id: item.id,
        created_at: Date.now() - 7200_000,
        expires_at: Date.now() - 3600_000,
      })
      .execute();
    await app.services.sweeper.sweep(24 * 3_600_000);
    const left = await db.selectFrom('links').select('id').where('media_id', '=', item.id).execute();
    expect(left.map((r) => r.id)).toEqual([live.id]);
  });
});
