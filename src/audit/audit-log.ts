import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import type { AuditLogTable, Database } from '../db/schema.ts';
import { validationFailed } from '../errors.ts';
import { newId } from '../util/ids.ts';
import { systemClock, type Clock } from '../util/clock.ts';

/** What the audit log records (the contract's list, exactly). */
export const AUDIT_ACTIONS = [
  'login',
  'login_failed',
  'logout',
  'refresh_reuse',
  'session_revoked',
  'upload',
  'upload_refused',
  'delete',
  'restore',
  'link_created',
  'link_revoked',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/**
 * One thing that happened. Never a secret: `target` names a thing by its id or a user by their
 * name (a link by its id, never its token; a login by the username, never the password).
 */
export interface AuditEntry {
  /** When it happened, ms since the epoch (the caller's clock). */
  at: number;
  /** Who did it (the username; for a login attempt the username given); null when unknown. */
  actor: string | null;
  action: AuditAction;
  /** What it was done to: a media id, a link id, a session id or a username. */
  target: string | null;
  ip: string | null;
  /** `ok`, or the error code the action ended with. */
  outcome: string;
}

export interface AuditRecord extends AuditEntry {
  id: string;
}

export interface AuditQuery {
  limit: number;
  cursor?: string;
  user?: string;
  action?: AuditAction;
}

/** Text fields are capped, so that a client cannot grow a row without bound (e.g. a long username). */
const FIELD_MAX = 256;

/**
 * Appends an entry through `db`, which may be the transaction of the change it records: then the
 * entry and the change commit together or not at all.
 */
export async function appendAudit(db: Db | Transaction<Database>, entry: AuditEntry): Promise<void> {
  await db.insertInto('audit_log').values(toRow(newId(), entry)).execute();
}

/**
 * The audit log: append-only (entries are never changed; only the retention sweep deletes them),
 * read newest first by administrators.
 */
export class AuditLog {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;

  constructor(db: Db, options: { clock?: Clock; logger?: Logger } = {}) {
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;
  }

  /** An entry stamped now, for a change that writes it in its own transaction. */
  entry(fields: Omit<AuditEntry, 'at'>): AuditEntry {
    return { at: this.#clock.now(), ...fields };
  }

  /**
   * Appends an entry for something that already happened outside a transaction of ours (a login,
   * a refused upload). Its failure is the caller's to handle: such actions are not undone.
   */
  append(fields: Omit<AuditEntry, 'at'>): Promise<void> {
    return appendAudit(this.#db, this.entry(fields));
  }

  /**
   * Appends an entry for something that has happened and stands whatever becomes of the entry (a
   * login, a refusal, a revocation): never throws; a failure is logged at error level, so the
   * action is neither undone nor answered differently (e.g. a failed login stays a 401, not a 500).
   */
  async record(fields: Omit<AuditEntry, 'at'>): Promise<void> {
    try {
      await this.append(fields);
    } catch (error) {
      this.#logger?.error(
        { err: error, action: fields.action, actor: fields.actor },
        'audit log: could not record an entry',
      );
    }
  }

  /** Entries newest first (by time, then id), filtered by actor and action, with a keyset cursor. */
  async list(query: AuditQuery): Promise<{ items: AuditRecord[]; nextCursor: string | null }> {
    let q = this.#db.selectFrom('audit_log').selectAll();
    if (query.user !== undefined) q = q.where('actor', '=', query.user);
    if (query.action !== undefined) q = q.where('action', '=', query.action);
    if (query.cursor !== undefined) {
      const after = decodeCursor(query.cursor);
      q = q.where((eb) => eb(eb.refTuple('at', 'id'), '<', eb.tuple(after.at, after.id)));
    }
    const rows = await q
      .orderBy('at', 'desc')
      .orderBy('id', 'desc')
      .limit(query.limit + 1)
      .execute();
    const items = rows.slice(0, query.limit).map(fromRow);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > query.limit && last ? encodeCursor(last) : null,
    };
  }

  /** Deletes the entries from before `cutoff`; returns how many. */
  async purgeBefore(cutoff: number): Promise<number> {
    const result = await this.#db.deleteFrom('audit_log').where('at', '<', cutoff).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

/**
 * The cursor names the last entry seen (its time and id). It is not signed: it is only read by
 * administrators and can only select entries they may see anyway; it is checked for its shape.
 */
function encodeCursor(last: AuditRecord): string {
  return Buffer.from(JSON.stringify([last.at, last.id])).toString('base64url');
}

function decodeCursor(cursor: string): { at: number; id: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    !Number.isSafeInteger(parsed[0]) ||
    typeof parsed[1] !== 'string'
  ) {
    throw validationFailed({ path: 'query.cursor', message: 'is not a cursor of this listing' });
  }
  return { at: parsed[0] as number, id: parsed[1] };
}

/**
 * Capped, and control characters replaced: a username given at a failed login is the client's
 * text, and a NUL would make PostgreSQL refuse the row (and lose the entry).
 */
function cap(value: string | null): string | null {
  // eslint-disable-next-line no-control-regex
  return value === null ? null : value.slice(0, FIELD_MAX).replace(/[\u0000-\u001f\u007f]/g, '\ufffd');
}

function toRow(id: string, e: AuditEntry): AuditLogTable {
  return {
    id,
    at: e.at,
    actor: cap(e.actor),
    action: e.action,
    target: cap(e.target),
    ip: cap(e.ip),
    outcome: cap(e.outcome) ?? 'ok',
  };
}

function fromRow(r: AuditLogTable): AuditRecord {
  return {
    id: r.id,
    at: Number(r.at),
    actor: r.actor,
    action: r.action as AuditAction,
    target: r.target,
    ip: r.ip,
    outcome: r.outcome,
  };
}
