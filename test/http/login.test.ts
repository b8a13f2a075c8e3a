import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORDS, type TestApp } from '../helpers/app.ts';
import { expectError, login } from './http-helpers.ts';

let t: TestApp;

afterEach(async () => {
  await t?.close();
});

async function start(env: Record<string, string> = {}): Promise<TestApp> {
  t = await createTestApp(env);
  return t;
}

function post(payload: string, contentType = 'application/json') {
  return t.app.inject({
    method: 'POST',
    url: '/api/auth/login',
    headers: { 'content-type': contentType },
    payload,
  });
}

const VARYING = new Set(['x-request-id', 'date']);

function comparable(res: Awaited<ReturnType<typeof login>>) {
  const headers = Object.fromEntries(Object.entries(res.headers).filter(([name]) => !VARYING.has(name)));
  return { status: res.statusCode, headers, body: res.rawPayload.toString('hex') };
}

describe('failed logins', () => {
  it('answers an unknown user and a wrong password identically', async () => {
    await start();
    const unknown = await login(t, 'mallory', PASSWORDS.alice, '10.0.0.1');
    const wrong = await login(t, 'alice', 'not-the-password', '10.0.0.2');
    expectError(unknown, 401, 'INVALID_CREDENTIALS');
    expect(comparable(unknown)).toEqual(comparable(wrong));
    // Neither is the Bearer challenge: that is for tokens, not credentials.
    expect(unknown.headers['www-authenticate']).toBeUndefined();
  });

  it('locks one username on one address after 5 failures, the right password included', async () => {
    await start();
    for (let i = 0; i < 5; i++)
      expectError(await login(t, 'alice', `wrong-${i}`), 401, 'INVALID_CREDENTIALS');
    const locked = await login(t, 'alice', PASSWORDS.alice);
    expectError(locked, 429, 'RATE_LIMITED');
    const retryAfter = Number(locked.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    expectError(await login(t, 'alice', 'wrong-again'), 429, 'RATE_LIMITED');
    // The username is matched case-insensitively, so changing case does not get around the lock.
    expectError(await login(t, 'ALICE', PASSWORDS.alice), 429, 'RATE_LIMITED');

    // Not locked: another user from the same address, the same user from another address.
    expect((await login(t, 'bob', PASSWORDS.bob)).statusCode).toBe(200);
    expect((await login(t, 'alice', PASSWORDS.alice, '192.0.2.7')).statusCode).toBe(200);
  });

  it('lets no more than 5 guesses through when they arrive all at once', async () => {
    await start();
    const guesses = await Promise.all(Array.from({ length: 20 }, (_, i) => login(t, 'alice', `guess-${i}`)));
    const statuses = guesses.map((res) => res.statusCode);
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
    expectError(await login(t, 'alice', PASSWORDS.alice), 429, 'RATE_LIMITED');
  });

  it('counts failures for unknown usernames too', async () => {
    await start();
    for (let i = 0; i < 5; i++)
      expectError(await login(t, 'ghost', 'whatever-pw'), 401, 'INVALID_CREDENTIALS');
    expectError(await login(t, 'ghost', 'whatever-pw'), 429, 'RATE_LIMITED');
  });

  it('does not lock after 4 failures, and a success starts the count again', async () => {
    await start();
    for (let i = 0; i < 4; i++) await login(t, 'alice', `wrong-${i}`);
    expect((await login(t, 'alice', PASSWORDS.alice)).statusCode).toBe(200);
    for (let i = 0; i < 4; i++)
      expectError(await login(t, 'alice', `wrong-${i}`), 401, 'INVALID_CREDENTIALS');
    expect((await login(t, 'alice', PASSWORDS.alice)).statusCode).toBe(200);
  });

  it('caps failures per address across usernames (STOWAGE_LOGIN_ADDRESS_LIMIT)', async () => {
    await start({ STOWAGE_LOGIN_ADDRESS_LIMIT: '3' });
    const sprayer = '198.51.100.9';
    for (const name of ['u1', 'u2', 'u3'])
      expectError(await login(t, name, 'password1', sprayer), 401, 'INVALID_CREDENTIALS');
    const res = await login(t, 'alice', PASSWORDS.alice, sprayer);
    expectError(res, 429, 'RATE_LIMITED');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect((await login(t, 'alice', PASSWORDS.alice, '198.51.100.10')).statusCode).toBe(200);
  });

  it('holds the address cap against parallel guesses across usernames', async () => {
    await start({ STOWAGE_LOGIN_ADDRESS_LIMIT: '3' });
    const sprayer = '198.51.100.11';
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(t, `sprayed${i}`, 'password1', sprayer)),
    );
    const statuses = answers.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(9);
  });

  it('does not count successful logins against the address cap', async () => {
    await start({ STOWAGE_LOGIN_ADDRESS_LIMIT: '3' });
    const office = '198.51.100.12';
    for (let i = 0; i < 5; i++)
      expect((await login(t, 'alice', PASSWORDS.alice, office)).statusCode).toBe(200);
    expectError(await login(t, 'nobody', 'password1', office), 401, 'INVALID_CREDENTIALS');
    expect((await login(t, 'bob', PASSWORDS.bob, office)).statusCode).toBe(200);
  });
});

