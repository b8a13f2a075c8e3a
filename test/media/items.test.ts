import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import {
  expectError,
  pdf,
  png,
  startMediaApp,
  type MediaApp,
  type MediaItem,
  type User,
} from './media-helpers.ts';

let app: MediaApp;
let item: MediaItem;

beforeAll(async () => {
  app = await startMediaApp();
});
afterAll(async () => {
  await app?.close();
});
beforeEach(async () => {
  item = await app.uploadFile(await png(4, 3), 'beach.png', 'alice', { tags: 'summer' });
});

const get = (as: User | null, id = item.id) => app.api('GET', `/api/media/${id}`, { as });
const patch = (as: User, body: unknown, id = item.id) => app.api('PATCH', `/api/media/${id}`, { as, body });
const del = (as: User, id = item.id) => app.api('DELETE', `/api/media/${id}`, { as });

describe('who may read, change and delete an item', () => {
  test('the owner and admins may read it', async () => {
    for (const as of ['alice', 'root'] as const) {
      const res = await get(as);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual(item);
    }
  });

  test('anyone else gets 404 for GET, PATCH and DELETE, never 403, and nothing changes', async () => {
    expectError(await get('bob'), 404, 'NOT_FOUND');
    expectError(await patch('bob', { filename: 'mine.png' }), 404, 'NOT_FOUND');
    expectError(await del('bob'), 404, 'NOT_FOUND');
    // The same answers as for an id that does not exist at all.
    expectError(await get('bob', 'AAAAAAAAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND');
    expectError(await get('alice', 'AAAAAAAAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND');
    expectError(await get('alice', '..%2F..%2Fusers'), 404, 'NOT_FOUND');
    expect((await get('alice')).json()).toEqual(item);
  });

  test('public items too: GET /api/media/{id} needs the owner or an admin', async () => {
    expect((await patch('alice', { visibility: 'public' })).status).toBe(200);
    expectError(await get('bob'), 404, 'NOT_FOUND');
    expectError(await get(null), 401, 'UNAUTHENTICATED');
  });

  test('the owner may change it', async () => {
    const res = await patch('alice', { filename: 'renamed.png', visibility: 'public', tags: ['Sea'] });
    expect(res.status).toBe(200);
    const updated = res.json<MediaItem>();
    expect(updated).toMatchObject({
      id: item.id,
      filename: 'renamed.png',
      visibility: 'public',
      tags: ['sea'],
      owner: 'alice',
    });
    expect(updated.sha256).toBe(item.sha256);
    expect(Date.parse(updated.updatedAt)).toBeGreaterThanOrEqual(Date.parse(item.updatedAt));
    expect(updated.createdAt).toBe(item.createdAt);
    expect((await get('alice')).json()).toEqual(updated);
  });

  test('an admin may change it; the owner stays', async () => {
    const res = await patch('root', { tags: [] });
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ owner: 'alice', tags: [] });
  });

  test('an admin may delete it', async () => {
    expect((await del('root')).status).toBe(204);
    expectError(await get('alice'), 404, 'NOT_FOUND');
  });
});

describe('PATCH validation', () => {
  const invalid: [string, unknown][] = [
    ['an unknown field', { filename: 'a.png', owner: 'bob' }],
    ['a field that cannot be changed', { mimeType: 'text/html' }],
    ['an empty file name', { filename: '' }],
    ['a file name with nothing usable in it', { filename: '/../\u202E/' }],
    ['a file name of only spaces and dots', { filename: ' ... ' }],
    ['a bad visibility', { visibility: 'everyone' }],
    ['tags that are not a list', { tags: 'a,b' }],
    ['too many tags', { tags: Array.from({ length: 33 }, (_, i) => `tag${i}`) }],
    ['too long a tag', { tags: ['x'.repeat(65)] }],
    ['a tag with a comma', { tags: ['a,b'] }],
    ['a file name that is not a string', { filename: 42 }],
  ];
  test.each(invalid)('%s → 400 VALIDATION_FAILED, nothing changes', async (_what, body) => {
    const res = await patch('alice', body);
    expectError(res, 400, 'VALIDATION_FAILED');
    expect(res.json().error.details.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: expect.any(String) })]),
    );
    expect((await get('alice')).json()).toEqual(item);
  });

  test('a body that is not JSON → 4xx in the contract shape', async () => {
    const res = await app.app.inject({
      method: 'PATCH',
      url: `/api/media/${item.id}`,
      headers: { authorization: `Bearer ${app.tokens.alice}`, 'content-type': 'application/json' },
      payload: '{"filename":',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'BAD_REQUEST', details: {} } });
  });

  test('tags are trimmed, lower-cased, de-duplicated and sorted; empty ones dropped', async () => {
    const res = await patch('alice', { tags: [' Beach ', 'beach', 'SUN', '', 'Ärger'] });
    expect(res.json<MediaItem>().tags).toEqual(['beach', 'sun', 'ärger']);
    const listed = await app.api('GET', '/api/media/list?tag=sun');
    expect(listed.json<{ items: MediaItem[] }>().items.map((i) => i.id)).toEqual([item.id]);
  });

  test('the file name is sanitised like an uploaded one', async () => {
    const res = await patch('alice', { filename: '../secret/report\u202Efdp\u0000.exe' });
    expect(res.status).toBe(200);
    expect(res.json<MediaItem>().filename).toBe('reportfdp.exe');
    const long = await patch('alice', { filename: `${'n'.repeat(600)}.png` });
    expect(long.json<MediaItem>().filename).toBe(`${'n'.repeat(251)}.png`);
  });
});

describe('DELETE', () => {
  test('removes the row, the blob, every rendition and the usage', async () => {
    const usage = async () =>
      (await app.api('GET', '/api/users/me')).json<{ usage: { files: number; bytes: number } }>();
    const before = await usage();
    expect(before).toMatchObject({ quota: { bytes: null } });
    const blob = `media/${item.id.slice(0, 2)}/${item.id}`;
    expect((await app.leftovers()).blobs).toContain(blob);
    // A rendition as the thumbnail code stores them.
    const thumbs = path.join(app.dir, 'blobs', 'thumbs', item.id);
    await fs.mkdir(thumbs, { recursive: true });
    await fs.writeFile(path.join(thumbs, '256.webp'), 'rendition');

    expect((await del('alice')).status).toBe(204);

    const files = await app.leftovers();
    expect(files.blobs.filter((f) => f.includes(item.id))).toEqual([]);
    expect(
      (await app.api('GET', '/api/media/list?limit=100'))
        .json<{ items: MediaItem[] }>()
        .items.map((i) => i.id),
    ).not.toContain(item.id);
    expect((await usage()).usage).toEqual({
      files: before.usage.files - 1,
      bytes: before.usage.bytes - item.size,
    });
    expectError(await get('alice'), 404, 'NOT_FOUND');
    expectError(await del('alice'), 404, 'NOT_FOUND');
    const content = await app.api('GET', `/api/media/${item.id}/content`);
    expectError(content, 404, 'NOT_FOUND');
  });

  test('deleting one item leaves the others alone', async () => {
    const other = await app.uploadFile(pdf(7), 'other.pdf');
    expect((await del('alice')).status).toBe(204);
    expect((await get('alice', other.id)).status).toBe(200);
    expect((await app.leftovers()).blobs).toContain(`media/${other.id.slice(0, 2)}/${other.id}`);
  });
});
