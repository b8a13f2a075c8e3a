import { sql, type Transaction } from 'kysely';
import type { Db } from '../db/database.ts';
import type { Database, LinksTable, MediaTable } from '../db/schema.ts';
import { AppError } from '../errors.ts';
import { appendAudit, type AuditEntry } from '../audit/audit-log.ts';
import type { MediaKind } from './media-kind.ts';
import type { MediaInfo } from '../video/video-tools.ts';
import type { CameraData } from '../images/camera-data.ts';
import type { ItemMetadata } from './media-metadata.ts';

export type Visibility = 'private' | 'public';

export interface MediaRecord {
  id: string;
  owner: string;
  filename: string;
  mimeType: string;
  kind: MediaKind;
  size: number;
  sha256: string;
  visibility: Visibility;
  tags: string[];
  width: number | null;
  height: number | null;
  createdAt: number;
  updatedAt: number;
  takenAt: number | null;
  placeholder: string | null;
  media: MediaInfo | null;
  exif: CameraData | null;
  metadataVersion: number;
}

/** An item in the trash: when it was moved there. */
export interface TrashedRecord extends MediaRecord {
  deletedAt: number;
}

/** A signed link's record (its token is derived from the id, never stored). */
export interface LinkRecord {
  id: string;
  mediaId: string;
  createdAt: number;
  expiresAt: number;
}

export const SORTS = {
  '-createdAt': { column: 'created_at', desc: true },
  createdAt: { column: 'created_at', desc: false },
  filename: { column: 'filename', desc: false },
  '-filename': { column: 'filename', desc: true },
  size: { column: 'size', desc: false },
  '-size': { column: 'size', desc: true },
  // Items without takenAt come after those with one in both orders (see list()).
  takenAt: { column: 'taken_at', desc: false },
  '-takenAt': { column: 'taken_at', desc: true },
} as const;
export type SortKey = keyof typeof SORTS;

/** Digests per lookup query. */
const LOOKUP_CHUNK = 1000;

export interface ListQuery {
  owner: string;
  limit: number;
  sort: SortKey;
  /** The sort value and id of the last item of the previous page (null: an item without takenAt). */
  after?: { value: string | number | null; id: string };
  kind?: MediaKind;
  tag?: string;
  q?: string;
}

/**
 * The media table, the per-user usage that must change with it in the same transaction, and the
 * items' signed links. An item in the trash (deleted_at set) keeps its row and its usage but is
 * absent from every read here except those named for the trash (getTrashed, listTrash), and from
 * update(); `existing()` still counts it, so the sweeper never takes its blob for an orphan.
 * Changes that the audit log records take the entry and write it in their own transaction.
 */
export class MediaRepo {
  readonly #db: Db;
  readonly #dialect: 'sqlite' | 'postgres';

  constructor(db: Db, dialect: 'sqlite' | 'postgres') {
    this.#db = db;
    this.#dialect = dialect;
  }

