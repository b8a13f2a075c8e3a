import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { until } from '../helpers/common.ts';
import {
  expectError,
  pdf,
  sha256,
  startMediaApp,
  type ApiResponse,
  type MediaApp,
  type User,
} from './media-helpers.ts';

/**
 * POST /api/media/lookup (contract, second part): which of up to 1000 SHA-256 digests the caller
 * has stored, each with the caller's newest item of those bytes; nothing about anyone else's
 * items, also for administrators. Over HTTP on SQLite and on PostgreSQL.
 */
const digest = (n: number) => sha256(Buffer.from(`not stored ${n}`));

function lookupSuite(
  dialect: string,
  env: () => Promise<{ env: Record<string, string>; drop(): Promise<void> }>,
) {
  describe(`POST /api/media/lookup (${dialect})`, () => {
    let app: MediaApp;
    let drop: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      const target = await env();
      drop = () => target.drop();
      app = await startMediaApp(target.env);
    });
    afterAll(async () => {
      await app?.close();
      await drop?.();
    });

    const lookup = (digests: unknown, as: User | null = 'alice'): Promise<ApiResponse> =>
      app.api('POST', '/api/media/lookup', { as, body: { sha256: digests } });
    const raw = async (body: string, as: User = 'alice'): Promise<ApiResponse> => {
      const res = await app.app.inject({
        method: 'POST',
        url: '/api/media/lookup',
        headers: { authorization: `Bearer ${app.tokens[as]}`, 'content-type': 'application/json' },
        payload: body,
      });
      return {
        status: res.statusCode,
        headers: res.headers,
        body: res.body,
        rawPayload: res.rawPayload,
        json: <T>() => JSON.parse(res.body) as T,
      };
    };
    const found = async (digests: string[], as: User = 'alice') => {
      const res = await lookup(digests, as);
      expect(res.status, res.body).toBe(200);
      return res.json<{ found: Record<string, string> }>().found;
    };

    it("answers the caller's newest item for each digest it has, and leaves out the rest", async () => {
      const [a, b] = [pdf(11, 'lookup a'), pdf(12, 'lookup b')];
      const first = await app.uploadFile(a, 'a.pdf');
      // A later copy of the same bytes (a later millisecond, so "newest" is unambiguous).
      await until(() => Date.now() > Date.parse(first.createdAt), 1000);
      const second = await app.uploadFile(a, 'a-again.pdf');
      const only = await app.uploadFile(b, 'b.pdf');
      expect(await found([sha256(a), digest(1), sha256(b), digest(2)])).toEqual({
        [sha256(a)]: second.id,
        [sha256(b)]: only.id,
      });
      // The newest gone, the one before it is the answer.
      expect((await app.api('DELETE', `/api/media/${second.id}`)).status).toBe(204);
      expect(await found([sha256(a)])).toEqual({ [sha256(a)]: first.id });
      // An empty list, and a digest asked twice.
      expect(await found([])).toEqual({});
      expect(await found([sha256(b), sha256(b)])).toEqual({ [sha256(b)]: only.id });
    });

    it("never reveals another user's items, also not to an administrator", async () => {
      const shared = pdf(21, 'shared bytes');
      const bobs = pdf(22, 'only bob has these');
      const alices = await app.uploadFile(shared, 'mine.pdf', 'alice');
      await until(() => Date.now() > Date.parse(alices.createdAt), 1000);
      // Bob's copy is newer than alice's: she still gets her own.
      const bobsCopy = await app.uploadFile(shared, 'his.pdf', 'bob');
      await app.uploadFile(bobs, 'secret.pdf', 'bob');
      expect(await found([sha256(shared), sha256(bobs)], 'alice')).toEqual({ [sha256(shared)]: alices.id });
      expect(await found([sha256(shared), sha256(bobs)], 'root')).toEqual({});
      expect(await found([sha256(shared)], 'bob')).toEqual({ [sha256(shared)]: bobsCopy.id });
      const roots = await app.uploadFile(shared, 'admin.pdf', 'root');
      expect(await found([sha256(shared), sha256(bobs)], 'root')).toEqual({ [sha256(shared)]: roots.id });
    });

    it('takes 1000 digests (a body of about 67 KB, over the usual JSON limit), also pretty-printed with two-space indents', async () => {
      const mine = pdf(31, 'one of a thousand');
      const item = await app.uploadFile(mine, 'thousand.pdf');
      const digests = Array.from({ length: 1000 }, (_, n) => digest(1000 + n));
      digests[517] = sha256(mine);
      const compact = JSON.stringify({ sha256: digests });
      expect(compact.length).toBeGreaterThan(64 * 1024);
      for (const body of [compact, JSON.stringify({ sha256: digests }, null, 2)]) {
        const res = await raw(body);
        expect(res.status, res.body).toBe(200);
        expect(res.json()).toEqual({ found: { [sha256(mine)]: item.id } });
      }
    });

    it('refuses 1001 digests, and digests that are not 64 lowercase hex digits, with 400', async () => {
      const many = Array.from({ length: 1001 }, (_, n) => digest(n));
      const tooMany = await lookup(many);
      expectError(tooMany, 400, 'VALIDATION_FAILED');
      expect(tooMany.json()).toMatchObject({ error: { details: { issues: [{ path: 'body.sha256' }] } } });
      const good = digest(0);
      for (const bad of [
        good.toUpperCase(),
        good.slice(0, 63),
        `${good}0`,
        `${good.slice(0, 63)}g`,
        ` ${good.slice(1)}`,
        '',
        42,
        null,
      ]) {
        const res = await lookup([good, bad]);
        expectError(res, 400, 'VALIDATION_FAILED');
        // Names the digest that is wrong.
        expect(res.json()).toMatchObject({ error: { details: { issues: [{ path: 'body.sha256.1' }] } } });
      }
      for (const body of [{}, { sha256: good }, { sha256: [good], extra: true }, [good]]) {
        expectError(await app.api('POST', '/api/media/lookup', { body }), 400, 'VALIDATION_FAILED');
      }
    });

    it('refuses a body over the limit with 413, however it is padded', async () => {
      const digests = Array.from({ length: 1000 }, (_, n) => digest(n));
      const padded = JSON.stringify({ sha256: digests }, null, 40);
      expect(padded.length).toBeGreaterThan(80 * 1024);
      expectError(await raw(padded), 413, 'PAYLOAD_TOO_LARGE');
      expectError(await raw(`{"sha256":[${' '.repeat(200 * 1024)}]}`), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('needs a session', async () => {
      expectError(await lookup([digest(0)], null), 401, 'UNAUTHENTICATED');
    });

    it('is in the OpenAPI document with its limits', async () => {
      const res = await app.api('GET', '/openapi.json', { as: null });
      type Schema = { properties: { sha256: { maxItems: number; items: { pattern: string } } } };
      const doc = res.json<{
        paths: Record<string, { post?: { requestBody: { content: Record<string, { schema: Schema }> } } }>;
      }>();
      const schema = doc.paths['/api/media/lookup']?.post?.requestBody.content['application/json']?.schema;
      expect(schema?.properties.sha256).toMatchObject({
        maxItems: 1000,
        items: { pattern: '^[0-9a-f]{64}$' },
      });
    });
  });
}

lookupSuite('SQLite', async () => ({ env: {}, drop: () => Promise.resolve() }));

describe.skipIf(!pgAvailable())('on PostgreSQL', () => {
  lookupSuite('PostgreSQL', async () => {
    const database: TestDatabase = await createTestDatabase();
    return { env: { STOWAGE_DATABASE_URL: database.url }, drop: () => database.drop() };
  });
});
