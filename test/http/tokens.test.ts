import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SignJWT, decodeJwt, type JWTHeaderParameters } from 'jose';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { expectUnauthenticated, me } from './http-helpers.ts';

/**
 * Access-token attacks: every token that is not one of our own live access tokens is refused with
 * 401 UNAUTHENTICATED and the Bearer challenge. Forged tokens are signed with the server's real
 * key (read from its key file), so only the attacked property differs from a good token; the first
 * test proves the forging itself produces tokens the server accepts.
 */

let t: TestApp;
let alice: { accessToken: string; refreshToken: string; sessionId: string };

beforeEach(async () => {
  t = await createTestApp();
  const tokens = await t.login('alice');
  const res = await me(t, tokens.accessToken);
  alice = { ...tokens, sessionId: res.json<{ session: { id: string } }>().session.id };
});

afterEach(async () => {
  await t.close();
});

const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function goodClaims(): Record<string, unknown> {
  return {
    iss: 'stowage',
    aud: 'stowage-api',
    sub: 'alice',
    sid: alice.sessionId,
    token_use: 'access',
    iat: now(),
    exp: now() + 600,
    jti: crypto.randomBytes(9).toString('base64url'),
  };
}

async function serverKey(): Promise<crypto.KeyObject> {
  return crypto.createPrivateKey(await fs.readFile(t.config.jwtKeyFile));
}

/** A JWT signed with `key` (the server's own by default), with claims and header overridden. */
async function forge(
  claims: Record<string, unknown> = {},
  header: Partial<JWTHeaderParameters> = {},
  key?: crypto.KeyObject | Uint8Array,
): Promise<string> {
  const payload = { ...goodClaims(), ...claims };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', ...header })
    .sign(key ?? (await serverKey()));
}

it('accepts a token forged with the server key and correct claims (the control for every case below)', async () => {
  const res = await me(t, await forge());
  expect(res.statusCode).toBe(200);
  expect(res.json()).toMatchObject({ username: 'alice', session: { id: alice.sessionId } });
});

describe('alg: none', () => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    it(`refuses an unsigned token with alg ${JSON.stringify(alg)}`, async () => {
      const unsigned = `${b64({ alg, typ: 'at+jwt' })}.${b64(goodClaims())}`;
      expectUnauthenticated(await me(t, `${unsigned}.`));
      // Some libraries accept any signature text once alg is none.
      expectUnauthenticated(await me(t, `${unsigned}.${crypto.randomBytes(64).toString('base64url')}`));
    });
  }
});

describe('algorithm confusion', () => {
  it('refuses a token re-signed with HS256 using the public key as the HMAC secret', async () => {
    const publicKey = crypto.createPublicKey(await serverKey());
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const der = publicKey.export({ type: 'spki', format: 'der' });
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    for (const secret of [Buffer.from(pem), der, raw]) {
      expectUnauthenticated(await me(t, await forge({}, { alg: 'HS256' }, secret)));
    }
  });

  it('refuses a token signed with another server key, also when that key is embedded in the header', async () => {
    const other = crypto.generateKeyPairSync('ed25519');
    expectUnauthenticated(await me(t, await forge({}, {}, other.privateKey)));
    const jwk = other.publicKey.export({ format: 'jwk' });
    expectUnauthenticated(
      await me(t, await forge({}, { jwk: { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x! } }, other.privateKey)),
    );
  });
});

describe('tampering', () => {
  it('refuses a real token whose claims were edited', async () => {
    const [header, , signature] = alice.accessToken.split('.');
    const claims = decodeJwt(alice.accessToken);
    for (const edit of [{ sub: 'root' }, { exp: now() + 86_400 * 365 }, { sid: 'x' }]) {
      expectUnauthenticated(await me(t, `${header}.${b64({ ...claims, ...edit })}.${signature}`));
    }
  });

  it('refuses a real token whose header or signature was edited', async () => {
    const [header, payload, signature] = alice.accessToken.split('.') as [string, string, string];
    const editedHeader = b64({ ...JSON.parse(Buffer.from(header, 'base64url').toString()), typ: 'JWT' });
    expectUnauthenticated(await me(t, `${editedHeader}.${payload}.${signature}`));
    // A character in the middle: the last one may only carry padding bits.
    const i = 20;
    const flipped = signature.slice(0, i) + (signature[i] === 'A' ? 'B' : 'A') + signature.slice(i + 1);
    expectUnauthenticated(await me(t, `${header}.${payload}.${flipped}`));
    expect((await me(t, alice.accessToken)).statusCode).toBe(200);
  });
});

