import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { Server, type ServerOptions } from '@tus/server';
import type { DataStore, Locker, Upload } from '@tus/utils';
import type { Logger } from 'pino';
import { AppError, isAppError } from '../../errors.ts';
import type { Ingest } from '../ingest.ts';
import type { MediaRepo } from '../../media/media-repo.ts';
import { newId } from '../../media/signing.ts';
import { parseTagList } from '../../media/tags.ts';
import type { TypePolicy } from '../file-types.ts';
import { HeadSniffer } from './head-sniffer.ts';

/**
 * A tus data store that can also stream back a finished upload (file and S3 stores can) and,
 * on local disk, say where its file is, so a finished upload is moved rather than copied.
 */
export type ReadableDataStore = DataStore & {
  read(id: string): Readable | Promise<Readable>;
  localFile?(id: string): string;
};

export interface TusDeps {
  datastore: ReadableDataStore;
  locker?: Locker;
  ingest: Ingest;
  repo: MediaRepo;
  policy: TypePolicy;
  maxUploadBytes: number;
  quotaBytes: number | null;
  expirySeconds: number;
  logger: Logger;
}

export const TUS_PATH = '/api/media/uploads';
const ID_RE = /^[A-Za-z0-9_-]{22}$/;
const KNOWN_METADATA = ['filename', 'filetype', 'visibility', 'tags'];

interface RequestState {
  owner: string;
  /** The upload the route authorised for this request (none for creation and discovery). */
  id: string | undefined;
  sniffer?: HeadSniffer;
  /** The upload this request created (a refused creation-with-upload answers without Location). */
  created?: string;
  /** The upload this request completed and stored; its tus copy goes once tus has answered. */
  finished?: string;
  /** Our own refusal (quota, type, malware…), answered as it is rather than in tus's words. */
  error?: AppError;
}

/** tus's answer, and our own error when we refused the request. */
export interface TusOutcome {
  response: Response;
  error: AppError | undefined;
}

/**
 * The tus 1.0 endpoint (@tus/server) behind our authentication. Each upload has a reservation
 * row, which is both its owner and its hold on the owner's quota until it completes, expires or
 * is terminated. The first bytes are sniffed as they arrive; the finished file goes through the
 * same ingest pipeline as a multipart upload, and the tus copy is removed either way.
 */
export class TusUploads {
  readonly server: Server;
  readonly #deps: TusDeps;
  readonly #requests = new WeakMap<Request, RequestState>();

  constructor(deps: TusDeps) {
    this.#deps = deps;
    const options: Omit<ServerOptions, 'locker'> & { datastore: DataStore; locker?: Locker } = {
      path: TUS_PATH,
      datastore: deps.datastore,
      relativeLocation: true,
      maxSize: deps.maxUploadBytes,
      namingFunction: () => newId(),
      // The id is the one the route authorised, taken from the path alone, never from what tus
      // finds at the end of the URL; anything else is no upload at all (404).
      getFileIdFromRequest: (req, last) => {
        const authorised = this.#requests.get(req)?.id;
        return authorised !== undefined && last === authorised ? authorised : undefined;
      },
      onUploadCreate: (req, upload) => this.#onCreate(req, upload),
      onUploadFinish: (req, upload) => this.#onFinish(req, upload),
      onResponseError: (req, error) => {
        if (isAppError(error)) {
          const state = this.#requests.get(req);
          if (state) state.error = error;
          return { status_code: error.status, body: error.message };
        }
        // tus's own protocol errors carry a status; anything else is a failure of ours or the store's.
        if (!('status_code' in error) || error.status_code >= 500)
          deps.logger.error({ err: error }, 'resumable upload failed');
        return undefined;
      },
      ...(deps.locker ? { locker: deps.locker } : {}),
    };
    this.server = new Server(options);
  }

  /** 404 unless the upload exists and belongs to `owner`: others' uploads are invisible. */
  async assertOwner(id: string, owner: string): Promise<void> {
    const holder = ID_RE.test(id) ? await this.#deps.repo.reservationOwner(id) : undefined;
    if (holder !== owner) throw new AppError('NOT_FOUND', 'No such upload.');
  }

  /**
   * Hands the request to tus. `id` is the upload the route authorised from its path: tus gets a
   * URL rebuilt from it alone, so nothing else in the client's URL (a query string, an encoded
   * slash, a dot segment) can point tus at another upload.
   */
  async handle(raw: IncomingMessage, owner: string, id?: string): Promise<TusOutcome> {
    const method = raw.method ?? 'GET';
    if (id !== undefined && !ID_RE.test(id)) throw new AppError('NOT_FOUND', 'No such upload.');
    const state: RequestState = { owner, id };
    const url = id === undefined ? TUS_PATH : `${TUS_PATH}/${id}`;
    const request = new Request(`http://stowage.invalid${url}`, {
      method,
      headers: headersOf(raw),
      ...this.#body(raw, method, state),
    });
    this.#requests.set(request, state);
    let response: Response;
    try {
      response = await this.server.handleWeb(request);
    } finally {
      if (state.finished) await this.#removeFinished(state.finished);
    }
    const rejected = state.sniffer?.rejection;
    if (rejected) {
      const target = state.created ?? id;
      if (target) await this.#discard(target);
    }
    // Refused before its body was read to the end (wrong type, offset, size): nothing reads the
    // rest, so the connection cannot carry another request. Closing it lets the client stop
    // sending; kept open, it would hang until a timeout (and hold up a graceful shutdown).
    if (!raw.complete && (method === 'PATCH' || method === 'POST'))
      response.headers.set('Connection', 'close');
    if (!rejected && method === 'DELETE' && response.status === 204 && id !== undefined) {
      await this.#deps.repo.release(id);
    }
    return { response, error: rejected ?? state.error };
  }

