import crypto from 'node:crypto';

/**
 * HMAC-signed opaque tokens (signed links, list cursors): `payload.signature`, both base64url.
 * Each use has its own purpose string mixed into the key, so a cursor can never pass as a link.
 */
export class Signer {
  readonly #key: Buffer;

  constructor(secret: Buffer, purpose: string) {
    this.#key = crypto.createHmac('sha256', secret).update(`stowage:${purpose}`).digest();
  }

  sign(payload: unknown): string {
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${body}.${this.#mac(body)}`;
  }

  /** The payload of an untampered token, or null. */
  verify(token: string): unknown {
    if (token.length > 2048) return null;
    const dot = token.indexOf('.');
    if (dot <= 0) return null;
    const body = token.slice(0, dot);
    // The MAC is compared as the exact text it was issued as: decoding first would accept other
    // spellings of it (base64url's unused trailing bits), i.e. tokens that were never issued.
    const given = Buffer.from(token.slice(dot + 1));
    const expected = Buffer.from(this.#mac(body));
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
    try {
      return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as unknown;
    } catch {
      return null;
    }
  }

  #mac(body: string): string {
    return crypto.createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}