describe('client addresses', () => {
  it('counts failures from one IPv6 /64 together, whichever of its addresses they come from', async () => {
    await start();
    // An attacker owns its whole /64: each guess from a fresh address of it.
    for (let i = 1; i <= 5; i++)
      expectError(await login(t, 'alice', `wrong-${i}`, `2001:db8::${i}`), 401, 'INVALID_CREDENTIALS');
    expectError(await login(t, 'alice', PASSWORDS.alice, '2001:db8::6'), 429, 'RATE_LIMITED');
    expectError(
      await login(t, 'alice', PASSWORDS.alice, '2001:db8:0:0:ffff:ffff:ffff:ffff'),
      429,
      'RATE_LIMITED',
    );
    // Another /64 is another client.
    expect((await login(t, 'alice', PASSWORDS.alice, '2001:db8:0:1::1')).statusCode).toBe(200);
  });

  it('caps spraying across usernames per IPv6 /64, not per address', async () => {
    await start({ STOWAGE_LOGIN_ADDRESS_LIMIT: '3' });
    for (let i = 1; i <= 3; i++)
      expectError(await login(t, `user${i}`, 'password1', `2001:db8:5:5::${i}`), 401, 'INVALID_CREDENTIALS');
    expectError(await login(t, 'alice', PASSWORDS.alice, '2001:db8:5:5::99'), 429, 'RATE_LIMITED');
    expect((await login(t, 'alice', PASSWORDS.alice, '2001:db8:5:6::1')).statusCode).toBe(200);
  });

  it('treats an IPv4-mapped IPv6 address as the IPv4 address', async () => {
    await start();
    for (let i = 0; i < 3; i++)
      expectError(await login(t, 'alice', `wrong-${i}`, '::ffff:192.0.2.44'), 401, 'INVALID_CREDENTIALS');
    for (let i = 3; i < 5; i++)
      expectError(await login(t, 'alice', `wrong-${i}`, '192.0.2.44'), 401, 'INVALID_CREDENTIALS');
    expectError(await login(t, 'alice', PASSWORDS.alice, '::ffff:192.0.2.44'), 429, 'RATE_LIMITED');
    expectError(await login(t, 'alice', PASSWORDS.alice, '192.0.2.44'), 429, 'RATE_LIMITED');
    expect((await login(t, 'alice', PASSWORDS.alice, '192.0.2.45')).statusCode).toBe(200);
  });
});

