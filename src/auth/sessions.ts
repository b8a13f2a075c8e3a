import crypto from 'node:crypto';
import type { Db } from '../db/database.ts';
import type { SessionsTable } from '../db/schema.ts';
import { hashRefreshToken, newRefreshToken, unauthenticated } from './tokens.ts';
import type { InvalidationBus } from '../util/invalidation-bus.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { ACCESS_CACHE_TTL_MS, TtlCache } from '../util/ttl-cache.ts';
import type { AuditLog } from '../audit/audit-log.ts';

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
  /**
   * How long a looked-up session may be trusted without asking the database again; capped at
   * ACCESS_CACHE_TTL_MS, which bounds how late a revocation on another instance can take effect
   * here when its invalidation message is lost.
   */
  cacheTtlMs: number;
  /** last_used_at is written at most this often per session, to keep requests read-only. */
  touchIntervalMs?: number;
  /** Longest a session lives from its login, however often it is refreshed (default: no limit). */
  maxAgeSeconds?: number;
  /** Live sessions per user; a new login past it ends the least recently used (default: no limit). */
  perUserLimit?: number;
  /** The time source of session expiry, limits and the lookup cache. */
  clock?: Clock;
  /** Records a reused refresh token (the session it ended). */
  audit?: AuditLog;
}

/**
 * Server-side sessions: what makes logout, refresh rotation with reuse detection, revocation and
 * removed-user cut-off real for stateless JWTs. Lookups are cached for at most a second; a
 * revocation clears this instance's cache at once and is broadcast to the others through the bus,
 * and where a broadcast is lost the cache's lifetime still ends it there within a second.
 */
export class SessionService {
  readonly #db: Db;
  readonly #opts: Required<Omit<SessionOptions, 'audit'>>;
  readonly #audit: AuditLog | undefined;
  readonly #bus: InvalidationBus;
  readonly #cache: TtlCache<string, Session | null>;

