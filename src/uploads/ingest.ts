import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isStorageFull, type BlobStore, type BlobWriter } from '../storage/blob-store.ts';
import { AdoptingWriter, type AdoptedSource } from './adopting-writer.ts';
import { originalKey } from '../storage/key-layout.ts';
import type { Scanner, ScanSession, ScanVerdict } from '../scan/scanner.ts';
import { AppError, isAppError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { TypePolicy } from './file-types.ts';
import { kindOf } from '../media/media-kind.ts';
import { sanitizeFilename } from '../media/filename.ts';
import type { MediaRecord, MediaRepo, Reservations, Visibility } from '../media/media-repo.ts';
import type { ItemMetadata, MetadataReader } from '../media/media-metadata.ts';
import { Meter, TypeSniffer, tooLarge } from './stream-stages.ts';
import { newId } from '../util/ids.ts';
import { DependencyUnavailableError, isDependencyFailure } from '../util/dependency-failure.ts';
import type { AuditLog } from '../audit/audit-log.ts';

export interface IngestDeps {
  storage: BlobStore;
  scanner: Scanner;
  /** Image sizes and checks, camera data, placeholders, video and audio probes. */
  metadata: MetadataReader;
  repo: MediaRepo;
  policy: TypePolicy;
  metrics: Metrics;
  maxUploadBytes: number;
  quotaBytes: number | null;
  /**
   * Local scratch space for images, videos and audio whose blob is not on local disk (sharp,
   * ffprobe and ffmpeg read files).
   */
  spoolDir: string;
  /** Where stored uploads (with the row, in its transaction) and refused ones (after) are recorded. */
  audit?: AuditLog;
  /** Told of each item once it is stored and visible (work done ahead, e.g. its thumbnail); returns at once. */
  stored?: (item: MediaRecord) => void;
}

export interface IngestSource {
  stream: Readable;
  owner: string;
  filename: string | undefined;
  via: 'multipart' | 'tus';
  /** The uploader's address, for the audit log (when known). */
  ip?: string;
  /**
   * The quota reservations this upload holds (a tus upload, or the partials of a concatenated
   * one): not counted against the quota while it is checked, and replaced by the item.
   */
  reservations?: Reservations;
  /**
   * A local file holding exactly the bytes of `stream` (a finished tus upload on local disk):
   * kept by moving it into the blob store rather than writing the bytes a second time.
   */
  adoptFile?: string;
  /**
   * An object in the blob store's own bucket holding exactly the bytes (a finished tus upload on
   * S3): with `verified`, kept by a copy inside the object store, never read by this process.
   */
  adoptObject?: string;
  /**
   * What the tus endpoint already learnt from the bytes of `adoptFile` or `adoptObject` while they
   * arrived (size, SHA-256, type checked against the policy, the scanner's verdict): the file is
   * then kept without being read again. `stream` is not read. An image needs `adoptFile` (its
   * dimensions are read from a local file).
   */
  verified?: VerifiedFile;
}

export interface VerifiedFile {
  size: number;
  sha256: string;
  mime: string;
  verdict: ScanVerdict;
}

/** A received, checked and scanned file that is not visible yet: commit() or discard() it. */
export interface StagedUpload {
  readonly id: string;
  readonly mimeType: string;
  readonly size: number;
  commit(meta: { visibility: Visibility; tags: string[] }): Promise<MediaRecord>;
  discard(): Promise<void>;
}

/**
 * The one ingest pipeline for every upload path. The bytes pass once: type sniffed from the first
 * bytes (415 before anything is stored), then counted, hashed, scanned and written side by side.
 * Only a file that passed every check is committed: blob moved to its final key, then the row
 * inserted under the quota check. Every failure removes whatever was written.
 */
export class Ingest {
  readonly #deps: IngestDeps;

  constructor(deps: IngestDeps) {
    this.#deps = deps;
  }

  /** The largest file accepted, in bytes. */
  get maxUploadBytes(): number {
    return this.#deps.maxUploadBytes;
  }

  async receive(source: IngestSource): Promise<StagedUpload> {
    if (source.verified && source.adoptFile)
      return this.#receiveVerified(source, { file: source.adoptFile }, source.verified);
    if (source.verified && source.adoptObject) {
      const object = { object: source.adoptObject, size: source.verified.size };
      return this.#receiveVerified(source, object, source.verified);
    }
    const deps = this.#deps;
    const id = newId();
    const key = originalKey(id);
    const used = deps.quotaBytes === null ? 0 : await deps.repo.usedBytes(source.owner, source.reservations);
    const sniffer = new TypeSniffer(deps.policy);
    const meter = new Meter({
      maxBytes: deps.maxUploadBytes,
      quotaRoom: deps.quotaBytes === null ? null : Math.max(0, deps.quotaBytes - used),
    });
    let writer: BlobWriter | undefined;
    let scan: ScanSession | undefined;
    let spool: string | undefined;
    // A failure of the incoming stream itself (a cut-off or malformed body) is the client's; it
    // may also have failed before it reached us (then `errored` says so).
    let sourceError: unknown;
    // Whichever stream failed first is where the failure began: the pipeline then destroys the
    // others with the same error, so the error alone cannot tell a cut-off body from a storage
    // that stopped taking bytes (an object store refusing or unreachable).
    let failedFirst: 'source' | 'storage' | undefined;
    source.stream.on('error', (error) => {
      sourceError ??= error;
      failedFirst ??= 'source';
    });
    const cleanup = async () => {
      scan?.abort();
      await writer?.abort();
      if (spool) await fsp.rm(spool, { force: true });
    };
    try {
      writer = source.adoptFile
        ? new AdoptingWriter(deps.storage, key, { file: source.adoptFile })
        : deps.storage.createWriter(key);
      writer.stream.on('error', () => {
        // A body that failed before it reached us (`errored`) failed first, whatever comes after.
        failedFirst ??= source.stream.errored || source.stream.destroyed ? 'source' : 'storage';
      });
      const blobFile = writer.tempPath;
      scan = deps.scanner.start();
      meter.tee(scan.stream);
      // Metadata is read from a local file: the blob's own temp file on local disk, else a spool.
      sniffer.once('type', ({ mime }: { mime: string }) => {
        if (blobFile === null && deps.metadata.needsFile(kindOf(mime))) {
          spool = path.join(deps.spoolDir, `${id}.spool`);
          meter.tee(fs.createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
        }
      });
      await pipeline(source.stream, sniffer, meter, writer.stream);
      // A parser that stops at its own size limit ends the stream early instead of failing it.
      if ((source.stream as { truncated?: unknown }).truncated === true) throw tooLarge(deps.maxUploadBytes);
      const verdict = await scan.verdict();
      if (!verdict.clean) {
        throw new AppError('MALWARE_DETECTED', undefined, { details: { signature: verdict.signature } });
      }
      const { mime } = sniffer.type;
      const meta = await deps.metadata.read(spool ?? blobFile, mime);
      return this.#staged(source, {
        id,
        mime,
        size: meter.bytes,
        sha256: meter.sha256,
        meta,
        writer,
        cleanup,
        spool,
      });
    } catch (error) {
      await cleanup().catch(() => undefined);
      const appError =
        failedFirst === 'storage'
          ? asStorageError(error)
          : asUploadError(error, sourceError ?? source.stream.errored ?? undefined);
      await this.#refused(source, appError.code);
      throw appError;
    }
  }

  /**
   * The same checks for a file whose bytes were already counted, hashed, typed and scanned as
   * they arrived: only what needs the whole file (the verdict, image metadata) is left to do.
   */
  async #receiveVerified(
    source: IngestSource,
    adopted: AdoptedSource,
    verified: VerifiedFile,
  ): Promise<StagedUpload> {
    const deps = this.#deps;
    const id = newId();
    const writer = new AdoptingWriter(deps.storage, originalKey(id), adopted);
    const cleanup = () => writer.abort();
    try {
      if (verified.size > deps.maxUploadBytes) throw tooLarge(deps.maxUploadBytes);
      if (deps.quotaBytes !== null) {
        const used = await deps.repo.usedBytes(source.owner, source.reservations);
        if (used + verified.size > deps.quotaBytes) throw new AppError('QUOTA_EXCEEDED');
      }
      if (!deps.policy.allows(verified.mime)) {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Files of type ${verified.mime} are not accepted.`, {
          details: { detectedType: verified.mime },
        });
      }
      if (!verified.verdict.clean) {
        throw new AppError('MALWARE_DETECTED', undefined, {
          details: { signature: verified.verdict.signature },
        });
      }
      // Metadata readers take what they need of the file (a tiny decode, a probe, one frame), from
      // a local file: the tus endpoint adopts an S3 object only for kinds that need none.
      const meta = await deps.metadata.read('file' in adopted ? adopted.file : null, verified.mime);
      writer.stream.end();
      return this.#staged(source, { ...verified, id, meta, writer, cleanup, spool: undefined });
    } catch (error) {
      await cleanup().catch(() => undefined);
      const appError = asUploadError(error);
      await this.#refused(source, appError.code);
      throw appError;
    }
  }

  /** Counts a refused upload and records it in the audit log (see AuditLog.record). */
  async #refused(source: IngestSource, code: string): Promise<void> {
    this.#deps.metrics.uploads.inc({ path: source.via, outcome: code });
    await this.#deps.audit?.record({
      actor: source.owner,
      action: 'upload_refused',
      target: null,
      ip: source.ip ?? null,
      outcome: code,
    });
  }

  #staged(
    source: IngestSource,
    file: {
      id: string;
      mime: string;
      size: number;
      sha256: string;
      meta: ItemMetadata;
      writer: BlobWriter;
      /** Aborts the scan and the writer (which removes a committed blob too) and the spool. */
      cleanup: () => Promise<void>;
      spool: string | undefined;
    },
  ): StagedUpload {
    const deps = this.#deps;
    let settled = false;
    const discard = async () => {
      if (settled) return;
      settled = true;
      await file.cleanup();
    };
    return {
      id: file.id,
      mimeType: file.mime,
      size: file.size,
      discard,
      commit: async (meta) => {
        if (settled) throw new Error('upload already settled');
        const now = Date.now();
        const record: MediaRecord = {
          id: file.id,
          owner: source.owner,
          filename: sanitizeFilename(source.filename),
          mimeType: file.mime,
          kind: kindOf(file.mime),
          size: file.size,
          sha256: file.sha256,
          visibility: meta.visibility,
          tags: meta.tags,
          width: file.meta.width,
          height: file.meta.height,
          createdAt: now,
          updatedAt: now,
          takenAt: file.meta.takenAt,
          placeholder: file.meta.placeholder,
          media: file.meta.media,
          exif: file.meta.exif,
          metadataVersion: file.meta.metadataVersion,
        };
        try {
          await file.writer.commit().catch((error: unknown) => {
            throw asStorageError(error);
          });
          const audit = deps.audit?.entry({
            actor: source.owner,
            action: 'upload',
            target: record.id,
            ip: source.ip ?? null,
            outcome: 'ok',
          });
          await deps.repo.insert(record, deps.quotaBytes, source.reservations, audit);
        } catch (error) {
          // The row never came to be: aborting the writer also removes a blob already committed.
          await discard().catch(() => undefined);
          const appError = asUploadError(error);
          await this.#refused(source, appError.code);
          throw appError;
        }
        settled = true;
        // Not cleanup(): aborting a committed writer would delete the stored blob.
        if (file.spool) await fsp.rm(file.spool, { force: true }).catch(() => undefined);
        deps.metrics.uploads.inc({ path: source.via, outcome: 'stored' });
        deps.metrics.uploadedBytes.inc(file.size);
        deps.stored?.(record);
        return record;
      },
    };
  }
}

/**
 * Client disconnects and stream errors become contract errors; our own errors pass through. A full
 * disk (or quota, or file size limit) is 507, whichever write hit it: the blob, the spool, a copy.
 * `sourceError` is what the incoming stream itself failed with, if it did: a body that was cut off
 * or is malformed (e.g. multipart data ending without its closing boundary) is a bad request.
 */
/**
 * A failure of the storage while it took the bytes: the server's, never the client's. An object
 * store that refuses or cannot be reached is a dependency that is down (503, try again); a local
 * file system error other than a full disk is a fault of this server (500).
 */
function asStorageError(error: unknown): AppError {
  if (isAppError(error)) return error;
  if (isStorageFull(error)) return new AppError('INSUFFICIENT_STORAGE', undefined, { cause: error });
  const fromObjectStore = typeof error === 'object' && error !== null && '$metadata' in error;
  if (fromObjectStore || isDependencyFailure(error)) return new DependencyUnavailableError('storage', error);
  return new AppError('INTERNAL', undefined, { cause: error });
}

function asUploadError(error: unknown, sourceError?: unknown): AppError {
  if (isAppError(error)) return error;
  // Checked first: a write that fails for lack of room also fails the incoming stream (the
  // pipeline destroys it with the same error), but the disk is full, not the body malformed.
  if (isStorageFull(error)) return new AppError('INSUFFICIENT_STORAGE', undefined, { cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'FST_REQ_FILE_TOO_LARGE')
    return new AppError('PAYLOAD_TOO_LARGE', undefined, { cause: error });
  if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'ECONNABORTED') {
    return new AppError('BAD_REQUEST', 'The upload was interrupted.', { cause: error });
  }
  if (sourceError !== undefined && error === sourceError) {
    return new AppError('BAD_REQUEST', 'The upload was interrupted or its body is malformed.', {
      cause: error,
    });
  }
  return new AppError('INTERNAL', undefined, { cause: error });
}
