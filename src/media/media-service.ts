import type { BlobStore } from '../storage/blob-store.ts';
import { AppError, validationFailed } from '../errors.ts';
import type { Caller } from '../auth/caller.ts';
import type { MediaKind } from './media-kind.ts';
import { sanitizeFilename } from './filename.ts';
import { SORTS, type MediaRecord, type MediaRepo, type SortKey, type Visibility } from './media-repo.ts';
import type { Signer } from './signing.ts';
import { normalizeTags } from './tags.ts';
import { originalKey, renditionsPrefix } from '../storage/key-layout.ts';
import type { InvalidationBus } from '../util/invalidation-bus.ts';

export interface ListParams {
  limit: number;
  cursor?: string;
  sort: SortKey;
  type?: MediaKind;
  tag?: string;
  q?: string;
  owner?: string;
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
  readonly #bus: InvalidationBus;
  readonly #cacheTtlMs: number;
  readonly #cache = new Map<string, { item: MediaRecord | undefined; at: number }>();

  constructor(deps: {
    repo: MediaRepo;
    storage: BlobStore;
    cursors: Signer;
    links: Signer;
    bus: InvalidationBus;
    /** How long a looked-up item is trusted; changes on this instance clear it at once. */
    cacheTtlMs: number;
  }) {
    this.#repo = deps.repo;
    this.#storage = deps.storage;
    this.#cursors = deps.cursors;
    this.#links = deps.links;
    this.#bus = deps.bus;
    this.#cacheTtlMs = deps.cacheTtlMs;
    deps.bus.subscribe((event) => {
      for (const id of event.mediaIds ?? []) this.#cache.delete(id);
    });
  }

  /** The item if it exists, regardless of who asks (for public and signed-link access). */
  async find(id: string): Promise<MediaRecord | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
    const now = Date.now();
    const hit = this.#cache.get(id);
    if (hit && now - hit.at < this.#cacheTtlMs) return hit.item;
    const item = await this.#repo.get(id);
    if (this.#cache.size >= 10_000) this.#cache.clear();
    this.#cache.set(id, { item, at: now });
    return item;
  }

  async #changed(id: string): Promise<void> {
    this.#cache.delete(id);
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

  /** Removes the row first (the item is gone at once), then the blob and every rendition. */
  async delete(caller: Caller, id: string): Promise<void> {
    await this.getFor(caller, id);
    const deleted = await this.#repo.delete(id);
    await this.#changed(id);
    if (!deleted) throw new AppError('NOT_FOUND', 'No such media item.');
    // A failure here leaves an orphan blob, which the sweeper removes; the item is already gone.
    await Promise.allSettled([
      this.#storage.delete(originalKey(id)),
      this.#storage.deletePrefix(renditionsPrefix(id)),
    ]);
  }

  async createLink(
    caller: Caller,
    id: string,
    expiresIn: number,
  ): Promise<{ token: string; expiresAt: number }> {
    await this.getFor(caller, id);
    // Whole seconds in the token, rounded up: the link lives at least `expiresIn` seconds and
    // dies exactly at the expiresAt the client is told (never up to a second before it).
    const expiresAtSeconds = Math.ceil((Date.now() + expiresIn * 1000) / 1000);
    return { token: this.#links.sign({ m: id, e: expiresAtSeconds }), expiresAt: expiresAtSeconds * 1000 };
  }

  /** Throws 401 unless `token` is an unexpired link for exactly this item. */
  verifyLink(id: string, token: string): void {
    const payload = this.#links.verify(token) as { m?: unknown; e?: unknown } | null;
    if (!payload || payload.m !== id || typeof payload.e !== 'number') {
      throw new AppError('UNAUTHENTICATED', 'This link is not valid.');
    }
    if (payload.e * 1000 <= Date.now()) throw new AppError('UNAUTHENTICATED', 'This link has expired.');
  }

  #encodeCursor(sort: SortKey, last: MediaRecord): string {
    const column = SORTS[sort].column;
    const value = column === 'created_at' ? last.createdAt : column === 'size' ? last.size : last.filename;
    return this.#cursors.sign({ s: sort, v: value, i: last.id });
  }

  #decodeCursor(cursor: string, sort: SortKey): { value: string | number; id: string } {
    const payload = this.#cursors.verify(cursor) as { s?: unknown; v?: unknown; i?: unknown } | null;
    const valid =
      payload !== null &&
      payload.s === sort &&
      typeof payload.i === 'string' &&
      (typeof payload.v === 'string' || typeof payload.v === 'number');
    if (!valid) {
      throw validationFailed({ path: 'query.cursor', message: 'is not a cursor of this listing' });
    }
    return { value: payload.v as string | number, id: payload.i as string };
  }
}

export function mayManage(caller: Caller, item: MediaRecord): boolean {
  return caller.isAdmin || item.owner === caller.username;
}
