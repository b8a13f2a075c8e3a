/**
 * The soak's load generator, run as its own process so its allocations never count as the
 * server's: WORKERS loops, each doing a mixed round of what clients of a media server do —
 * multipart upload of a new photo, item and list reads, a content range, the first thumbnail of
 * that photo (a fresh render every time) and a cached one, a signed link and its use, a small tus
 * upload, a login now and then, and deletes (so the store does not grow without bound).
 * Prints one JSON line of counts by operation and status when SECONDS have passed.
 *
 * usage: node soak-load.ts BASE USER PASSWORD PHOTO_DIR WORKERS SECONDS
 */
import fs from 'node:fs';
import path from 'node:path';

const [base, user, password, photoDir, workersArg, secondsArg] = process.argv.slice(2);
const photos = fs.readdirSync(photoDir!).map((f) => fs.readFileSync(path.join(photoDir!, f)));
const deadline = Date.now() + Number(secondsArg) * 1000;
const counts: Record<string, number> = {};
const count = (what: string, status: number) => {
  const key = `${what} ${status}`;
  counts[key] = (counts[key] ?? 0) + 1;
};

async function call(what: string, url: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(base + url, init);
  count(what, res.status);
  return res;
}

async function login(): Promise<string> {
  const res = await call('login', '/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user, password }),
  });
  const body = (await res.json()) as { accessToken?: string };
  if (!body.accessToken) throw new Error(`login: ${res.status}`);
  return body.accessToken;
}

async function worker(n: number, first: string): Promise<void> {
  let token = first;
  for (let round = 0; Date.now() < deadline; round++) {
    const auth = { authorization: `Bearer ${token}` };
    const photo = photos[(n + round) % photos.length]!;
    // A different byte at the end makes every upload a new file (its own sha256 and renders).
    const bytes = Buffer.concat([photo, Buffer.from(`${n}-${round}-${Date.now()}`)]);
    const form = new FormData();
    form.set('file', new Blob([bytes], { type: 'image/jpeg' }), `soak-${n}-${round}.jpg`);
    form.set('tags', 'soak');
    const up = await call('upload', '/api/media/upload', { method: 'POST', headers: auth, body: form });
    const item = (await up.json()) as { id?: string };
    // Now and then a new session, as apps do; a refused login keeps the current token.
    if (up.status === 401 || round % 25 === 24) token = await login().catch(() => token);
    if (!item.id) continue;
    const id = item.id;
    await (await call('item', `/api/media/${id}`, { headers: auth })).arrayBuffer();
    await (await call('list', '/api/media/list?limit=20&tag=soak', { headers: auth })).arrayBuffer();
    await (
      await call('range', `/api/media/${id}/content`, { headers: { ...auth, range: 'bytes=0-65535' } })
    ).arrayBuffer();
    await (await call('thumb-first', `/api/media/${id}/thumbnail?size=256`, { headers: auth })).arrayBuffer();
    await (
      await call('thumb-cached', `/api/media/${id}/thumbnail?size=256`, { headers: auth })
    ).arrayBuffer();
    const link = await call('link', `/api/media/${id}/links`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ expiresIn: 60 }),
    });
    const { url } = (await link.json()) as { url?: string };
    if (url) await (await call('link-get', url)).arrayBuffer();
    // A small resumable upload: creation with upload, in one request.
    const tus = await call('tus', '/api/media/uploads', {
      method: 'POST',
      headers: {
        ...auth,
        'tus-resumable': '1.0.0',
        'upload-length': String(bytes.length),
        'upload-metadata': `filename ${Buffer.from(`tus-${n}-${round}.jpg`).toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
      },
      body: bytes,
    });
    await tus.arrayBuffer();
    const tusId = tus.headers.get('media-id');
    await (await call('delete', `/api/media/${id}`, { method: 'DELETE', headers: auth })).arrayBuffer();
    if (tusId)
      await (await call('delete', `/api/media/${tusId}`, { method: 'DELETE', headers: auth })).arrayBuffer();
  }
}

// One login after the other: parallel attempts for one user and address are counted before the
// password is checked (so parallel guesses cannot pass the brute-force cap), and six at once would
// trip it.
const tokens: string[] = [];
for (let n = 0; n < Number(workersArg); n++) tokens.push(await login());
await Promise.all(tokens.map((token, n) => worker(n, token)));
console.log(JSON.stringify(counts));
