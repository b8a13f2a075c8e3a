import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  expectError,
  mp4,
  pdf,
  png,
  startMediaApp,
  wav,
  type MediaApp,
  type MediaItem,
  type User,
} from './media-helpers.ts';

const SORTS = ['-createdAt', 'createdAt', 'filename', '-filename', 'size', '-size'] as const;
type Sort = (typeof SORTS)[number];

let app: MediaApp;
/** alice's items, created in beforeAll. */
const items: MediaItem[] = [];

interface Page {
  items: MediaItem[];
  nextCursor: string | null;
}

async function list(query: string, as: User = 'alice'): Promise<Page> {
  const res = await app.api('GET', `/api/media/list?${query}`, { as });
  expect(res.status, res.body).toBe(200);
  return res.json<Page>();
}

/** Follows nextCursor to the end; `between` runs after every page. */
async function pageAll(sort: Sort, between?: (page: number) => Promise<void>): Promise<MediaItem[]> {
  const seen: MediaItem[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 50; page++) {
    const query = new URLSearchParams({ sort, limit: '7', ...(cursor ? { cursor } : {}) });
    const res = await list(query.toString());
    expect(res.items.length).toBeLessThanOrEqual(7);
    seen.push(...res.items);
    cursor = res.nextCursor;
    if (cursor === null) return seen;
    await between?.(page);
  }
  throw new Error('pagination did not end');
}

const binary = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);

function sorted(all: MediaItem[], sort: Sort): MediaItem[] {
  const key = sort.replace('-', '') as 'createdAt' | 'filename' | 'size';
  const dir = sort.startsWith('-') ? -1 : 1;
  return [...all].sort((a, b) => dir * (binary(a[key], b[key]) || binary(a.id, b.id)));
}

beforeAll(async () => {
  app = await startMediaApp();
  const files: [string, Buffer, string?][] = [
    ['Holiday_2024.pdf', pdf(1), 'Beach, Sun'],
    ['holiday-2023.pdf', pdf(2), 'beach'],
    ['100%_done.pdf', pdf(3)],
    ['100x_done.pdf', pdf(4)],
    ['photo.png', await png(9, 9), 'beach'],
    ['song.wav', wav(1234)],
    ['clip.mp4', mp4()],
  ];
  const sizes = new Set(files.map(([, data]) => data.length));
  for (let i = 0, padding = 10; files.length < 25; i++, padding += 7) {
    while (sizes.has(pdf(padding).length)) padding++;
    sizes.add(pdf(padding).length);
    files.push([`doc-${String(i).padStart(2, '0')}.pdf`, pdf(padding)]);
  }
  for (const [name, data, tags] of files)
    items.push(await app.uploadFile(data, name, 'alice', tags ? { tags } : {}));
  await app.uploadFile(pdf(500), 'bobs.pdf', 'bob');
  expect(new Set(items.map((i) => i.size)).size).toBe(items.length);
});
afterAll(async () => {
  await app?.close();
});

describe('keyset pagination', () => {
  test.each(SORTS)('sort=%s returns every item exactly once, in order', async (sort) => {
    const seen = await pageAll(sort);
    expect(seen.map((i) => i.id)).toEqual(sorted(items, sort).map((i) => i.id));
  });

  test.each(SORTS)('sort=%s stays exact while items are added between pages', async (sort) => {
    const added: MediaItem[] = [];
    const seen = await pageAll(sort, async (page) => {
      // One item sorting before everything seen so far and one after, by every key.
      added.push(await app.uploadFile(pdf(2000 + page), `zzz-new-${page}.pdf`));
      added.push(await app.uploadFile(pdf(0, `n${page}`), `AAA-new-${page}.pdf`));
    });
    const ids = seen.map((i) => i.id);
    expect(new Set(ids).size).toBe(ids.length);
    const original = new Set(items.map((i) => i.id));
    expect(ids.filter((id) => original.has(id)).sort()).toEqual([...original].sort());
    const addedIds = new Set(added.map((i) => i.id));
    expect(ids.every((id) => original.has(id) || addedIds.has(id))).toBe(true);
    for (const item of added) expect((await app.api('DELETE', `/api/media/${item.id}`)).status).toBe(204);
  });

  test('the default is 50 items newest first', async () => {
    const page = await list('');
    expect(page.items.map((i) => i.id)).toEqual(sorted(items, '-createdAt').map((i) => i.id));
    expect(page.nextCursor).toBeNull();
  });
});

describe('cursors are opaque and tamper-checked', () => {
  let cursor: string;
  beforeAll(async () => {
    cursor = (await list('sort=size&limit=5')).nextCursor!;
    expect(cursor).toEqual(expect.any(String));
  });

  const bad = (c: string) =>
    app.api('GET', `/api/media/list?sort=size&limit=5&cursor=${encodeURIComponent(c)}`);

  test('a cursor works with its own sort', async () => {
    expect((await bad(cursor)).status).toBe(200);
  });

  test('garbage, a changed payload, a changed signature and a forged cursor → 400', async () => {
    const [payload, signature] = cursor.split('.') as [string, string];
    const decoded = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...decoded, v: 0 })).toString('base64url');
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (const c of [
      'garbage',
      'x.y',
      `${forged}.${signature}`,
      `${flip(payload, 3)}.${signature}`,
      `${payload}.${flip(signature, 0)}`,
      `${forged}`,
    ]) {
      const res = await bad(c);
      expectError(res, 400, 'VALIDATION_FAILED');
    }
  });

  test('a cursor used with another sort → 400', async () => {
    const res = await app.api(
      'GET',
      `/api/media/list?sort=filename&limit=5&cursor=${encodeURIComponent(cursor)}`,
    );
    expectError(res, 400, 'VALIDATION_FAILED');
  });
});

