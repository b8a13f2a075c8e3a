import crypto from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { AppError } from '../errors.ts';

export interface AccessClaims {
  username: string;
  sessionId: string;
  expiresAt: number;
}

const ISSUER = 'stowage';
const AUDIENCE = 'stowage-api';
const TOKEN_TYPE = 'at+jwt';
const TOKEN_USE = 'access';
const CLOCK_SKEW_S = 5;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Access tokens: EdDSA-signed JWTs carrying the session id. Verification pins the algorithm, issuer,
 * audience, header type and a token-use claim, so nothing but our own access tokens passes. Signature
 * checks cost most of a small request, so verified tokens are cached by their exact text until they
 * expire; the session behind a token is still checked on every request by the caller.
 */
export class AccessTokens {
  readonly #privateKey: crypto.KeyObject;
  readonly #publicKey: crypto.KeyObject;
  readonly #ttlSeconds: number;
  readonly #cache = new Map<string, AccessClaims>();
  readonly #cacheMax: number;

  constructor(privateKey: crypto.KeyObject, ttlSeconds: number, cacheMax = 10_000) {
    this.#privateKey = privateKey;
    this.#publicKey = crypto.createPublicKey(privateKey);
    this.#ttlSeconds = ttlSeconds;
    this.#cacheMax = cacheMax;
  }

  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  async issue(username: string, sessionId: string): Promise<string> {
    return new SignJWT({ sid: sessionId, token_use: TOKEN_USE })
      .setProtectedHeader({ alg: 'EdDSA', typ: TOKEN_TYPE })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(username)
      .setIssuedAt()
      .setJti(crypto.randomBytes(9).toString('base64url'))
      .setExpirationTime(`${this.#ttlSeconds}s`)
      .sign(this.#privateKey);
  }

  /** Returns the claims of a valid access token, or throws AppError UNAUTHENTICATED. */
  async verify(token: string): Promise<AccessClaims> {
    const now = Date.now();
    const cached = this.#cache.get(token);
    if (cached) {
      if (cached.expiresAt > now) return cached;
      this.#cache.delete(token);
    }
    if (token.length > 4096 || !JWT_SHAPE.test(token)) throw unauthenticated('malformed token');
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#publicKey, {
        algorithms: ['EdDSA'],
        issuer: ISSUER,
        audience: AUDIENCE,
        typ: TOKEN_TYPE,
        requiredClaims: ['sub', 'sid', 'exp', 'iat', 'token_use'],
        clockTolerance: CLOCK_SKEW_S,
      }));
    } catch (error) {
      const reason = error instanceof joseErrors.JWTExpired ? 'expired token' : 'invalid token';
      throw unauthenticated(reason, error);
    }
    const { sub, sid, exp, iat, token_use: use } = payload;
    if (use !== TOKEN_USE || typeof sid !== 'string' || typeof sub !== 'string' || exp === undefined) {
      throw unauthenticated('not an access token');
    }
    // jose does not reject tokens issued in the future; a token minted ahead of time is not ours.
    if (iat === undefined || iat > now / 1000 + CLOCK_SKEW_S) throw unauthenticated('token not yet valid');
    const claims: AccessClaims = { username: sub, sessionId: sid, expiresAt: exp * 1000 };
    if (this.#cache.size >= this.#cacheMax) this.#evict(now);
    this.#cache.set(token, claims);
    return claims;
  }

  #evict(now: number): void {
    for (const [token, claims] of this.#cache) {
      if (claims.expiresAt <= now) this.#cache.delete(token);
    }
    // Still full of live tokens: drop the oldest insertions (Map keeps insertion order).
    for (const token of this.#cache.keys()) {
      if (this.#cache.size < this.#cacheMax * 0.9) break;
      this.#cache.delete(token);
    }
  }
}

export function unauthenticated(message = 'Authentication is required.', cause?: unknown): AppError {
  return new AppError('UNAUTHENTICATED', capitalize(message), { cause });
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1) + (s.endsWith('.') ? '' : '.');
}

/** Refresh tokens are opaque 256-bit random strings; only their SHA-256 is stored. */
export function newRefreshToken(): { token: string; hash: string } {
  const token = crypto.randomBytes(32).toString('base64url');
  return { token, hash: hashRefreshToken(token) };
}

export function hashRefreshToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}
