import crypto from 'node:crypto';
import type { Db } from '../db/database.ts';
import type { SessionsTable } from '../db/schema.ts';
import { hashRefreshToken, newRefreshToken, unauthenticated } from './tokens.ts';
import type { InvalidationBus } from '../util/invalidation-bus.ts';

export interface Session {
  id: string;
  username: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
  userAgent: string | null;
  ip: string | null;
}

export interface SessionOptions {
  refreshTtlSeconds: number;
  /** How long a looked-up session may be trusted without asking the database again. */
  cacheTtlMs: number;
  /** last_used_at is written at most this often per session, to keep requests read-only. */
  touchIntervalMs?: number;
}

interface CacheEntry {
  session: Session | null;
  at: number;
}

/**
 * Server-side sessions: what makes logout, refresh rotation with reuse detection, revocation and
 * removed-user cut-off real for stateless JWTs. Lookups are cached; a revocation clears this
 * instance's cache at once and is broadcast to the others through the bus.
 */
export class SessionService {
  readonly #db: Db;
  readonly #opts: Required<SessionOptions>;
  readonly #bus: InvalidationBus;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(db: Db, bus: InvalidationBus, opts: SessionOptions) {
    this.#db = db;
    this.#bus = bus;
    this.#opts = { touchIntervalMs: 60_000, ...opts };
    bus.subscribe((event) => {
      if (event.sessionIds) for (const id of event.sessionIds) this.#cache.delete(id);
      if (event.username) this.#dropUser(event.username);
    });
  }

  async create(username: string, userAgent: string | null, ip: string | null) {
    const now = Date.now();
    const session: Session = {
      id: crypto.randomBytes(16).toString('base64url'),
      username,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: now + this.#opts.refreshTtlSeconds * 1000,
      userAgent: userAgent?.slice(0, 512) ?? null,
      ip,
    };
    const refresh = newRefreshToken();
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .insertInto('sessions')
        .values({ ...toRow(session), revoked_at: null })
        .execute();
      await trx
        .insertInto('refresh_tokens')
        .values({ token_hash: refresh.hash, session_id: session.id, created_at: now, used_at: null })
        .execute();
    });
    return { session, refreshToken: refresh.token };
  }

  /**
   * Exchanges a refresh token for a new one. A token that was already used means it leaked (or a
   * client raced itself): the whole session is revoked, per the OAuth 2.0 security BCP.
   */
  async rotate(refreshToken: string) {
    const hash = hashRefreshToken(refreshToken);
    const now = Date.now();
    const next = newRefreshToken();
    const outcome = await this.#db.transaction().execute(async (trx) => {
      const token = await trx
        .selectFrom('refresh_tokens')
        .select(['session_id', 'used_at'])
        .where('token_hash', '=', hash)
        .executeTakeFirst();
      if (!token) return { kind: 'unknown' as const };
      const row = await trx
        .selectFrom('sessions')
        .selectAll()
        .where('id', '=', token.session_id)
        .executeTakeFirst();
      if (!row || row.revoked_at !== null || row.expires_at <= now) return { kind: 'dead' as const };
      const claimed = await trx
        .updateTable('refresh_tokens')
        .set({ used_at: now })
        .where('token_hash', '=', hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (token.used_at !== null || claimed.numUpdatedRows !== 1n) {
        await trx.updateTable('sessions').set({ revoked_at: now }).where('id', '=', row.id).execute();
        return { kind: 'reused' as const, sessionId: row.id };
      }
      const expiresAt = now + this.#opts.refreshTtlSeconds * 1000;
      await trx
        .updateTable('sessions')
        .set({ last_used_at: now, expires_at: expiresAt })
        .where('id', '=', row.id)
        .execute();
      await trx
        .insertInto('refresh_tokens')
        .values({ token_hash: next.hash, session_id: row.id, created_at: now, used_at: null })
        .execute();
      return { kind: 'ok' as const, session: fromRow({ ...row, last_used_at: now, expires_at: expiresAt }) };
    });
    switch (outcome.kind) {
      case 'ok':
        this.#cache.delete(outcome.session.id);
        return { session: outcome.session, refreshToken: next.token };
      case 'reused':
        await this.#announce({ sessionIds: [outcome.sessionId] });
        throw unauthenticated('refresh token already used; the session has been ended');
      case 'dead':
      case 'unknown':
        throw unauthenticated('invalid refresh token');
    }
  }

  /** The live (not revoked, not expired) session with this id, or null. */
  async getLive(id: string): Promise<Session | null> {
    const now = Date.now();
    const hit = this.#cache.get(id);
    let session: Session | null;
    if (hit && now - hit.at < this.#opts.cacheTtlMs) {
      session = hit.session;
    } else {
      const row = await this.#db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
      session = row && row.revoked_at === null ? fromRow(row) : null;
      if (this.#cache.size > 50_000) this.#cache.clear();
      this.#cache.set(id, { session, at: now });
    }
    if (!session || session.expiresAt <= now) return null;
    if (now - session.lastUsedAt > this.#opts.touchIntervalMs) {
      session.lastUsedAt = now;
      await this.#db.updateTable('sessions').set({ last_used_at: now }).where('id', '=', id).execute();
    }
    return session;
  }

  async listLive(username: string): Promise<Session[]> {
    const rows = await this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', Date.now())
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map(fromRow);
  }

  /** Revokes one session of `username`; false when there is no such live session of theirs. */
  async revoke(username: string, id: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('sessions')
      .set({ revoked_at: Date.now() })
      .where('id', '=', id)
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    await this.#announce({ sessionIds: [id] });
    return result.numUpdatedRows > 0n;
  }

  async revokeAllForUser(username: string): Promise<void> {
    await this.#db
      .updateTable('sessions')
      .set({ revoked_at: Date.now() })
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .execute();
    await this.#announce({ username });
  }

  /** Deletes sessions and refresh tokens that ended long ago, keeping the tables small. */
  async purgeExpired(olderThanMs = 7 * 86_400_000, now = Date.now()): Promise<void> {
    const cutoff = now - olderThanMs;
    const dead = this.#db
      .selectFrom('sessions')
      .select('id')
      .where((eb) => eb.or([eb('expires_at', '<', cutoff), eb('revoked_at', '<', cutoff)]));
    await this.#db.deleteFrom('refresh_tokens').where('session_id', 'in', dead).execute();
    await this.#db
      .deleteFrom('sessions')
      .where((eb) => eb.or([eb('expires_at', '<', cutoff), eb('revoked_at', '<', cutoff)]))
      .execute();
  }

  async #announce(event: { sessionIds?: string[]; username?: string }): Promise<void> {
    for (const id of event.sessionIds ?? []) this.#cache.delete(id);
    if (event.username) this.#dropUser(event.username);
    await this.#bus.publish(event);
  }

  #dropUser(username: string): void {
    for (const [id, entry] of this.#cache) {
      if (!entry.session || entry.session.username === username) this.#cache.delete(id);
    }
  }
}

function toRow(s: Session): Omit<SessionsTable, 'revoked_at'> {
  return {
    id: s.id,
    username: s.username,
    created_at: s.createdAt,
    last_used_at: s.lastUsedAt,
    expires_at: s.expiresAt,
    user_agent: s.userAgent,
    ip: s.ip,
  };
}

function fromRow(r: SessionsTable): Session {
  return {
    id: r.id,
    username: r.username,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    expiresAt: r.expires_at,
    userAgent: r.user_agent,
    ip: r.ip,
  };
}
