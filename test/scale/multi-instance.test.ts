import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadHmacKey, loadSigningKey } from '../../src/auth/keys.ts';
import { createTestBucket, s3Available, type TestBucket } from '../helpers/s3.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { nginxAvailable, startNginx, type TestNginx } from '../helpers/nginx.ts';
import { createTestDatabase, pgAvailable, type TestDatabase } from '../helpers/postgres.ts';
import { REDIS_DB, flushRedisDb, redisAvailable, redisUrlFor } from '../helpers/redis.ts';
import { MiB, pdfOfSize, s3Env, sha256, tusUpload, until, uploadMultipart } from './scale-helpers.ts';

/**
 * Two real server processes on one PostgreSQL database, one Redis and one bucket (on the test
 * radosgw), behind nginx running deploy/nginx.conf with round-robin balancing: what a scaled-out
 * deployment relies on. Requests go through nginx where any instance may answer, and straight to
 * instance A or B where it matters which one does.
 */
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const PASSWORD = 'correct horse battery';
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin'] as const;
type User = (typeof USERS)[number];
const RATE_LIMIT = 100;
const TUS = '/api/media/uploads';

const canRun = [
  pgAvailable(),
  redisAvailable(),
  s3Available(),
  nginxAvailable('the multi-instance test'),
].every(Boolean);

interface Instance {
  name: string;
  base: string;
  process: ChildProcess;
  output: () => string;
}

