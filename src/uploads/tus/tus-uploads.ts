import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Upload, type DataStore, type Locker } from '@tus/utils';
import type { Logger } from 'pino';
import { AppError, isAppError, validationFailed } from '../../errors.ts';
import { isStorageFull } from '../../storage/blob-store.ts';
import type { MediaRepo } from '../../media/media-repo.ts';
import { kindOf } from '../../media/media-kind.ts';
import type { Metrics } from '../../metrics.ts';
import { newId } from '../../util/ids.ts';
import { parseTagList } from '../../media/tags.ts';
import type { Scanner } from '../../scan/scanner.ts';
import type { TypePolicy } from '../file-types.ts';
import type { Ingest } from '../ingest.ts';
import { tooLarge } from '../stream-stages.ts';
import {
  CHECKSUM_ALGORITHMS,
  IETF_INTEROP_VERSION,
  TUS_EXTENSIONS,
  TUS_VERSION,
  formatMetadata,
  invalidConcat,
  isIetfDraft,
  isUploadBody,
  parseChecksum,
  parseConcat,
  parseDeferLength,
  parseMetadata,
  parseSize,
  parseUploadComplete,
  type Checksum,
} from './tus-headers.ts';
import { PatchStage, UploadProgress } from './upload-progress.ts';

/**
 * A tus data store (@tus/file-store or @tus/s3-store, which take and give Node streams) that can
 * also stream back an upload, say where a finished upload's bytes are (on local disk its file, on
 * S3 its object in the blob store's bucket: so it is linked or copied inside the object store
 * rather than streamed through this process) and, on local disk, cut a file back to an offset (so
 * a refused PATCH keeps nothing) and wait for the flushes its writes started.
 */
export type ReadableDataStore = DataStore & {
  read(id: string): Readable | Promise<Readable>;
  localFile?(id: string): string;
  objectKey?(id: string): string;
  truncate?(id: string, offset: number): Promise<void>;
  flushed?(id: string): Promise<void>;
  /**
   * Appends like write() without flushing the bytes to disk: for a partial upload, whose bytes
   * are only ever read back by the concatenation, which writes them again into a flushed blob.
   */
  writeUnflushed?(readable: Readable, id: string, offset: number): Promise<number>;
};

export interface TusDeps {
  datastore: ReadableDataStore;
  /** Upload locks (Redis across instances); one process's own locks when absent. */
  locker: Locker;
  ingest: Ingest;
  repo: MediaRepo;
  policy: TypePolicy;
  scanner: Scanner;
  /** Counts which way each completion went (the single pass, or a pass over the stored bytes). */
  metrics: Metrics;
  maxUploadBytes: number;
  quotaBytes: number | null;
  expirySeconds: number;
  /** Local scratch space: a PATCH with a checksum is held here until verified, where the store cannot cut back. */
  spoolDir: string;
  logger: Logger;
}

export const TUS_PATH = '/api/media/uploads';
const ID_RE = /^[A-Za-z0-9_-]{22}$/;
const KNOWN_METADATA = ['filename', 'filetype', 'visibility', 'tags'];
/** Uploads in progress that keep a scan open while their bytes arrive (see #progressAt). */
const MAX_OPEN_SCANS = 4;
/** Our own record of a partial upload in the store's metadata; never shown as Upload-Metadata. */
const PARTIAL_KEY = 'stowage-concat';

/** The answer to one tus request: its status and headers, and our error when it failed. */
export interface TusOutcome {
  status: number;
  headers: Record<string, string>;
  error: AppError | undefined;
}

interface Appended {
  offset: number;
  complete: boolean;
}

/**
 * The tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload) with every extension a server
 * can offer, on Node streams from the socket to the store: the request body is piped into the
 * store through one stage that counts, checksums, hashes, types and scans it, so the completing
 * PATCH stores the file without reading it again. Each upload has a reservation row, which is both
 * its owner and its hold on the owner's quota until it completes, expires or is terminated.
 *
 * The HTTP route authorises the upload id in the path; `handle` acts on that id and no other.
 */
export class TusUploads {
  readonly #deps: TusDeps;
  readonly #locker: Locker;
  readonly #progress = new Map<string, UploadProgress>();