  /**
   * Inserts the item if the owner's quota (stored bytes plus live reservations of other uploads)
   * still has room; the usage row is locked first, so concurrent uploads of one user are checked
   * one after the other and cannot together pass the quota.
   */
  async insert(
    record: MediaRecord,
    quota: number | null,
    reservations?: Reservations,
    audit?: AuditEntry,
  ): Promise<void> {
    const reservationIds = idsOf(reservations);
    await this.#db.transaction().execute(async (trx) => {
      const used = await lockUsage(trx, record.owner, reservationIds);
      if (quota !== null && used + record.size > quota) {
        throw new AppError('QUOTA_EXCEEDED', undefined, { details: { quotaBytes: quota, usedBytes: used } });
      }
      await trx.insertInto('media').values(toRow(record)).execute();
      if (record.tags.length > 0) {
        await trx
          .insertInto('media_tags')
          .values(record.tags.map((tag) => ({ media_id: record.id, owner: record.owner, tag })))
          .execute();
      }
      await trx
        .updateTable('usage')
        .set((eb) => ({ bytes: eb('bytes', '+', record.size), files: eb('files', '+', 1) }))
        .where('username', '=', record.owner)
        .execute();
      // The item replaces the reservations it was uploaded under (one tus upload, or the partials
      // of a concatenated one) in the same transaction: the bytes never count twice, or not at all.
      if (reservationIds.length > 0)
        await trx.deleteFrom('reservations').where('id', 'in', reservationIds).execute();
      if (audit) await appendAudit(trx, audit);
    });
  }

  /** Holds `bytes` of the user's quota for an upload in progress until it completes or expires. */
  async reserve(
    id: string,
    username: string,
    bytes: number,
    expiresAt: number,
    quota: number | null,
  ): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      const used = await lockUsage(trx, username, [id]);
      if (quota !== null && used + bytes > quota) {
        throw new AppError('QUOTA_EXCEEDED', undefined, { details: { quotaBytes: quota, usedBytes: used } });
      }
      await trx
        .insertInto('reservations')
        .values({ id, username, bytes, expires_at: expiresAt, completing_at: null })
        .onConflict((oc) => oc.column('id').doUpdateSet({ bytes, expires_at: expiresAt }))
        .execute();
    });
  }

  /** Who holds a live reservation (tus uploads use it as their owner record). */
  async reservationOwner(id: string): Promise<string | undefined> {
    const row = await this.#db
      .selectFrom('reservations')
      .select('username')
      .where('id', '=', id)
      .where('expires_at', '>', Date.now())
      .executeTakeFirst();
    return row?.username;
  }

  /**
   * Claims the right to store a finished upload: true for exactly one caller, whichever instance
   * it runs on. A claim older than `staleMs` (its holder crashed) may be taken again.
   */
  async claimCompletion(id: string, staleMs = 3_600_000): Promise<boolean> {
    const now = Date.now();
    const result = await this.#db
      .updateTable('reservations')
      .set({ completing_at: now })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('completing_at', 'is', null), eb('completing_at', '<', now - staleMs)]))
      .executeTakeFirst();
    return result.numUpdatedRows === 1n;
  }

  async release(reservationId: string): Promise<void> {
    await this.#db.deleteFrom('reservations').where('id', '=', reservationId).execute();
  }

  async purgeExpiredReservations(now = Date.now()): Promise<void> {
    await this.#db.deleteFrom('reservations').where('expires_at', '<=', now).execute();
  }

  /** What the user has stored (GET /api/users/me). */
  async usage(username: string): Promise<{ files: number; bytes: number }> {
    const row = await this.#db
      .selectFrom('usage')
      .select(['files', 'bytes'])
      .where('username', '=', username)
      .executeTakeFirst();
    return { files: Number(row?.files ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  /** What each of these users has stored (GET /api/admin/users); absent: nothing. */
  async usageOfUsers(usernames: readonly string[]): Promise<Map<string, { files: number; bytes: number }>> {
    const usage = new Map<string, { files: number; bytes: number }>();
    // In slices, to stay within the databases' limits on bound parameters.
    for (let i = 0; i < usernames.length; i += 1000) {
      const rows = await this.#db
        .selectFrom('usage')
        .select(['username', 'files', 'bytes'])
        .where('username', 'in', usernames.slice(i, i + 1000))
        .execute();
      for (const r of rows) usage.set(r.username, { files: Number(r.files), bytes: Number(r.bytes) });
    }
    return usage;
  }

  /** Stored bytes plus live reservations, for the early (advisory) quota check while streaming. */
  async usedBytes(username: string, excludeReservations?: Reservations): Promise<number> {
    const stored = await this.#db
      .selectFrom('usage')
      .select('bytes')
      .where('username', '=', username)
      .executeTakeFirst();
    return Number(stored?.bytes ?? 0) + (await reservedBytes(this.#db, username, idsOf(excludeReservations)));
  }

  /** The item, unless it is in the trash. */
  async get(id: string): Promise<MediaRecord | undefined> {
    const row = await this.#db
      .selectFrom('media')
      .selectAll()
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return row && fromRow(row);
  }

  /** The item if it is in the trash. */
  async getTrashed(id: string): Promise<TrashedRecord | undefined> {
    const row = await this.#db
      .selectFrom('media')
      .selectAll()
      .where('id', '=', id)
      .where('deleted_at', 'is not', null)
      .executeTakeFirst();
    return row && trashedFromRow(row);
  }

  /** A user's trashed items, most recently trashed first (then by id), after the cursor. */
  async listTrash(
    owner: string,
    limit: number,
    after?: { deletedAt: number; id: string },
  ): Promise<TrashedRecord[]> {
    let q = this.#db
      .selectFrom('media')
      .selectAll()
      .where('owner', '=', owner)
      .where('deleted_at', 'is not', null);
    if (after) {
      q = q.where((eb) => eb(eb.refTuple('deleted_at', 'id'), '<', eb.tuple(after.deletedAt, after.id)));
    }
    const rows = await q.orderBy('deleted_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(trashedFromRow);
  }

  /**
   * Moves the item to the trash: it keeps its row, blob and usage, and its links end (their rows
   * go, in the same transaction). Returns the item, or undefined when it was not live.
   */
  async trash(id: string, at: number, audit?: AuditEntry): Promise<MediaRecord | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('media')
        .set({ deleted_at: at })
        .where('id', '=', id)
        .where('deleted_at', 'is', null)
        .returningAll()
        .executeTakeFirst();
      if (!row) return undefined;
      await trx.deleteFrom('links').where('media_id', '=', id).execute();
      if (audit) await appendAudit(trx, audit);
      return fromRow(row);
    });
  }

  /** Takes the item out of the trash as it was; undefined when it was not in the trash. */
  async restore(id: string, audit?: AuditEntry): Promise<MediaRecord | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('media')
        .set({ deleted_at: null })
        .where('id', '=', id)
        .where('deleted_at', 'is not', null)
        .returningAll()
        .executeTakeFirst();
      if (!row) return undefined;
      if (audit) await appendAudit(trx, audit);
      return fromRow(row);
    });
  }

  /** Ids of items trashed before `cutoff`, oldest first, at most `limit`. */
  async trashedBefore(cutoff: number, limit: number): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('media')
      .select('id')
      .where('deleted_at', 'is not', null)
      .where('deleted_at', '<', cutoff)
      .orderBy('deleted_at')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  async list(query: ListQuery): Promise<MediaRecord[]> {
    const { column, desc } = SORTS[query.sort];
    let q = this.#db
      .selectFrom('media')
      .selectAll()
      .where('owner', '=', query.owner)
      .where('deleted_at', 'is', null);
    if (query.kind) q = q.where('kind', '=', query.kind);
    if (query.tag) {
      const tagged = this.#db
        .selectFrom('media_tags')
        .select('media_id')
        .where('owner', '=', query.owner)
        .where('tag', '=', query.tag);
      q = q.where('id', 'in', tagged);
    }
    if (query.q) {
      const needle = query.q.normalize('NFC');
      if (this.#dialect === 'sqlite') {
        q = q.where(sql<boolean>`filename glob ${caseInsensitiveGlob(needle)}`);
      } else {
        const pattern = `%${needle.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        q = q.where(sql<boolean>`lower(filename) like ${pattern} escape '\\'`);
      }
    }
    const order = desc ? 'desc' : 'asc';
    if (column === 'taken_at') {
      // Nulls last in either order, spelt out: the two dialects place them differently by default.
      // The keyset walks the non-null section (value, id), then the null section by id alone.
      if (query.after) {
        const { value, id } = query.after;
        const beyond = desc ? '<' : '>';
        q = q.where((eb) =>
          value === null
            ? eb.and([eb('taken_at', 'is', null), eb('id', beyond, id)])
            : eb.or([
                eb(eb.refTuple('taken_at', 'id'), beyond, eb.tuple(Number(value), id)),
                eb('taken_at', 'is', null),
              ]),
        );
      }
      const rows = await q
        .orderBy(sql`case when taken_at is null then 1 else 0 end`)
        .orderBy('taken_at', order)
        .orderBy('id', order)
        .limit(query.limit)
        .execute();
      return rows.map(fromRow);
    }
    if (query.after) {
      const { value, id } = query.after;
      if (value === null) throw new Error('a null cursor value for a non-null column');
      q = q.where((eb) => eb(eb.refTuple(column, 'id'), desc ? '<' : '>', eb.tuple(value, id)));
    }
    const rows = await q.orderBy(column, order).orderBy('id', order).limit(query.limit).execute();
    return rows.map(fromRow);
  }

  async update(
    id: string,
    patch: { filename?: string; visibility?: Visibility; tags?: string[] },
  ): Promise<MediaRecord | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const now = Date.now();
      const { tags, ...columns } = patch;
      const updated = await trx
        .updateTable('media')
        .set({ ...columns, ...(tags ? { tags: JSON.stringify(tags) } : {}), updated_at: now })
        .where('id', '=', id)
        .where('deleted_at', 'is', null)
        .returningAll()
        .executeTakeFirst();
      if (!updated) return undefined;
      if (tags) {
        await trx.deleteFrom('media_tags').where('media_id', '=', id).execute();
        if (tags.length > 0) {
          await trx
            .insertInto('media_tags')
            .values(tags.map((tag) => ({ media_id: id, owner: updated.owner, tag })))
            .execute();
        }
      }
      return fromRow(updated);
    });
  }

  /**
   * Deletes the row (in the trash or not) and gives back its bytes; returns what was deleted.
   * `onlyTrashedBefore`: only if it is (still) in the trash since before then (the purge, which
   * must not take an item restored meanwhile).
   */
  async delete(id: string, audit?: AuditEntry, onlyTrashedBefore?: number): Promise<MediaRecord | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      let q = trx.deleteFrom('media').where('id', '=', id);
      if (onlyTrashedBefore !== undefined) {
        q = q.where('deleted_at', 'is not', null).where('deleted_at', '<', onlyTrashedBefore);
      }
      const row = await q.returningAll().executeTakeFirst();
      if (!row) return undefined;
      await trx.deleteFrom('media_tags').where('media_id', '=', id).execute();
      await trx.deleteFrom('links').where('media_id', '=', id).execute();
      // Its renditions' blobs go with the item (MediaService.delete): they no longer count.
      await trx.deleteFrom('renditions').where('media_id', '=', id).execute();
      await trx
        .updateTable('usage')
        .set((eb) => ({ bytes: eb('bytes', '-', row.size), files: eb('files', '-', 1) }))
        .where('username', '=', row.owner)
        .execute();
      if (audit) await appendAudit(trx, audit);
      return fromRow(row);
    });
  }

  async insertLink(link: LinkRecord, audit?: AuditEntry): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .insertInto('links')
        .values({
          id: link.id,
          media_id: link.mediaId,
          created_at: link.createdAt,
          expires_at: link.expiresAt,
        })
        .execute();
      if (audit) await appendAudit(trx, audit);
    });
  }

  /** The link with this id, expired or not (the caller checks the time). */
  async getLink(id: string): Promise<LinkRecord | undefined> {
    const row = await this.#db.selectFrom('links').selectAll().where('id', '=', id).executeTakeFirst();
    return row && linkFromRow(row);
  }

  /** The item's links that have not expired by `now`, newest first. */
  async listLinks(mediaId: string, now: number): Promise<LinkRecord[]> {
    const rows = await this.#db
      .selectFrom('links')
      .selectAll()
      .where('media_id', '=', mediaId)
      .where('expires_at', '>', now)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return rows.map(linkFromRow);
  }

  /** Deletes one of the item's links; true when it was still live at `now`. */
  async deleteLink(mediaId: string, linkId: string, now: number, audit?: AuditEntry): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const row = await trx
        .deleteFrom('links')
        .where('id', '=', linkId)
        .where('media_id', '=', mediaId)
        .returning('expires_at')
        .executeTakeFirst();
      const live = row !== undefined && Number(row.expires_at) > now;
      if (live && audit) await appendAudit(trx, audit);
      return live;
    });
  }

  /** Deletes links that expired by `now` (they are refused anyway); returns how many. */
  async deleteExpiredLinks(now: number): Promise<number> {
    const result = await this.#db.deleteFrom('links').where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /**
   * For each of these SHA-256 digests that `owner` has an item for, the id of the newest such item
   * (by creation, then id). One indexed query per 1000 digests (media_owner_sha256), well inside
   * both dialects' limits on bound parameters.
   */
  async newestBySha256(owner: string, digests: readonly string[]): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    const unique = [...new Set(digests)];
    for (let i = 0; i < unique.length; i += LOOKUP_CHUNK) {
      const ranked = this.#db
        .selectFrom('media')
        .select((eb) => [
          'sha256',
          'id',
          eb.fn
            .agg<number>('row_number')
            .over((ob) => ob.partitionBy('sha256').orderBy('created_at', 'desc').orderBy('id', 'desc'))
            .as('rank'),
        ])
        .where('owner', '=', owner)
        .where('deleted_at', 'is', null)
        .where('sha256', 'in', unique.slice(i, i + LOOKUP_CHUNK));
      const rows = await this.#db
        .selectFrom(ranked.as('ranked'))
        .select(['sha256', 'id'])
        .where('rank', '=', 1)
        .execute();
      for (const row of rows) found.set(row.sha256, row.id);
    }
    return found;
  }

  /**
   * Up to `limit` items whose metadata is older than `version`, in id order after `afterId`, of
   * these kinds: the backfill's next batch.
   */
  async metadataPending(
    version: number,
    kinds: readonly MediaKind[],
    afterId: string,
    limit: number,
  ): Promise<MediaRecord[]> {
    if (kinds.length === 0) return [];
    const rows = await this.#db
      .selectFrom('media')
      .selectAll()
      .where('metadata_version', '<', version)
      .where('kind', 'in', kinds)
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(fromRow);
  }

  /** Stores metadata read from the item's bytes; false when the item is gone. */
  async setMetadata(id: string, meta: ItemMetadata): Promise<boolean> {
    const result = await this.#db
      .updateTable('media')
      .set({ ...metadataColumns(meta), width: meta.width, height: meta.height })
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Which of these ids have a row, in the trash or not (used to find orphaned blobs). */
  async existing(ids: string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.#db.selectFrom('media').select('id').where('id', 'in', ids).execute();
    return new Set(rows.map((r) => r.id));
  }
}

/**
 * A GLOB pattern matching `needle` anywhere, in any letter case. SQLite's lower() and LIKE fold
 * ASCII letters only ("über" would not find "Über.pdf"), so every letter becomes a class of its
 * one-character case forms ("[üÜ]"), and GLOB's own wildcards are taken literally ("[*]").
 */
function caseInsensitiveGlob(needle: string): string {
  let pattern = '*';
  for (const ch of needle) {
    const forms = new Set([ch, ch.toLowerCase(), ch.toUpperCase()].filter((f) => Array.from(f).length === 1));
    pattern += forms.size > 1 || '*?['.includes(ch) ? `[${[...forms].join('')}]` : ch;
  }
  return `${pattern}*`;
}

async function lockUsage(
  trx: Transaction<Database>,
  username: string,
  excludeReservations: readonly string[],
): Promise<number> {
  await trx
    .insertInto('usage')
    .values({ username, bytes: 0, files: 0 })
    .onConflict((oc) => oc.column('username').doNothing())
    .execute();
  // A no-op update takes the row lock on PostgreSQL; SQLite serialises write transactions anyway.
  const row = await trx
    .updateTable('usage')
    .set((eb) => ({ bytes: eb.ref('bytes') }))
    .where('username', '=', username)
    .returning('bytes')
    .executeTakeFirstOrThrow();
  return Number(row.bytes) + (await reservedBytes(trx, username, excludeReservations));
}

async function reservedBytes(
  db: Db | Transaction<Database>,
  username: string,
  exclude: readonly string[],
): Promise<number> {
  let q = db
    .selectFrom('reservations')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.val(0)).as('total'))
    .where('username', '=', username)
    .where('expires_at', '>', Date.now());
  if (exclude.length > 0) q = q.where('id', 'not in', exclude);
  const row = await q.executeTakeFirst();
  return Number(row?.total ?? 0);
}

/** One reservation id or several (the partials of a concatenated tus upload). */
export type Reservations = string | readonly string[];

function idsOf(reservations: Reservations | undefined): readonly string[] {
  if (reservations === undefined) return [];
  return typeof reservations === 'string' ? [reservations] : reservations;
}

function toRow(r: MediaRecord): MediaTable {
  return {
    id: r.id,
    owner: r.owner,
    filename: r.filename,
    mime_type: r.mimeType,
    kind: r.kind,
    size: r.size,
    sha256: r.sha256,
    visibility: r.visibility,
    tags: JSON.stringify(r.tags),
    width: r.width,
    height: r.height,
    created_at: r.createdAt,
    updated_at: r.updatedAt,
    deleted_at: null,
    ...metadataColumns(r),
  };
}

function metadataColumns(
  m: Pick<MediaRecord, 'takenAt' | 'placeholder' | 'media' | 'exif' | 'metadataVersion'>,
): Pick<MediaTable, 'taken_at' | 'placeholder' | 'media' | 'exif' | 'metadata_version'> {
  return {
    taken_at: m.takenAt,
    placeholder: m.placeholder,
    media: m.media === null ? null : JSON.stringify(m.media),
    exif: m.exif === null ? null : JSON.stringify(m.exif),
    metadata_version: m.metadataVersion,
  };
}

function linkFromRow(r: LinksTable): LinkRecord {
  return {
    id: r.id,
    mediaId: r.media_id,
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
}

function trashedFromRow(r: MediaTable): TrashedRecord {
  return { ...fromRow(r), deletedAt: Number(r.deleted_at) };
}

function fromRow(r: MediaTable): MediaRecord {
  return {
    id: r.id,
    owner: r.owner,
    filename: r.filename,
    mimeType: r.mime_type,
    kind: r.kind as MediaKind,
    size: Number(r.size),
    sha256: r.sha256,
    visibility: r.visibility as Visibility,
    tags: JSON.parse(r.tags) as string[],
    width: r.width,
    height: r.height,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    takenAt: r.taken_at === null ? null : Number(r.taken_at),
    placeholder: r.placeholder,
    media: r.media === null ? null : (JSON.parse(r.media) as MediaInfo),
    exif: r.exif === null ? null : (JSON.parse(r.exif) as CameraData),
    metadataVersion: Number(r.metadata_version),
  };
}