describe.skipIf(!canRun)('two instances behind nginx (PostgreSQL, Redis, S3)', () => {
  let tmp: string;
  let s3: TestBucket | undefined;
  let database: TestDatabase | undefined;
  let a: Instance;
  let b: Instance;
  let proxy: TestNginx | undefined;
  const children: ChildProcess[] = [];
  const killAll = () => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };

  beforeAll(async () => {
    process.once('exit', killAll); // also when the run is cut short
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-multi-'));
    await fs.chmod(tmp, 0o755); // nginx workers (nobody, when run as root) need to reach their temp dirs
    [s3, database] = await Promise.all([
      createTestBucket(),
      createTestDatabase(),
      flushRedisDb(REDIS_DB.multiInstance),
    ]);

    // One users file and one pair of keys for all instances (docs/deployment.md says how to share them).
    const shared = path.join(tmp, 'shared');
    await fs.mkdir(shared, { mode: 0o700 });
    const usersFile = path.join(shared, 'users');
    for (const user of USERS)
      await cli(['users', 'add', user, '--password-stdin'], usersFile, `${PASSWORD}\n`);
    const jwtKeyFile = path.join(shared, 'jwt-ed25519.pem');
    const linkKeyFile = path.join(shared, 'link-hmac.key');
    await loadSigningKey(jwtKeyFile);
    await loadHmacKey(linkKeyFile);

    const env = {
      ...s3Env(s3),
      STOWAGE_DATABASE_URL: database.url,
      STOWAGE_DATABASE_POOL_SIZE: '5',
      STOWAGE_REDIS_URL: redisUrlFor(REDIS_DB.multiInstance),
      STOWAGE_USERS_FILE: usersFile,
      STOWAGE_JWT_KEY_FILE: jwtKeyFile,
      STOWAGE_LINK_KEY_FILE: linkKeyFile,
      STOWAGE_TRUST_PROXY: '127.0.0.1',
      STOWAGE_MAX_UPLOAD_BYTES: String(64 * MiB),
      STOWAGE_RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT),
    };
    [a, b] = await Promise.all([startInstance('a', env), startInstance('b', env)]);
    proxy = await startNginx({
      dir: path.join(tmp, 'nginx'),
      upstreams: [a, b].map((u) => new URL(u.base).host),
      // Which instance answered each request, for the round-robin checks.
      logFormat: '$request_method $request_uri $status $upstream_addr',
    });
    children.push(proxy.process);
  }, 60_000);

  // On a failure, show what the instances and nginx logged.
  beforeEach(({ onTestFailed }) => {
    onTestFailed(async () => {
      const tail = (text: string) => text.split('\n').slice(-30).join('\n');
      const nginxErrors = proxy ? await fs.readFile(proxy.errorLog, 'utf8').catch(() => '') : '';
      for (const instance of [a, b])
        if (instance) console.error(`--- instance ${instance.name}:\n${tail(instance.output())}`);
      console.error(`--- nginx error log:\n${tail(nginxErrors)}`);
    });
  });

  afterAll(async () => {
    const stopping = children.map((child) => stop(child));
    await Promise.all(stopping);
    process.off('exit', killAll);
    await database?.drop();
    await flushRedisDb(REDIS_DB.multiInstance).catch(() => undefined);
    await s3?.drop();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  }, 30_000);

  // ---------------------------------------------------------------------------------------------

  async function cli(args: string[], usersFile: string, stdin: string): Promise<void> {
    const child = spawn(process.execPath, [path.join(ROOT, 'src', 'cli', 'main.ts'), ...args], {
      cwd: tmp,
      env: { PATH: process.env.PATH ?? '', STOWAGE_USERS_FILE: usersFile },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stdin.end(stdin);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`stowage ${args.join(' ')} failed (${code}): ${output}`);
  }

  async function startInstance(name: string, env: Record<string, string>): Promise<Instance> {
    // Its own working directory: no developer's .env is read.
    const server = await startServerProcess({
      cwd: tmp,
      name: `instance ${name}`,
      env: { ...env, STOWAGE_DATA_DIR: path.join(tmp, `data-${name}`) },
    });
    children.push(server.child);
    return { name, base: server.base, process: server.child, output: () => server.output() };
  }

  async function stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Requests to one instance (or nginx), as `as` unless a token is given. */
  const tokens = new Map<User, string>();
  async function login(base: string, user: User, headers: Record<string, string> = {}) {
    const res = await fetch(`${base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ username: user, password: PASSWORD }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as { accessToken: string; refreshToken: string };
  }
  async function token(user: User): Promise<string> {
    if (!tokens.has(user)) tokens.set(user, (await login(a.base, user)).accessToken);
    return tokens.get(user)!;
  }
  const bearer = (accessToken: string) => ({ authorization: `Bearer ${accessToken}` });
  const me = (base: string, accessToken: string) =>
    fetch(`${base}/api/auth/me`, { headers: bearer(accessToken) });

  async function accessLogLines(): Promise<
    { method: string; uri: string; status: number; upstream: string }[]
  > {
    const text = await fs.readFile(proxy!.accessLog, 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [method = '', uri = '', status = '', upstream = ''] = line.split(' ');
        return { method, uri, status: Number(status), upstream };
      });
  }

  async function content(
    base: string,
    accessToken: string,
    id: string,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${base}/api/media/${id}/content`, {
      headers: { ...bearer(accessToken), ...headers },
    });
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }

  // ---------------------------------------------------------------------------------------------

  it('reports ready on both instances, with PostgreSQL, the bucket and Redis checked', async () => {
    for (const base of [a.base, b.base, proxy!.base]) {
      const res = await fetch(`${base}/readyz`);
      expect(await res.json()).toEqual({
        status: 'ok',
        checks: { database: 'ok', storage: 'ok', scanner: 'off', redis: 'ok' },
      });
      expect(res.status).toBe(200);
    }
  });

  it('serves a file uploaded through one instance from the other', async () => {
    const alice = await token('alice');
    const data = pdfOfSize(9 * MiB + 123);
    const res = await uploadMultipart({ base: a.base, token: alice, data, filename: 'from-a.pdf' });
    expect(res.status, res.body).toBe(201);
    const { id } = JSON.parse(res.body) as { id: string };

    const whole = await content(b.base, alice, id);
    expect(whole.status).toBe(200);
    expect(sha256(whole.body)).toBe(sha256(data));
    const ranged = await content(b.base, alice, id, { range: 'bytes=8388600-8388699' });
    expect(ranged.status).toBe(206);
    expect(ranged.body).toEqual(data.subarray(8_388_600, 8_388_700));
    const list = await fetch(`${b.base}/api/media/list`, { headers: bearer(alice) });
    expect(((await list.json()) as { items: { id: string }[] }).items.map((i) => i.id)).toContain(id);
  });

  it('balances requests through nginx round-robin, each instance serving the same bytes', async () => {
    const alice = await token('alice');
    const data = pdfOfSize(3 * MiB);
    const res = await uploadMultipart({ base: proxy!.base, token: alice, data, filename: 'via-nginx.pdf' });
    expect(res.status, res.body).toBe(201);
    const { id } = JSON.parse(res.body) as { id: string };
    for (let i = 0; i < 4; i++) {
      const got = await content(proxy!.base, alice, id);
      expect(got.status).toBe(200);
      expect(sha256(got.body)).toBe(sha256(data));
    }
    const downloads = (await accessLogLines()).filter((l) => l.uri === `/api/media/${id}/content`);
    expect(downloads).toHaveLength(4);
    expect(new Set(downloads.map((l) => l.upstream))).toEqual(
      new Set([new URL(a.base).host, new URL(b.base).host]),
    );
  });

  it('shows a change or a deletion made through one instance on the other within a second', async () => {
    const alice = await token('alice');
    const res = await uploadMultipart({
      base: a.base,
      token: alice,
      data: pdfOfSize(4096),
      filename: 'draft.pdf',
    });
    const { id } = JSON.parse(res.body) as { id: string };
    const item = (base: string) => fetch(`${base}/api/media/${id}`, { headers: bearer(alice) });
    expect((await item(b.base)).status).toBe(200); // B has it cached now

    const patched = await fetch(`${a.base}/api/media/${id}`, {
      method: 'PATCH',
      headers: { ...bearer(alice), 'content-type': 'application/json' },
      body: JSON.stringify({ filename: 'final.pdf', visibility: 'public' }),
    });
    expect(patched.status).toBe(200);
    await until(
      async () => ((await (await item(b.base)).json()) as { filename: string }).filename === 'final.pdf',
      1000,
      'B showing the new name',
    );
    expect((await fetch(`${b.base}/api/media/${id}/content`)).status).toBe(200); // public now, no token

    expect(
      (await fetch(`${a.base}/api/media/${id}`, { method: 'DELETE', headers: bearer(alice) })).status,
    ).toBe(204);
    await until(async () => (await item(b.base)).status === 404, 1000, 'B forgetting the item');
    expect((await fetch(`${b.base}/api/media/${id}/content`, { headers: bearer(alice) })).status).toBe(404);
  });

  it('completes a tus upload whose chunks alternate between the instances', async () => {
    const alice = await token('alice');
    const data = pdfOfSize(12 * MiB + 300 * 1024);
    const headers = (extra: Record<string, string> = {}) => ({
      ...bearer(alice),
      'tus-resumable': '1.0.0',
      ...extra,
    });
    const created = await fetch(`${a.base}${TUS}`, {
      method: 'POST',
      headers: headers({
        'upload-length': String(data.length),
        'upload-metadata': `filename ${Buffer.from('alternating.pdf').toString('base64')}`,
      }),
    });
    expect(created.status).toBe(201);
    const uploadPath = new URL(created.headers.get('location')!, a.base).pathname;
    const patch = (base: string, from: number, to: number) =>
      fetch(`${base}${uploadPath}`, {
        method: 'PATCH',
        headers: headers({
          'upload-offset': String(from),
          'content-type': 'application/offset+octet-stream',
        }),
        body: data.subarray(from, to),
      });
    const offset = async (base: string) =>
      (await fetch(`${base}${uploadPath}`, { method: 'HEAD', headers: headers() })).headers.get(
        'upload-offset',
      );

    const cuts = [0, 6 * MiB, 12 * MiB, data.length];
    const order = [b, a, b];
    let mediaId: string | null = null;
    for (let i = 0; i < order.length; i++) {
      const res = await patch(order[i]!.base, cuts[i]!, cuts[i + 1]!);
      expect(res.status, `chunk ${i + 1} on ${order[i]!.name}: ${await res.clone().text()}`).toBe(204);
      expect(res.headers.get('upload-offset')).toBe(String(cuts[i + 1]));
      // The other instance sees the same offset (there is none to see once the upload is complete).
      if (i < order.length - 1) expect(await offset((order[i] === a ? b : a).base)).toBe(String(cuts[i + 1]));
      mediaId = res.headers.get('media-id');
    }
    expect(mediaId).toEqual(expect.any(String));
    const stored = await content(a.base, alice, mediaId!);
    expect(sha256(stored.body)).toBe(sha256(data));
  });

  it('lets only one of two simultaneous PATCHes of one upload, on different instances, write', async () => {
    const alice = await token('alice');
    const data = pdfOfSize(6 * MiB);
    const headers = (extra: Record<string, string> = {}) => ({
      ...bearer(alice),
      'tus-resumable': '1.0.0',
      ...extra,
    });
    const created = await fetch(`${b.base}${TUS}`, {
      method: 'POST',
      headers: headers({ 'upload-length': String(data.length) }),
    });
    const uploadPath = new URL(created.headers.get('location')!, b.base).pathname;
    const results = await Promise.all(
      [a, b].map((instance) =>
        fetch(`${instance.base}${uploadPath}`, {
          method: 'PATCH',
          headers: headers({ 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }),
          body: data,
        }),
      ),
    );
    // The lock is handed over (tus): the later request asks the earlier one to let go, which
    // keeps what it received and answers 204 with its offset; the later one then goes on from
    // there if its offset still matches (it completes the upload) or gets 409. Never do both
    // write into the same bytes: at most one completes it, and what is stored is the file.
    const statuses = results.map((r) => r.status);
    expect(
      statuses.every((s) => [204, 409].includes(s)),
      `statuses ${statuses.join(', ')}`,
    ).toBe(true);
    const completed = results.map((r) => r.headers.get('media-id')).filter(Boolean);
    expect(completed.length, `statuses ${statuses.join(', ')}`).toBeLessThanOrEqual(1);
    let mediaId = completed[0] ?? null;
    if (!mediaId) {
      // The client resumes from the offset the server holds, as tus clients do.
      const head = await fetch(`${a.base}${uploadPath}`, { method: 'HEAD', headers: headers() });
      const offset = Number(head.headers.get('upload-offset'));
      expect(offset).toBeLessThan(data.length);
      const rest = await fetch(`${b.base}${uploadPath}`, {
        method: 'PATCH',
        headers: headers({
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        }),
        body: data.subarray(offset),
      });
      expect(rest.status).toBe(204);
      mediaId = rest.headers.get('media-id');
    }
    const stored = await content(a.base, alice, mediaId!);
    expect(sha256(stored.body)).toBe(sha256(data));
  });

  it('completes a tus-js-client upload through nginx, its requests spread over both instances', async () => {
    const alice = await token('alice');
    const data = pdfOfSize(16 * MiB + 12_345);
    const outcome = await tusUpload({
      endpoint: `${proxy!.base}${TUS}`,
      token: alice,
      data,
      chunkSize: 8 * MiB,
    });
    expect(outcome.methods).toEqual(['POST', 'PATCH', 'PATCH', 'PATCH']);
    const stored = await content(proxy!.base, alice, outcome.mediaId);
    expect(sha256(stored.body)).toBe(sha256(data));
    const uploadPath = new URL(outcome.url).pathname;
    const requests = (await accessLogLines()).filter(
      (l) => l.uri === uploadPath || (l.method === 'POST' && l.uri === TUS),
    );
    const patches = requests.filter((l) => l.uri === uploadPath);
    expect(patches.map((l) => l.status)).toEqual([204, 204, 204]);
    expect(new Set(patches.map((l) => l.upstream)).size).toBe(2);
  });

  it('refuses a logged-out session on the other instance within a second', async () => {
    const session = await login(a.base, 'erin');
    expect((await me(b.base, session.accessToken)).status).toBe(200); // B has it cached now
    const logout = await fetch(`${a.base}/api/auth/logout`, {
      method: 'POST',
      headers: bearer(session.accessToken),
    });
    expect(logout.status).toBe(204);
    await until(
      async () => (await me(b.base, session.accessToken)).status === 401,
      1000,
      'B refusing the token',
    );
    const refresh = await fetch(`${b.base}/api/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: session.refreshToken }),
    });
    expect(refresh.status).toBe(401);
  });

  it('refuses a revoked session on the other instance within a second, and keeps the others', async () => {
    const first = await login(b.base, 'erin');
    const second = await login(a.base, 'erin');
    const firstMe = await me(b.base, first.accessToken);
    expect(firstMe.status).toBe(200);
    const { session } = (await firstMe.json()) as { session: { id: string } };
    const revoke = await fetch(`${a.base}/api/auth/sessions/${session.id}`, {
      method: 'DELETE',
      headers: bearer(second.accessToken),
    });
    expect(revoke.status).toBe(204);
    await until(
      async () => (await me(b.base, first.accessToken)).status === 401,
      1000,
      'B refusing the session',
    );
    expect((await me(b.base, second.accessToken)).status).toBe(200);
  });

  it('refuses a removed user on every instance within a second', async () => {
    const onA = (await login(a.base, 'carol')).accessToken;
    const onB = (await login(b.base, 'carol')).accessToken;
    expect((await me(a.base, onB)).status).toBe(200);
    expect((await me(b.base, onA)).status).toBe(200);
    await cli(['users', 'remove', 'carol'], path.join(tmp, 'shared', 'users'), '');
    await until(
      async () =>
        (await Promise.all([me(a.base, onA), me(a.base, onB), me(b.base, onA), me(b.base, onB)])).every(
          (r) => r.status === 401,
        ),
      1000,
      'both instances refusing carol',
    );
  });

  it('counts failed logins across instances', async () => {
    const attempt = (base: string, password: string) =>
      fetch(`${base}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'bob', password }),
      });
    for (const base of [a.base, a.base, a.base, b.base, b.base]) {
      expect((await attempt(base, 'wrong password!')).status).toBe(401);
    }
    for (const base of [a.base, b.base]) {
      const locked = await attempt(base, PASSWORD); // the right password, too late
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    // Another user from the same address is not locked out.
    await login(b.base, 'dave');
  });

  it('shares the per-user request rate limit across instances', async () => {
    const dave = await token('dave');
    const hit = (base: string) => fetch(`${base}/api/users/me`, { headers: bearer(dave) });
    const statuses: number[] = [];
    for (let i = 0; i < RATE_LIMIT / 2; i++)
      statuses.push((await hit(a.base)).status, (await hit(b.base)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect((await hit(a.base)).status).toBe(429);
    expect((await hit(b.base)).status).toBe(429);
  });

  it('records the client address nginx saw, not one the client made up', async () => {
    const spoofed = '203.0.113.9';
    const viaNginx = await login(proxy!.base, 'alice', { 'x-forwarded-for': spoofed });
    const direct = await login(a.base, 'alice', { 'x-forwarded-for': spoofed }); // from a trusted proxy address
    const sessions = async (accessToken: string) =>
      (
        (await (await fetch(`${b.base}/api/auth/sessions`, { headers: bearer(accessToken) })).json()) as {
          items: { ip: string; current: boolean }[];
        }
      ).items.find((s) => s.current)?.ip;
    expect(await sessions(viaNginx.accessToken)).toBe('127.0.0.1');
    expect(await sessions(direct.accessToken)).toBe(spoofed);
  });
});

/**
 * deploy/nginx.conf with this test's instances as the upstream servers and its own listen port;
 * fails loudly if the template no longer has the lines it replaces.
 */