describe('malformed login bodies', () => {
  it('rejects missing fields and wrong types with VALIDATION_FAILED, without coercion', async () => {
    await start();
    const cases: [unknown, string][] = [
      [{ username: 'alice' }, 'body.password'],
      [{ password: PASSWORDS.alice }, 'body.username'],
      [{ username: 123, password: PASSWORDS.alice }, 'body.username'],
      [{ username: ['alice'], password: PASSWORDS.alice }, 'body.username'],
      [{ username: 'alice', password: 12345678 }, 'body.password'],
      [{ username: 'alice', password: null }, 'body.password'],
      [{ username: 'alice', password: true }, 'body.password'],
      [{ username: '', password: PASSWORDS.alice }, 'body.username'],
    ];
    for (const [body, path] of cases) {
      const res = await post(JSON.stringify(body));
      expectError(res, 400, 'VALIDATION_FAILED');
      const issues = res.json().error.details.issues as { path: string; message: string }[];
      expect(issues.map((i) => i.path)).toContain(path);
      for (const issue of issues) expect(typeof issue.message).toBe('string');
    }
    for (const body of ['[]', '"alice"', '42', 'null'])
      expectError(await post(body), 400, 'VALIDATION_FAILED');
  });

  it('rejects unknown fields instead of ignoring them', async () => {
    await start();
    const res = await post(JSON.stringify({ username: 'alice', password: PASSWORDS.alice, remember: true }));
    expectError(res, 400, 'VALIDATION_FAILED');
    expect(res.json().error.details.issues).toContainEqual({
      path: 'body.remember',
      message: expect.any(String),
    });
  });

  it('rejects prototype-pollution keys and pollutes nothing', async () => {
    await start();
    const good = `"username":"alice","password":"${PASSWORDS.alice}"`;
    const attacks = [
      `{${good},"__proto__":{"polluted":"yes","roles":["admin"]}}`,
      `{${good},"constructor":{"prototype":{"polluted":"yes"}}}`,
      `{"__proto__":{"username":"alice","password":"${PASSWORDS.alice}"}}`,
    ];
    for (const payload of attacks) {
      const res = await post(payload);
      const code = res.json<{ error: { code: string } }>().error.code;
      expect(['BAD_REQUEST', 'VALIDATION_FAILED']).toContain(code);
      expectError(res, 400, code);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('answers malformed JSON with BAD_REQUEST and does not echo the parser', async () => {
    await start();
    for (const payload of ['{"username":', '{username: "alice"}', "{'a':1}", '{"a":1}}', '']) {
      const res = await post(payload);
      expectError(res, 400, 'BAD_REQUEST');
      expect(res.body).not.toMatch(/Unexpected|position|JSON\.parse/i);
    }
  });

  it('answers a non-JSON content type with 415', async () => {
    await start();
    const form = `username=alice&password=${PASSWORDS.alice}`;
    expectError(
      await post(JSON.stringify({ username: 'alice' }), 'text/plain'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    expectError(await post(form, 'application/x-www-form-urlencoded'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await post('<a/>', 'application/xml'), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('answers a body over 64 KiB with 413, and takes one just under it to validation', async () => {
    await start();
    const over = JSON.stringify({ username: 'alice', password: 'x'.repeat(64 * 1024) });
    expectError(await post(over), 413, 'PAYLOAD_TOO_LARGE');
    // Under the byte limit but over the field's length limit: a validation error, not 413.
    const under = JSON.stringify({ username: 'alice', password: 'x'.repeat(60 * 1024) });
    expectError(await post(under), 400, 'VALIDATION_FAILED');
  });
});

describe('metrics', () => {
  it('counts login outcomes', async () => {
    await start();
    expect((await login(t, 'alice', PASSWORDS.alice)).statusCode).toBe(200);
    for (let i = 0; i < 5; i++) await login(t, 'bob', 'wrong-password');
    await login(t, 'bob', 'wrong-password');
    await login(t, 'bob', 'wrong-password');
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    const value = (outcome: string) =>
      Number(
        new RegExp(`^stowage_logins_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics.body)?.[1],
      );
    expect(value('success')).toBe(1);
    expect(value('failure')).toBe(5);
    expect(value('throttled')).toBe(2);
  });
});
