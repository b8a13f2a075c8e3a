import type { BlobStore } from '../storage/blob-store.ts';
import { AppError, validationFailed } from '../errors.ts';
import type { Caller } from '../auth/caller.ts';
import type { MediaKind } from './media-kind.ts';
import { sanitizeFilename } from './filename.ts';
import {
  SORTS,
  type LinkRecord,
  type MediaRecord,
  type MediaRepo,
  type SortKey,
  type TrashedRecord,
  type Visibility,
} from './media-repo.ts';
import type { AuditAction, AuditEntry } from '../audit/audit-log.ts';
import type { Signer } from './signing.ts';
import { newId } from '../util/ids.ts';
import { normalizeTags } from './tags.ts';
import { originalKey, renditionsPrefix } from '../storage/key-layout.ts';
import type { InvalidationBus } from '../util/invalidation-bus.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { ACCESS_CACHE_TTL_MS, TtlCache } from '../util/ttl-cache.ts';

export interface ListParams {
  limit: number;
  cursor?: string;
  sort: SortKey;
  type?: MediaKind;
  tag?: string;
  q?: string;
  owner?: string;
}

const DAY_MS = 86_400_000;
/** Items removed per purge query. */
const PURGE_BATCH = 100;

/** A link as its owner sees it: the token is what goes into the URL. */
export interface IssuedLink extends LinkRecord {
  token: string;
}

/**
 * Items and who may touch them: the owner and admins; to anyone else an item does not exist
 * (404, never 403, so ids of others' items reveal nothing).
 */
export class MediaService {
  readonly #repo: MediaRepo;
  readonly #storage: BlobStore;
  readonly #cursors: Signer;
  readonly #links: Signer;
  readonly #legacyLinks: Signer;
  readonly #bus: InvalidationBus;
  readonly #clock: Clock;
  readonly #deleted: (id: string) => Promise<void>;
  /** Items and links decide access, so neither is trusted longer than ACCESS_CACHE_TTL_MS. */
  readonly #items: TtlCache<string, MediaRecord | undefined>;
  readonly #linkCache: TtlCache<string, LinkRecord | undefined>;
  readonly #trashDays: number;

  constructor(deps: {
    repo: MediaRepo;
    storage: BlobStore;
    cursors: Signer;
    /** Makes a link's token from its id. */
    links: Signer;
    /** Verifies the self-contained link tokens issued before links were records. */
    legacyLinks: Signer;
    bus: InvalidationBus;
    /**
     * How long a looked-up item or link is trusted (capped at ACCESS_CACHE_TTL_MS); changes on
     * this instance clear it at once.
     */
    cacheTtlMs: number;
    /** Days a deleted item stays in the trash; 0: DELETE removes it at once. */
    trashDays?: number;
    clock?: Clock;
    /**
     * Told of every item deleted here, before its files are removed, e.g. to drop what is
     * remembered of it in memory; resolves once nothing writes files of it any more (a render
     * under way would otherwise store a rendition after its folder went).
     */
    deleted?: (id: string) => Promise<void>;
  }) {
    this.#repo = deps.repo;
    this.#storage = deps.storage;
    this.#cursors = deps.cursors;
    this.#links = deps.links;
    this.#legacyLinks = deps.legacyLinks;
    this.#bus = deps.bus;
    this.#clock = deps.clock ?? systemClock;
    this.#trashDays = deps.trashDays ?? 0;
    this.#deleted = deps.deleted ?? (() => Promise.resolve());
    const cache = {
      ttlMs: Math.min(deps.cacheTtlMs, ACCESS_CACHE_TTL_MS),
      maxEntries: 10_000,
      clock: this.#clock,
    };
    this.#items = new TtlCache(cache);
    this.#linkCache = new TtlCache(cache);
    deps.bus.subscribe((event) => this.#forget(event.mediaIds ?? [], event.linkIds ?? []));
  }

  /** The item if it exists, regardless of who asks (for public and signed-link access). */
  async find(id: string): Promise<MediaRecord | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
    return this.#items.get(id, () => this.#repo.get(id));
  }