  /** The request body, sniffed on its way through when it starts at byte 0. */
  #body(
    raw: IncomingMessage,
    method: string,
    state: RequestState,
  ): { body?: ReadableStream; duplex?: 'half' } {
    const carriesBytes =
      (method === 'PATCH' || method === 'POST') &&
      raw.headers['content-type'] === 'application/offset+octet-stream';
    if (!carriesBytes) return {};
    let source: Readable = raw;
    if (method === 'POST' || raw.headers['upload-offset'] === '0') {
      const sniffer = new HeadSniffer(this.#deps.policy);
      state.sniffer = sniffer;
      raw.once('error', (error) => sniffer.destroy(error));
      source = raw.pipe(sniffer);
    }
    return { body: Readable.toWeb(source) as ReadableStream, duplex: 'half' };
  }

  async #onCreate(req: Request, upload: Upload): Promise<{ metadata?: Upload['metadata'] }> {
    const state = this.#state(req);
    if (upload.size === undefined) {
      throw new AppError('VALIDATION_FAILED', 'Upload-Length is required.', {
        details: {
          issues: [
            { path: 'headers.upload-length', message: 'is required; deferred lengths are not supported' },
          ],
        },
      });
    }
    const metadata = Object.fromEntries(
      Object.entries(upload.metadata ?? {}).filter(([key]) => KNOWN_METADATA.includes(key)),
    );
    const visibility = metadata.visibility ?? 'private';
    if (visibility !== 'private' && visibility !== 'public') {
      throw new AppError('VALIDATION_FAILED', undefined, {
        details: { issues: [{ path: 'metadata.visibility', message: 'must be private or public' }] },
      });
    }
    parseTagList(metadata.tags ?? '');
    const expiresAt = Date.now() + this.#deps.expirySeconds * 1000;
    await this.#deps.repo.reserve(upload.id, state.owner, upload.size, expiresAt, this.#deps.quotaBytes);
    state.created = upload.id;
    return { metadata };
  }

  async #onFinish(req: Request, upload: Upload): Promise<{ headers: Record<string, string> }> {
    const state = this.#state(req);
    // Defence in depth: only the upload this request was authorised for (or created) is stored.
    if (upload.id !== (state.id ?? state.created)) throw new AppError('NOT_FOUND', 'No such upload.');
    // tus releases its lock before this hook, so a second request at the final offset (an empty
    // PATCH, a retry, on any instance) could get here too: only the one that claims it stores it.
    if (!(await this.#deps.repo.claimCompletion(upload.id))) {
      throw new AppError('CONFLICT', 'This upload is already being completed.');
    }
    const metadata = upload.metadata ?? {};
    try {
      const adoptFile = this.#deps.datastore.localFile?.(upload.id);
      const staged = await this.#deps.ingest.receive({
        // Read in 1 MiB chunks: this pass hashes and scans the whole file before it is kept.
        stream: adoptFile
          ? fs.createReadStream(adoptFile, { highWaterMark: 1024 * 1024 })
          : await this.#deps.datastore.read(upload.id),
        adoptFile,
        owner: state.owner,
        filename: metadata.filename ?? undefined,
        via: 'tus',
        reservationId: upload.id,
      });
      const item = await staged.commit({
        visibility: metadata.visibility === 'public' ? 'public' : 'private',
        tags: parseTagList(metadata.tags ?? ''),
      });
      // Not removed here: after this hook, tus still reads the upload back to answer a creation
      // request (creation-with-upload), and would answer 404 if it were already gone.
      state.finished = upload.id;
      return { headers: { 'Media-Id': item.id } };
    } catch (error) {
      await this.#discard(upload.id);
      throw error;
    }
  }

  async #removeFinished(id: string): Promise<void> {
    await this.#deps.datastore.remove(id).catch((error: unknown) => {
      this.#deps.logger.warn({ err: error, upload: id }, 'could not remove a finished tus upload');
    });
  }

  async #discard(id: string): Promise<void> {
    await this.#deps.datastore.remove(id).catch(() => undefined);
    await this.#deps.repo.release(id);
  }

  #state(req: Request): RequestState {
    const state = this.#requests.get(req);
    if (!state) throw new Error('tus request without a caller');
    return state;
  }

  /** Removes expired unfinished uploads (their reservations lapse by themselves). */
  async sweepExpired(): Promise<number> {
    return this.server.cleanUpExpiredUploads();
  }
}

function headersOf(raw: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return headers;
}