describe('filters', () => {
  const names = async (query: string, as: User = 'alice') =>
    (await list(query, as)).items.map((i) => i.filename).sort();

  test('type', async () => {
    expect(await names('type=image')).toEqual(['photo.png']);
    expect(await names('type=audio')).toEqual(['song.wav']);
    expect(await names('type=video')).toEqual(['clip.mp4']);
    expect((await names('type=document')).length).toBe(22);
    expectError(await app.api('GET', '/api/media/list?type=executable'), 400, 'VALIDATION_FAILED');
  });

  test('tag, matched the way tags are normalised', async () => {
    expect(await names('tag=beach')).toEqual(['Holiday_2024.pdf', 'holiday-2023.pdf', 'photo.png']);
    expect(await names('tag=%20BEACH%20')).toEqual(['Holiday_2024.pdf', 'holiday-2023.pdf', 'photo.png']);
    expect(await names('tag=sun')).toEqual(['Holiday_2024.pdf']);
    expect(await names('tag=snow')).toEqual([]);
  });

  test('q is a case-insensitive substring with % and _ taken literally', async () => {
    expect(await names('q=HOLIDAY')).toEqual(['Holiday_2024.pdf', 'holiday-2023.pdf']);
    expect(await names('q=y_2')).toEqual(['Holiday_2024.pdf']);
    expect(await names('q=_')).toEqual(['100%_done.pdf', '100x_done.pdf', 'Holiday_2024.pdf']);
    expect(await names('q=0%25_')).toEqual(['100%_done.pdf']);
    expect(await names('q=%25')).toEqual(['100%_done.pdf']);
    expect(await names('q=100%25')).toEqual(['100%_done.pdf']);
    expect(await names('q=nothing-like-this')).toEqual([]);
  });

  test('q folds case in any script, not only ASCII', async () => {
    const ueber = await app.uploadFile(pdf(0, 'u'), 'ÜBER Straße.pdf');
    const ete = await app.uploadFile(pdf(0, 'e'), 'été.pdf');
    try {
      expect(await names(`q=${encodeURIComponent('über')}`)).toEqual(['ÜBER Straße.pdf']);
      expect(await names(`q=${encodeURIComponent('STRASSE')}`)).toEqual([]);
      expect(await names(`q=${encodeURIComponent('straße')}`)).toEqual(['ÜBER Straße.pdf']);
      expect(await names(`q=${encodeURIComponent('ÉTÉ')}`)).toEqual(['été.pdf']);
      expect(await names('q=*')).toEqual([]);
      expect(await names('q=%3F')).toEqual([]);
    } finally {
      for (const item of [ueber, ete]) await app.api('DELETE', `/api/media/${item.id}`);
    }
  });

  test('filters combine', async () => {
    expect(await names('tag=beach&type=image')).toEqual(['photo.png']);
    expect(await names('tag=beach&q=2023')).toEqual(['holiday-2023.pdf']);
  });

  test('limit is 1 to 100', async () => {
    for (const limit of ['0', '101', '-1', 'ten']) {
      expectError(await app.api('GET', `/api/media/list?limit=${limit}`), 400, 'VALIDATION_FAILED');
    }
    expect((await list('limit=1')).items).toHaveLength(1);
    expect((await list('limit=100')).items).toHaveLength(25);
    expectError(await app.api('GET', '/api/media/list?sort=random'), 400, 'VALIDATION_FAILED');
  });
});

describe('whose items', () => {
  test('users see only their own', async () => {
    expect(await names('', 'bob')).toEqual(['bobs.pdf']);
    expect((await list('', 'root')).items).toEqual([]);
  });

  test('an admin may list any owner', async () => {
    const page = await list('owner=alice&limit=100', 'root');
    expect(page.items.map((i) => i.id).sort()).toEqual(items.map((i) => i.id).sort());
    expect(page.items.every((i) => i.owner === 'alice')).toBe(true);
  });

  test('a user asking for another owner → 403 FORBIDDEN; for themselves → 200', async () => {
    expectError(await app.api('GET', '/api/media/list?owner=bob'), 403, 'FORBIDDEN');
    expectError(await app.api('GET', '/api/media/list?owner=nobody'), 403, 'FORBIDDEN');
    expect((await list('owner=alice&limit=100')).items).toHaveLength(25);
  });

  test('no token → 401', async () => {
    expectError(await app.api('GET', '/api/media/list', { as: null }), 401, 'UNAUTHENTICATED');
  });

  async function names(query: string, as: User) {
    return (await list(query, as)).items.map((i) => i.filename).sort();
  }
});