  constructor(deps: TusDeps) {
    this.#deps = deps;
    this.#locker = deps.locker;
  }

  /** 404 unless the upload exists and belongs to `owner`: others' uploads are invisible. */
  async assertOwner(id: string, owner: string): Promise<void> {
    const holder = ID_RE.test(id) ? await this.#deps.repo.reservationOwner(id) : undefined;
    if (holder !== owner) throw new AppError('NOT_FOUND', 'No such upload.');
  }

  /**
   * Answers one tus request. `id` is the upload the route authorised from its path (none for
   * creation and discovery): it is the only upload this request can touch.
   */
  async handle(raw: IncomingMessage, owner: string, id?: string): Promise<TusOutcome> {
    const method = raw.method ?? 'GET';
    const headers: Record<string, string> = { 'Tus-Resumable': TUS_VERSION };
    try {
      if (id !== undefined && !ID_RE.test(id)) throw new AppError('NOT_FOUND', 'No such upload.');
      if (method === 'OPTIONS')
        return { status: 204, headers: { ...headers, ...this.#discovery() }, error: undefined };
      const ietf = isIetfDraft(raw.headers);
      if (ietf) headers['Upload-Draft-Interop-Version'] = IETF_INTEROP_VERSION;
      if (!ietf && raw.headers['tus-resumable'] !== TUS_VERSION) {
        headers['Tus-Version'] = TUS_VERSION;
        throw new AppError('PRECONDITION_FAILED', `Tus-Resumable must be ${TUS_VERSION}.`);
      }
      if (ietf) parseUploadComplete(raw.headers['upload-complete']);
      let status: number;
      if (method === 'POST' && id === undefined) status = await this.#create(raw, owner, headers);
      else if (method === 'HEAD' && id !== undefined)
        status = await this.#locked(raw, id, () => this.#head(id, headers));
      else if (method === 'PATCH' && id !== undefined) status = await this.#patch(raw, owner, id, headers);
      else if (method === 'DELETE' && id !== undefined)
        status = await this.#locked(raw, id, () => this.#terminate(id, headers));
      else throw new AppError('METHOD_NOT_ALLOWED');
      // A PATCH that let go of its lock (or whose client went quiet) answers before its body
      // ended: the connection cannot carry another request.
      if (!raw.complete && (method === 'PATCH' || method === 'POST')) headers.Connection = 'close';
      return { status, headers, error: undefined };
    } catch (error) {
      const appError = this.#asAppError(error);
      // Refused before its body was read to the end: nothing reads the rest, so the connection
      // cannot carry another request. Closing it lets the client stop sending.
      if (!raw.complete && (method === 'PATCH' || method === 'POST')) headers.Connection = 'close';
      return { status: appError.status, headers, error: appError };
    }
  }

  #discovery(): Record<string, string> {
    return {
      'Tus-Version': TUS_VERSION,
      'Tus-Extension': TUS_EXTENSIONS.join(','),
      'Tus-Max-Size': String(this.#deps.maxUploadBytes),
      'Tus-Checksum-Algorithm': Object.keys(CHECKSUM_ALGORITHMS).join(','),
    };
  }

  /** POST: creation, creation-defer-length, creation-with-upload, and concatenation's two kinds. */
  async #create(raw: IncomingMessage, owner: string, headers: Record<string, string>): Promise<number> {
    const deps = this.#deps;
    const concat = parseConcat(raw.headers['upload-concat']);
    const metadata = clientMetadata(raw.headers['upload-metadata']);
    if (concat?.kind === 'final') return this.#concatenate(owner, concat.urls, metadata, headers);
    const length = parseSize('Upload-Length', raw.headers['upload-length']);
    const deferred = parseDeferLength(raw.headers['upload-defer-length']);
    if ((length === undefined) === !deferred) {
      throw validationFailed(
        { path: 'headers.upload-length', message: 'send either Upload-Length or Upload-Defer-Length: 1' },
        'Upload-Length or Upload-Defer-Length is required.',
      );
    }
    if (length !== undefined && length > deps.maxUploadBytes) throw tooLarge(deps.maxUploadBytes);
    const carriesBytes = isUploadBody(raw.headers);
    const checksum = parseChecksum(raw.headers['upload-checksum']);
    const id = newId();
    const created = Date.now();
    const expiresAt = created + deps.expirySeconds * 1000;
    // The quota holds the declared length at once; a deferred one grows with the bytes received.
    await deps.repo.reserve(id, owner, length ?? 0, expiresAt, deps.quotaBytes);
    try {
      await deps.datastore.create(
        new Upload({
          id,
          size: length,
          offset: 0,
          metadata: { ...metadata, ...(concat ? { [PARTIAL_KEY]: 'partial' } : {}) },
          creation_date: new Date(created).toISOString(),
        }),
      );
    } catch (error) {
      await deps.repo.release(id);
      throw error;
    }
    headers['Upload-Expires'] = new Date(expiresAt).toUTCString();
    if (carriesBytes) {
      // creation-with-upload: a refused first request leaves no upload behind (no Location).
      try {
        const appended = await this.#locked(raw, id, (released) =>
          this.#append(raw, owner, id, 0, checksum, released, headers),
        );
        if (appended.complete && !concat) headers['Media-Id'] = await this.#complete(id, owner);
      } catch (error) {
        await this.#discard(id);
        throw error;
      }
    }
    headers.Location = `${TUS_PATH}/${id}`;
    return 201;
  }

