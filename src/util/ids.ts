import crypto from 'node:crypto';

/** Ids of items, uploads, sessions and links: 128 bits from the CSPRNG, URL-safe (22 characters). */
export function newId(): string {
  return crypto.randomBytes(16).toString('base64url');
}