describe('validity window', () => {
  it('refuses an expired token', async () => {
    expectUnauthenticated(await me(t, await forge({ iat: now() - 3600, exp: now() - 60 })));
  });

  it('refuses a token that is not valid yet (issued in the future, or nbf in the future)', async () => {
    expectUnauthenticated(await me(t, await forge({ iat: now() + 600, exp: now() + 1200 })));
    expectUnauthenticated(await me(t, await forge({ nbf: now() + 600 })));
  });

  it('refuses a token without exp or iat', async () => {
    expectUnauthenticated(await me(t, await forge({ exp: undefined })));
    expectUnauthenticated(await me(t, await forge({ iat: undefined })));
  });
});

describe('claims and header that must match exactly', () => {
  it('refuses a wrong issuer, audience or header type', async () => {
    expectUnauthenticated(await me(t, await forge({ iss: 'someone-else' })));
    expectUnauthenticated(await me(t, await forge({ iss: undefined })));
    expectUnauthenticated(await me(t, await forge({ aud: 'other-api' })));
    expectUnauthenticated(await me(t, await forge({ aud: undefined })));
    expectUnauthenticated(await me(t, await forge({}, { typ: 'JWT' })));
    expectUnauthenticated(await me(t, await forge({}, { typ: undefined })));
  });

  it('refuses a token whose token_use is not access', async () => {
    expectUnauthenticated(await me(t, await forge({ token_use: 'refresh' })));
    expectUnauthenticated(await me(t, await forge({ token_use: 'link' })));
    expectUnauthenticated(await me(t, await forge({ token_use: undefined })));
  });

  it('refuses a token without a sid, or with a sid of no session', async () => {
    expectUnauthenticated(await me(t, await forge({ sid: undefined })));
    expectUnauthenticated(await me(t, await forge({ sid: crypto.randomBytes(16).toString('base64url') })));
    expectUnauthenticated(await me(t, await forge({ sid: 42 })));
  });

  it("refuses a token that names one user but another user's session", async () => {
    const bob = await t.login('bob');
    const bobSession = (await me(t, bob.accessToken)).json<{ session: { id: string } }>().session.id;
    expectUnauthenticated(await me(t, await forge({ sub: 'alice', sid: bobSession })));
    expectUnauthenticated(await me(t, await forge({ sub: 'root', sid: bobSession })));
    // Bob's own session is unaffected.
    expect((await me(t, bob.accessToken)).json()).toMatchObject({ username: 'bob' });
  });
});

describe('tokens that are real but not usable', () => {
  it('refuses a refresh token presented as an access token', async () => {
    expectUnauthenticated(await me(t, alice.refreshToken));
  });

  it("refuses a revoked session's token", async () => {
    const logout = await t.app.inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: t.auth(alice.accessToken),
    });
    expect(logout.statusCode).toBe(204);
    expectUnauthenticated(await me(t, alice.accessToken));
    expectUnauthenticated(await me(t, await forge()));
  });

  it('refuses a validly signed token of a live session whose user is not in the users file', async () => {
    const { session } = await t.services.sessions.create('carol', null, null);
    const token = await t.services.tokens.issue('carol', session.id);
    expectUnauthenticated(await me(t, token));
    // The same path for a user in the file works, so it is the missing user that is refused.
    const control = await t.services.sessions.create('bob', null, null);
    expect((await me(t, await t.services.tokens.issue('bob', control.session.id))).statusCode).toBe(200);
  });
});

describe('malformed Authorization headers', () => {
  it('refuses a missing or empty header', async () => {
    expectUnauthenticated(await t.app.inject({ method: 'GET', url: '/api/auth/me' }));
    expectUnauthenticated(
      await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: '' } }),
    );
  });

  it('refuses other schemes and broken Bearer headers', async () => {
    const token = alice.accessToken;
    const headers = [
      'Bearer',
      'Bearer ',
      `Basic ${Buffer.from('alice:alice-password-1').toString('base64')}`,
      `Token ${token}`,
      token,
      `Bearer ${token} extra`,
      `Bearer ${token},Bearer ${token}`,
      `Bearer"${token}"`,
      'Bearer a.b',
      'Bearer a.b.c.d',
      'Bearer ...',
      `Bearer ${token.slice(0, -10)}`,
      `Bearer ${'a'.repeat(3000)}.${'b'.repeat(3000)}.${'c'.repeat(100)}`,
    ];
    for (const authorization of headers) {
      const res = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } });
      expectUnauthenticated(res);
    }
    // The scheme is case-insensitive (RFC 9110 §11.1), so this is not malformed.
    const lower = await t.app.inject({
      method: 'GET',
      url: '/api/auth/me',
      headers: { authorization: `bearer ${token}` },
    });
    expect(lower.statusCode).toBe(200);
  });
});