  constructor(db: Db, bus: InvalidationBus, opts: SessionOptions) {
    this.#db = db;
    this.#bus = bus;
    this.#audit = opts.audit;
    this.#opts = {
      touchIntervalMs: 60_000,
      maxAgeSeconds: Number.POSITIVE_INFINITY,
      perUserLimit: Number.POSITIVE_INFINITY,
      clock: systemClock,
      ...opts,
    };
    this.#cache = new TtlCache({
      ttlMs: Math.min(opts.cacheTtlMs, ACCESS_CACHE_TTL_MS),
      maxEntries: 50_000,
      clock: this.#opts.clock,
    });
    bus.subscribe((event) => {
      if (event.sessionIds) for (const id of event.sessionIds) this.#cache.delete(id);
      if (event.username) this.#dropUser(event.username);
    });
  }

  /**
   * A new session for a login. Past the per-user limit, the user's least recently used sessions
   * end (never the new one): a client that logs in again and again, or stolen credentials used
   * in a loop, cannot grow the table without bound, and the user's active devices stay logged in.
   */
  async create(username: string, userAgent: string | null, ip: string | null) {
    const now = this.#opts.clock.now();
    const session: Session = {
      id: crypto.randomBytes(16).toString('base64url'),
      username,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: this.#expiry(now, now),
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
    // After the commit, so that of concurrent logins the last to commit sees every other one.
    const evicted = await this.#evictBeyondLimit(username, session.id);
    if (evicted.length > 0) await this.#announce({ sessionIds: evicted });
    return { session, refreshToken: refresh.token };
  }

  /**
   * When a session created at `createdAt` and refreshed at `now` expires: a refresh TTL after its
   * last refresh, but never later than the maximum age after its login (else a client refreshing
   * in time would keep one stolen refresh token alive for ever).
   */
  #expiry(createdAt: number, now: number): number {
    return Math.min(now + this.#opts.refreshTtlSeconds * 1000, createdAt + this.#opts.maxAgeSeconds * 1000);
  }

  #isLive(session: { createdAt: number; expiresAt: number }, now: number): boolean {
    // Rows written before a max age was configured (or lowered) carry a later expires_at.
    return session.expiresAt > now && now - session.createdAt < this.#opts.maxAgeSeconds * 1000;
  }

  /**
   * Ends the user's live sessions past the limit, least recently used first (last_used_at is
   * written at most every touchIntervalMs, so "recently" is to within that), keeping `keep`.
   * Returns the ended ids.
   */
  async #evictBeyondLimit(username: string, keep: string): Promise<string[]> {
    if (!Number.isFinite(this.#opts.perUserLimit)) return [];
    const now = this.#opts.clock.now();
    const others = await this.#db
      .selectFrom('sessions')
      .select(['id', 'created_at', 'expires_at'])
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now)
      .where('id', '!=', keep)
      .orderBy('last_used_at', 'desc')
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
    const live = others.filter((r) =>
      this.#isLive({ createdAt: r.created_at, expiresAt: r.expires_at }, now),
    );
    const evicted = live.slice(Math.max(0, this.#opts.perUserLimit - 1)).map((r) => r.id);
    // In slices, to stay within the databases' limits on bound parameters.
    for (let i = 0; i < evicted.length; i += 500) {
      await this.#db
        .updateTable('sessions')
        .set({ revoked_at: now })
        .where('id', 'in', evicted.slice(i, i + 500))
        .where('revoked_at', 'is', null)
        .execute();
    }
    return evicted;
  }

  /**
   * Exchanges a refresh token for a new one. A token that was already used means it leaked (or a
   * client raced itself): the whole session is revoked, per the OAuth 2.0 security BCP.
   */
  async rotate(refreshToken: string, ip: string | null = null) {
    const hash = hashRefreshToken(refreshToken);
    const now = this.#opts.clock.now();
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
      if (
        !row ||
        row.revoked_at !== null ||
        !this.#isLive({ createdAt: row.created_at, expiresAt: row.expires_at }, now)
      ) {
        return { kind: 'dead' as const };
      }
      const claimed = await trx
        .updateTable('refresh_tokens')
        .set({ used_at: now })
        .where('token_hash', '=', hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (token.used_at !== null || claimed.numUpdatedRows !== 1n) {
        await trx.updateTable('sessions').set({ revoked_at: now }).where('id', '=', row.id).execute();
        return { kind: 'reused' as const, sessionId: row.id, username: row.username };
      }
      const expiresAt = this.#expiry(row.created_at, now);
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
        // The target is the session (its id), never the token that was presented.
        await this.#audit?.record({
          actor: outcome.username,
          action: 'refresh_reuse',
          target: outcome.sessionId,
          ip,
          outcome: 'UNAUTHENTICATED',
        });
        throw unauthenticated('refresh token already used; the session has been ended');
      case 'dead':
      case 'unknown':
        throw unauthenticated('invalid refresh token');
    }
  }

  /** The live (not revoked, not expired) session with this id, or null. */
  async getLive(id: string): Promise<Session | null> {
    const now = this.#opts.clock.now();
    const session = await this.#cache.get(id, async () => {
      const row = await this.#db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
      return row && row.revoked_at === null ? fromRow(row) : null;
    });
    if (!session || !this.#isLive(session, now)) return null;
    if (now - session.lastUsedAt > this.#opts.touchIntervalMs) {
      session.lastUsedAt = now;
      await this.#db.updateTable('sessions').set({ last_used_at: now }).where('id', '=', id).execute();
    }
    return session;
  }

  /** How many live sessions each of these users holds (absent: none). */
  async countLive(usernames: readonly string[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (usernames.length === 0) return counts;
    const now = this.#opts.clock.now();
    const maxAgeMs = this.#opts.maxAgeSeconds * 1000;
    // In slices, to stay within the databases' limits on bound parameters.
    for (let i = 0; i < usernames.length; i += 1000) {
      let q = this.#db
        .selectFrom('sessions')
        .select((eb) => ['username', eb.fn.countAll<number>().as('n')])
        .where('username', 'in', usernames.slice(i, i + 1000))
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', now);
      // The same rule as #isLive: rows from before a (lower) max age was configured end by it too.
      if (Number.isFinite(maxAgeMs)) q = q.where('created_at', '>', now - maxAgeMs);
      for (const row of await q.groupBy('username').execute()) counts.set(row.username, Number(row.n));
    }
    return counts;
  }

  async listLive(username: string): Promise<Session[]> {
    const now = this.#opts.clock.now();
    const rows = await this.#db
      .selectFrom('sessions')
      .selectAll()
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now)
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map(fromRow).filter((s) => this.#isLive(s, now));
  }

  /** Revokes one session of `username`; false when there is no such live session of theirs. */
  async revoke(username: string, id: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('sessions')
      .set({ revoked_at: this.#opts.clock.now() })
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
      .set({ revoked_at: this.#opts.clock.now() })
      .where('username', '=', username)
      .where('revoked_at', 'is', null)
      .execute();
    await this.#announce({ username });
  }

  /** Deletes sessions and refresh tokens that ended long ago, keeping the tables small. */
  async purgeExpired(olderThanMs = 7 * 86_400_000, now = this.#opts.clock.now()): Promise<void> {
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
    this.#cache.deleteWhere((session) => !session || session.username === username);
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