  async #head(id: string, headers: Record<string, string>): Promise<number> {
    const upload = await this.#upload(id);
    headers['Upload-Offset'] = String(upload.offset);
    if (upload.size === undefined) headers['Upload-Defer-Length'] = '1';
    else headers['Upload-Length'] = String(upload.size);
    const visible = visibleMetadata(upload);
    if (Object.keys(visible).length > 0) headers['Upload-Metadata'] = formatMetadata(visible);
    if (isPartial(upload)) headers['Upload-Concat'] = 'partial';
    headers['Upload-Expires'] = this.#expiry(upload).toUTCString();
    headers['Cache-Control'] = 'no-store';
    return 200;
  }

  async #patch(
    raw: IncomingMessage,
    owner: string,
    id: string,
    headers: Record<string, string>,
  ): Promise<number> {
    const offset = parseSize('Upload-Offset', raw.headers['upload-offset']);
    if (offset === undefined) throw new AppError('BAD_REQUEST', 'Upload-Offset is required.');
    const checksum = parseChecksum(raw.headers['upload-checksum']);
    const appended = await this.#locked(raw, id, (released) =>
      this.#append(raw, owner, id, offset, checksum, released, headers),
    );
    // Completed outside the lock (a HEAD must not wait for a scan): the completion is claimed in
    // the database, so a second request at the final offset, on any instance, cannot store it twice.
    if (appended.complete) headers['Media-Id'] = await this.#complete(id, owner);
    return 204;
  }

  /**
   * Appends the request body at `offset` (tus "PATCH"), under the upload's lock. Returns early,
   * keeping what was received, when the client goes away or another request asks for the lock
   * (`released`): that hand-over is what lets a client resume on another instance at once.
   */
  async #append(
    raw: IncomingMessage,
    owner: string,
    id: string,
    offset: number,
    checksum: Checksum | undefined,
    released: AbortSignal,
    headers: Record<string, string>,
  ): Promise<Appended> {
    const deps = this.#deps;
    const upload = await this.#upload(id);
    const expires = this.#expiry(upload);
    headers['Upload-Expires'] = expires.toUTCString();
    if (offset !== upload.offset) {
      throw new AppError('CONFLICT', `Upload-Offset must be ${upload.offset}.`, {
        details: { offset: upload.offset },
      });
    }
    await this.#declareLength(raw, owner, id, upload, expires);
    const deferred = upload.size === undefined;
    const contentLength = Number(raw.headers['content-length'] ?? Number.NaN);
    if (upload.size !== undefined && offset + contentLength > upload.size) {
      throw new AppError('PAYLOAD_TOO_LARGE', 'The body goes past Upload-Length.');
    }
    let limit: number;
    let limitError: () => AppError;
    if (upload.size !== undefined) {
      limit = upload.size - offset;
      limitError = () => new AppError('PAYLOAD_TOO_LARGE', 'The body goes past Upload-Length.');
    } else {
      // A deferred length: the upload limit and the quota apply to the bytes as they arrive.
      const room =
        deps.quotaBytes === null ? Infinity : deps.quotaBytes - (await deps.repo.usedBytes(owner, id));
      limit = Math.min(deps.maxUploadBytes, room) - offset;
      limitError = () =>
        room < deps.maxUploadBytes ? new AppError('QUOTA_EXCEEDED') : tooLarge(deps.maxUploadBytes);
    }
    const partial = isPartial(upload);
    const progress = partial ? undefined : this.#progressAt(id, offset);
    const stage = new PatchStage({ limit, limitError, checksum, progress });
    let stored: number;
    try {
      stored = await this.#receive(raw, id, offset, stage, checksum, released, partial);
    } catch (error) {
      // The stage may have fed the scan and the type check bytes that were never stored.
      this.#dropProgress(id);
      throw error;
    }

    if (stage.refusal) {
      this.#dropProgress(id);
      // A refused type, or a deferred upload past its limit, ends the upload: nothing is left.
      if (stage.refusal.code !== 'PAYLOAD_TOO_LARGE' || deferred) {
        await this.#discard(id);
        throw stage.refusal;
      }
      await this.#cutBack(id, offset, stored);
      throw stage.refusal;
    }
    if (checksum && !stage.checksumMatches) {
      // Mismatched, or cut short before the digest could be checked: none of the bytes are kept.
      this.#dropProgress(id);
      await this.#cutBack(id, offset, stored);
      throw new AppError('CHECKSUM_MISMATCH');
    }
    if (progress && stored === offset + stage.bytes) stage.commitTo(progress);
    else this.#dropProgress(id);
    if (deferred && stored !== offset) {
      await deps.repo.reserve(id, owner, stored, expires.getTime(), null);
    }
    headers['Upload-Offset'] = String(stored);
    const size = upload.size;
    return { offset: stored, complete: size !== undefined && stored === size && !partial };
  }

  /** Upload-Length on a PATCH: declares a deferred length once (the quota then holds all of it). */
  async #declareLength(
    raw: IncomingMessage,
    owner: string,
    id: string,
    upload: Upload,
    expires: Date,
  ): Promise<void> {
    const declared = parseSize('Upload-Length', raw.headers['upload-length']);
    if (declared === undefined) return;
    if (upload.size !== undefined) {
      if (declared !== upload.size) throw new AppError('BAD_REQUEST', 'Upload-Length cannot change.');
      return;
    }
    if (declared < upload.offset)
      throw new AppError('BAD_REQUEST', 'Upload-Length is less than Upload-Offset.');
    try {
      if (declared > this.#deps.maxUploadBytes) throw tooLarge(this.#deps.maxUploadBytes);
      await this.#deps.repo.reserve(id, owner, declared, expires.getTime(), this.#deps.quotaBytes);
    } catch (error) {
      await this.#discard(id);
      throw error;
    }
    await this.#deps.datastore.declareUploadLength(id, declared);
    upload.size = declared;
  }

  /**
   * Pipes the body through `stage` into the store and returns the offset the store then holds.
   * The body ends early, cleanly, when the client leaves or the lock is asked for: what arrived is
   * stored. With a checksum on a store that cannot cut back (S3), the bytes wait in a local spool
   * until they are verified. A partial upload's bytes are not flushed (see writeUnflushed): a
   * machine crash can only shorten the file, and a resume then sends the rest again.
   */
  async #receive(
    raw: IncomingMessage,
    id: string,
    offset: number,
    stage: PatchStage,
    checksum: Checksum | undefined,
    released: AbortSignal,
    partial: boolean,
  ): Promise<number> {
    const store = this.#deps.datastore;
    const stop = () => {
      raw.unpipe(stage);
      if (!stage.writableEnded && !stage.destroyed) stage.end();
    };
    // The stage's failures are read from stage.refusal and the store's answer; a store that
    // stops listening before the stage fails (the S3 store's part splitter) must not crash us.
    stage.on('error', () => undefined);
    const onClose = () => {
      if (!raw.complete) stop();
    };
    raw.once('close', onClose);
    released.addEventListener('abort', stop, { once: true });
    if (released.aborted) stop();
    else raw.pipe(stage);
    // What the store says it holds after a write that went through; asked again otherwise.
    let written: number | undefined;
    try {
      if (checksum && !store.truncate) {
        const spool = path.join(this.#deps.spoolDir, `${id}.${crypto.randomUUID()}.patch`);
        try {
          await pipeline(stage, fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
          written = stage.checksumMatches
            ? await store.write(fs.createReadStream(spool), id, offset)
            : offset;
        } finally {
          await fsp.rm(spool, { force: true });
        }
      } else if (partial && store.writeUnflushed) {
        written = await store.writeUnflushed(stage, id, offset);
      } else {
        written = await store.write(stage, id, offset);
      }
    } catch (error) {
      // A full disk is the server's failure, whatever the client did meanwhile: 507, never a
      // quiet 204 with a shorter offset.
      if (isStorageFull(error)) throw error;
      // Our own refusals are in stage.refusal; a client that vanished has left what it sent.
      if (!stage.refusal && raw.complete && !released.aborted) throw error;
    } finally {
      raw.off('close', onClose);
      released.removeEventListener('abort', stop);
    }
    return written ?? (await this.#upload(id)).offset;
  }

  /** Takes back the bytes a refused PATCH brought, where the store can (local disk). */
  async #cutBack(id: string, offset: number, stored: number): Promise<void> {
    if (stored > offset) await this.#deps.datastore.truncate?.(id, offset);
  }

  /**
   * Stores a finished upload as an item: from what was learnt while the bytes arrived when this
   * process saw all of them, else by one pass over the stored bytes. The tus copy goes either way.
   */
  async #complete(id: string, owner: string): Promise<string> {
    const deps = this.#deps;
    if (!(await deps.repo.claimCompletion(id))) {
      throw new AppError('CONFLICT', 'This upload is already being completed.');
    }
    try {
      const upload = await this.#upload(id);
      const metadata = visibleMetadata(upload);
      const progress = this.#progress.get(id);
      this.#progress.delete(id);
      const adoptFile = deps.datastore.localFile?.(id);
      const adoptObject = adoptFile ? undefined : deps.datastore.objectKey?.(id);
      // The last PATCH's flush goes on while the rest is decided (the scan's verdict, the type,
      // the metadata, which may start ffprobe): only the adoption's own fsync must come after it.
      const flushing = adoptFile ? deps.datastore.flushed?.(id) : undefined;
      let verified =
        (adoptFile ?? adoptObject) && progress ? await progress.finish(upload.size ?? -1) : undefined;
      // Images, video and audio are read from a local file (dimensions, camera data, placeholder,
      // ffprobe): on S3 they take the one pass over the stored bytes; documents are copied in the
      // bucket without being read.
      if (verified && !adoptFile && kindOf(verified.mime) !== 'document') verified = undefined;
      if (!verified) progress?.drop();
      deps.metrics.tusCompletions.inc({ pass: verified ? 'while_received' : 'stored_bytes' });
      const staged = await deps.ingest.receive({
        // Read in 1 MiB chunks when this pass has to hash and scan the whole file.
        stream: verified
          ? Readable.from([])
          : adoptFile
            ? fs.createReadStream(adoptFile, { highWaterMark: 1024 * 1024 })
            : await deps.datastore.read(id),
        ...(adoptFile ? { adoptFile } : {}),
        ...(adoptObject && verified ? { adoptObject } : {}),
        ...(verified ? { verified } : {}),
        owner,
        filename: metadata.filename,
        via: 'tus',
        reservations: id,
      });
      await flushing;
      const item = await staged.commit(itemMeta(metadata));
      await this.#removeUpload(id);
      return item.id;
    } catch (error) {
      await this.#discard(id);
      throw error;
    }
  }

  /**
   * concatenation's final upload: the caller's own finished partials, in order, go through the
   * ingest as one file. Decided in this request (201 with Media-Id, or the error), after which the
   * partials are gone; their reservations hold the quota until the item replaces them.
   */
  async #concatenate(
    owner: string,
    urls: string[],
    metadata: Record<string, string>,
    headers: Record<string, string>,
  ): Promise<number> {
    const deps = this.#deps;
    const ids = urls.map(uploadIdOfUrl);
    if (ids.some((id) => id === undefined) || new Set(ids).size !== ids.length) throw invalidConcat();
    const partials = ids as string[];
    let total = 0;
    for (const id of partials) {
      // Unknown, another user's, not a partial, or unfinished: one answer for all of them.
      if ((await deps.repo.reservationOwner(id)) !== owner) throw invalidConcat();
      const upload = await deps.datastore.getUpload(id).catch(() => undefined);
      if (!upload || !isPartial(upload) || upload.size === undefined || upload.offset !== upload.size) {
        throw invalidConcat();
      }
      total += upload.size;
    }
    for (const id of partials) {
      if (!(await deps.repo.claimCompletion(id))) {
        throw new AppError('CONFLICT', 'These partial uploads are already being concatenated.');
      }
    }
    try {
      if (total > deps.maxUploadBytes) throw tooLarge(deps.maxUploadBytes);
      const store = deps.datastore;
      async function* concatenated(): AsyncGenerator<Buffer> {
        for (const id of partials) yield* (await store.read(id)) as AsyncIterable<Buffer>;
      }
      const staged = await deps.ingest.receive({
        stream: Readable.from(concatenated(), { objectMode: false }),
        owner,
        filename: metadata.filename,
        via: 'tus',
        reservations: partials,
      });
      const item = await staged.commit(itemMeta(metadata));
      headers['Media-Id'] = item.id;
    } finally {
      for (const id of partials) await this.#discard(id);
    }
    headers.Location = `${TUS_PATH}/${newId()}`;
    return 201;
  }

  async #terminate(id: string, _headers: Record<string, string>): Promise<number> {
    await this.#upload(id);
    await this.#discard(id);
    return 204;
  }

  /**
   * Runs `fn` holding the upload's lock. `released` fires when another request (on any instance,
   * with the Redis locker) asks for the lock: a PATCH then stops reading and answers with what it
   * stored, so the lock changes hands at once instead of after a hung request's timeout.
   */
  async #locked<T>(raw: IncomingMessage, id: string, fn: (released: AbortSignal) => Promise<T>): Promise<T> {
    const lock = this.#locker.newLock(id);
    const released = new AbortController();
    // A client that leaves while waiting stops waiting (the socket: a bodiless request's own
    // 'close' may come before it is answered).
    const gone = new AbortController();
    const onClose = () => gone.abort();
    const socket = raw.socket as IncomingMessage['socket'] | null;
    socket?.once('close', onClose);
    try {
      await lock.lock(gone.signal, () => released.abort());
    } catch (error) {
      // The lockers' own refusals (409 after a wait, 503 when Redis cannot be reached) as they are.
      if (isAppError(error)) throw error;
      throw new AppError('CONFLICT', 'The upload is busy with another request; try again.', { cause: error });
    } finally {
      socket?.off('close', onClose);
    }
    try {
      return await fn(released.signal);
    } finally {
      await lock.unlock().catch((error: unknown) => {
        this.#deps.logger.warn({ err: error, upload: id }, 'could not release an upload lock');
      });
    }
  }

  /** This process's single-pass state for a PATCH at `offset`, if it saw every byte before it. */
  #progressAt(id: string, offset: number): UploadProgress | undefined {
    const known = this.#progress.get(id);
    if (known && known.offset === offset) return known;
    this.#dropProgress(id);
    if (offset !== 0) return undefined;
    const scanner = this.#deps.scanner;
    // Each open scan holds one of clamd's threads (MaxThreads, 10 by default) for as long as the
    // upload lasts: only a few uploads get one, the others are scanned in one pass at completion.
    const open = [...this.#progress.values()].filter((p) => p.scanning).length;
    const scan = scanner.enabled && open < MAX_OPEN_SCANS ? scanner.start() : undefined;
    const fresh = new UploadProgress(this.#deps.policy, scanner.enabled, scan);
    this.#progress.set(id, fresh);
    return fresh;
  }

  #dropProgress(id: string): void {
    this.#progress.get(id)?.drop();
    this.#progress.delete(id);
  }

  async #upload(id: string): Promise<Upload> {
    try {
      return await this.#deps.datastore.getUpload(id);
    } catch (error) {
      if (isStoreError(error) && (error.status_code === 404 || error.status_code === 410)) {
        throw new AppError('NOT_FOUND', 'No such upload.');
      }
      throw error;
    }
  }

  #expiry(upload: Upload): Date {
    const created = Date.parse(upload.creation_date ?? '') || Date.now();
    return new Date(created + this.#deps.expirySeconds * 1000);
  }

  async #removeUpload(id: string): Promise<void> {
    await this.#deps.datastore.remove(id).catch((error: unknown) => {
      this.#deps.logger.warn({ err: error, upload: id }, 'could not remove a finished tus upload');
    });
  }

  /** Removes the upload and its reservation: terminated, refused, expired or concatenated. */
  async #discard(id: string): Promise<void> {
    this.#dropProgress(id);
    await this.#deps.datastore.remove(id).catch(() => undefined);
    await this.#deps.repo.release(id);
  }

  #asAppError(error: unknown): AppError {
    if (isAppError(error)) return error;
    // The upload store's disk is full: 507 like on every upload path (the error handler logs it).
    if (isStorageFull(error)) return new AppError('INSUFFICIENT_STORAGE', undefined, { cause: error });
    if (isStoreError(error) && error.status_code < 500) {
      return new AppError(error.status_code === 404 ? 'NOT_FOUND' : 'BAD_REQUEST', error.body.trim());
    }
    this.#deps.logger.error({ err: error }, 'resumable upload failed');
    return new AppError('INTERNAL', undefined, { cause: error });
  }

  /** Removes expired unfinished uploads (their reservations lapse by themselves). */
  async sweepExpired(): Promise<number> {
    const removed = await this.#deps.datastore.deleteExpired();
    for (const [id] of this.#progress) {
      if (!(await this.#deps.repo.reservationOwner(id))) this.#dropProgress(id);
    }
    return removed;
  }
}

/** Upload-Metadata, keeping the keys we know and checking the ones we act on. */
function clientMetadata(header: string | string[] | undefined): Record<string, string> {
  const metadata = Object.fromEntries(
    Object.entries(parseMetadata(header)).filter(([key]) => KNOWN_METADATA.includes(key)),
  );
  const visibility = metadata.visibility ?? 'private';
  if (visibility !== 'private' && visibility !== 'public') {
    throw validationFailed({ path: 'metadata.visibility', message: 'must be private or public' });
  }
  parseTagList(metadata.tags ?? '');
  return metadata;
}

function visibleMetadata(upload: Upload): Record<string, string> {
  return Object.fromEntries(
    Object.entries(upload.metadata ?? {}).filter(
      (entry): entry is [string, string] => KNOWN_METADATA.includes(entry[0]) && typeof entry[1] === 'string',
    ),
  );
}

function itemMeta(metadata: Record<string, string>): { visibility: 'public' | 'private'; tags: string[] } {
  return {
    visibility: metadata.visibility === 'public' ? 'public' : 'private',
    tags: parseTagList(metadata.tags ?? ''),
  };
}

function isPartial(upload: Upload): boolean {
  return upload.metadata?.[PARTIAL_KEY] === 'partial';
}

/** The id in a partial's URL (absolute path or URL, as Location gave it), from its path alone. */
function uploadIdOfUrl(url: string): string | undefined {
  let pathname: string;
  try {
    pathname = new URL(url, 'http://stowage.invalid').pathname;
  } catch {
    return undefined;
  }
  const prefix = `${TUS_PATH}/`;
  if (!pathname.startsWith(prefix)) return undefined;
  const id = pathname.slice(prefix.length);
  return ID_RE.test(id) ? id : undefined;
}

function isStoreError(error: unknown): error is { status_code: number; body: string } {
  const e = error as { status_code?: unknown; body?: unknown } | null;
  return typeof e?.status_code === 'number' && typeof e.body === 'string';
}