  #forget(mediaIds: string[], linkIds: string[]): void {
    for (const id of mediaIds) this.#items.delete(id);
    // A deleted item takes its links along.
    if (mediaIds.length > 0) this.#linkCache.deleteWhere((link) => !link || mediaIds.includes(link.mediaId));
    for (const id of linkIds) this.#linkCache.delete(id);
  }

  async #changed(id: string): Promise<void> {
    this.#forget([id], []);
    await this.#bus.publish({ mediaIds: [id] });
  }

  async getFor(caller: Caller, id: string): Promise<MediaRecord> {
    const item = await this.find(id);
    if (!item || !mayManage(caller, item)) throw new AppError('NOT_FOUND', 'No such media item.');
    return item;
  }

  async list(
    caller: Caller,
    params: ListParams,
  ): Promise<{ items: MediaRecord[]; nextCursor: string | null }> {
    const owner = params.owner ?? caller.username;
    if (owner !== caller.username && !caller.isAdmin) {
      throw new AppError('FORBIDDEN', "Only administrators may list other users' media.");
    }
    const after = params.cursor === undefined ? undefined : this.#decodeCursor(params.cursor, params.sort);
    const items = await this.#repo.list({
      owner,
      limit: params.limit + 1,
      sort: params.sort,
      after,
      kind: params.type,
      tag: params.tag === undefined ? undefined : normalizeTags([params.tag], 'query.tag')[0],
      q: params.q,
    });
    const page = items.slice(0, params.limit);
    const last = page.at(-1);
    const nextCursor = items.length > params.limit && last ? this.#encodeCursor(params.sort, last) : null;
    return { items: page, nextCursor };
  }

  /**
   * Which of these SHA-256 digests the caller has stored, each with the caller's newest item of
   * those bytes. Only the caller's own items, admins included: it must not tell anyone whether
   * another user holds a file.
   */
  async lookup(caller: Caller, digests: readonly string[]): Promise<Map<string, string>> {
    return this.#repo.newestBySha256(caller.username, digests);
  }

  async update(
    caller: Caller,
    id: string,
    patch: { filename?: string; visibility?: Visibility; tags?: string[] },
  ): Promise<MediaRecord> {
    await this.getFor(caller, id);
    const clean: { filename?: string; visibility?: Visibility; tags?: string[] } = {};
    if (patch.filename !== undefined) {
      clean.filename = sanitizeFilename(patch.filename, '');
      if (clean.filename === '') {
        throw validationFailed({ path: 'body.filename', message: 'must contain a usable file name' });
      }
    }
    if (patch.visibility !== undefined) clean.visibility = patch.visibility;
    if (patch.tags !== undefined) clean.tags = normalizeTags(patch.tags, 'body.tags');
    const updated = await this.#repo.update(id, clean);
    await this.#changed(id);
    if (!updated) throw new AppError('NOT_FOUND', 'No such media item.');
    return updated;
  }

  /**
   * With the trash on (and not `permanent`), moves the item to the trash. Otherwise removes the
   * row first (the item is gone at once), then the blob and every rendition; `permanent` also
   * takes an item that is already in the trash.
   */
  async delete(caller: Caller, id: string, options: { permanent?: boolean } = {}): Promise<void> {
    if (this.#trashDays > 0 && !options.permanent) {
      await this.getFor(caller, id);
      const trashed = await this.#repo.trash(id, this.#clock.now(), this.#entry(caller, 'delete', id));
      // Its links ended with it: forgetting the item also forgets them (#forget).
      await this.#changed(id);
      if (!trashed) throw new AppError('NOT_FOUND', 'No such media item.');
      return;
    }
    const item = (await this.find(id)) ?? (await this.#trashedFor(caller, id));
    if (!item || !mayManage(caller, item)) throw new AppError('NOT_FOUND', 'No such media item.');
    const deleted = await this.#repo.delete(id, this.#entry(caller, 'delete', id));
    await this.#changed(id);
    if (!deleted) throw new AppError('NOT_FOUND', 'No such media item.');
    await this.#removeFiles(id);
  }

  /** The caller's trashed items (admins too see only their own), most recently trashed first. */
  async listTrash(
    caller: Caller,
    params: { limit: number; cursor?: string },
  ): Promise<{ items: TrashedRecord[]; nextCursor: string | null }> {
    let after: { deletedAt: number; id: string } | undefined;
    if (params.cursor !== undefined) {
      const payload = this.#cursors.verify(params.cursor) as { t?: unknown; i?: unknown } | null;
      if (payload === null || typeof payload.t !== 'number' || typeof payload.i !== 'string') {
        throw validationFailed({ path: 'query.cursor', message: 'is not a cursor of this listing' });
      }
      after = { deletedAt: payload.t, id: payload.i };
    }
    const items = await this.#repo.listTrash(caller.username, params.limit + 1, after);
    const page = items.slice(0, params.limit);
    const last = page.at(-1);
    const nextCursor =
      items.length > params.limit && last ? this.#cursors.sign({ t: last.deletedAt, i: last.id }) : null;
    return { items: page, nextCursor };
  }

  /** Takes an item out of the trash, as it was (its links excepted: they ended). */
  async restore(caller: Caller, id: string): Promise<MediaRecord> {
    const trashed = await this.#trashedFor(caller, id);
    if (!trashed || !mayManage(caller, trashed))
      throw new AppError('NOT_FOUND', 'No such item in the trash.');
    const restored = await this.#repo.restore(id, this.#entry(caller, 'restore', id));
    // Instances that looked the item up while it was in the trash cached its absence.
    await this.#changed(id);
    if (!restored) throw new AppError('NOT_FOUND', 'No such item in the trash.');
    return restored;
  }

  /**
   * Removes for good, with their files, the items trashed more than STOWAGE_TRASH_DAYS ago (all
   * trashed items when the trash is off); returns how many. Run by the sweeper with its clock.
   */
  async purgeTrash(now: number): Promise<number> {
    const cutoff = now - this.#trashDays * DAY_MS;
    let purged = 0;
    for (;;) {
      const ids = await this.#repo.trashedBefore(cutoff, PURGE_BATCH);
      for (const id of ids) {
        // Only if still trashed since before the cutoff: a restore meanwhile wins.
        if (await this.#repo.delete(id, undefined, cutoff)) {
          purged++;
          await this.#changed(id);
          await this.#removeFiles(id);
        }
      }
      if (ids.length < PURGE_BATCH) return purged;
    }
  }

  async #trashedFor(caller: Caller, id: string): Promise<TrashedRecord | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
    const item = await this.#repo.getTrashed(id);
    return item && mayManage(caller, item) ? item : undefined;
  }

  async #removeFiles(id: string): Promise<void> {
    await this.#deleted(id).catch(() => undefined);
    // A failure here leaves an orphan blob, which the sweeper removes; the item is already gone.
    await Promise.allSettled([
      this.#storage.delete(originalKey(id)),
      this.#storage.deletePrefix(renditionsPrefix(id)),
    ]);
  }

  #entry(caller: Caller, action: AuditAction, target: string): AuditEntry {
    return {
      at: this.#clock.now(),
      actor: caller.username,
      action,
      target,
      ip: caller.ip ?? null,
      outcome: 'ok',
    };
  }

  /** A new link to the item, recorded so that it can be listed and revoked. */
  async createLink(caller: Caller, id: string, expiresIn: number): Promise<IssuedLink> {
    await this.getFor(caller, id);
    const now = this.#clock.now();
    // Whole seconds, rounded up: the link lives at least `expiresIn` seconds and dies exactly at
    // the expiresAt the client is told (never up to a second before it).
    const link: LinkRecord = {
      id: newId(),
      mediaId: id,
      createdAt: now,
      expiresAt: Math.ceil((now + expiresIn * 1000) / 1000) * 1000,
    };
    // Should the item be deleted meanwhile, the record outlives it harmlessly: a link is only
    // honoured for an item that exists, ids are never reused, and the sweeper removes it on expiry.
    await this.#repo.insertLink(link, this.#entry(caller, 'link_created', link.id));
    return this.#issued(link);
  }

  /** The item's live links, for its owner or an admin. */
  async listLinks(caller: Caller, id: string): Promise<IssuedLink[]> {
    await this.getFor(caller, id);
    const links = await this.#repo.listLinks(id, this.#clock.now());
    return links.map((link) => this.#issued(link));
  }

  /** Ends one of the item's links on every instance; 404 unless it is a live link of this item. */
  async revokeLink(caller: Caller, id: string, linkId: string): Promise<void> {
    await this.getFor(caller, id);
    const entry = this.#entry(caller, 'link_revoked', linkId);
    if (!(await this.#repo.deleteLink(id, linkId, this.#clock.now(), entry))) {
      throw new AppError('NOT_FOUND', 'No such link.');
    }
    this.#forget([], [linkId]);
    await this.#bus.publish({ linkIds: [linkId] });
  }

  /** Throws 401 unless `token` is a live, unrevoked link for exactly this item. */
  async verifyLink(id: string, token: string): Promise<void> {
    const now = this.#clock.now();
    const payload = this.#links.verify(token) as { l?: unknown } | null;
    if (payload !== null && typeof payload.l === 'string') {
      const linkId = payload.l;
      const link = await this.#linkCache.get(linkId, () => this.#repo.getLink(linkId));
      if (!link || link.mediaId !== id) throw new AppError('UNAUTHENTICATED', 'This link is not valid.');
      if (link.expiresAt <= now) throw new AppError('UNAUTHENTICATED', 'This link has expired.');
      return;
    }
    // A self-contained token from before links were records: it cannot be revoked, only expire
    // (after at most STOWAGE_LINK_MAX_TTL from when it was issued) or die with its item.
    const legacy = this.#legacyLinks.verify(token) as { m?: unknown; e?: unknown } | null;
    if (!legacy || legacy.m !== id || typeof legacy.e !== 'number') {
      throw new AppError('UNAUTHENTICATED', 'This link is not valid.');
    }
    if (legacy.e * 1000 <= now) throw new AppError('UNAUTHENTICATED', 'This link has expired.');
  }

  #issued(link: LinkRecord): IssuedLink {
    // The token is a MAC of the link's id under the server's link key: only the server can make
    // it, so neither the id nor a copy of the database reveals it, and it need not be stored.
    return { ...link, token: this.#links.sign({ l: link.id }) };
  }

  #encodeCursor(sort: SortKey, last: MediaRecord): string {
    const column = SORTS[sort].column;
    const value =
      column === 'created_at'
        ? last.createdAt
        : column === 'size'
          ? last.size
          : column === 'taken_at'
            ? last.takenAt
            : last.filename;
    return this.#cursors.sign({ s: sort, v: value, i: last.id });
  }

  #decodeCursor(cursor: string, sort: SortKey): { value: string | number | null; id: string } {
    const payload = this.#cursors.verify(cursor) as { s?: unknown; v?: unknown; i?: unknown } | null;
    const valid =
      payload !== null &&
      payload.s === sort &&
      typeof payload.i === 'string' &&
      (typeof payload.v === 'string' ||
        typeof payload.v === 'number' ||
        // Only takenAt may be missing: the cursor is then in the items without it.
        (payload.v === null && SORTS[sort].column === 'taken_at'));
    if (!valid) {
      throw validationFailed({ path: 'query.cursor', message: 'is not a cursor of this listing' });
    }
    return { value: payload.v as string | number | null, id: payload.i as string };
  }
}

export function mayManage(caller: Caller, item: MediaRecord): boolean {
  return caller.isAdmin || item.owner === caller.username;
}
