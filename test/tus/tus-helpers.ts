import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import * as tus from 'tus-js-client';
import { expect } from 'vitest';
import { startListeningApp, type ListeningApp, type TestAppOptions } from '../helpers/app.ts';
import { FIXTURES, readResponse, type MediaItem, type RawResponse, type User } from '../helpers/common.ts';
import type { ErrorBody } from '../helpers/contract.ts';

/** A listening app for the resumable-upload tests, spoken to over real HTTP. */

export {
  KiB,
  MiB,
  FIXTURES,
  pdfOfSize,
  sha256,
  type MediaItem,
  type RawResponse,
  type User,
} from '../helpers/common.ts';
export const TUS = '/api/media/uploads';
/** The protocol version header every tus request but discovery carries. */
export const TUS_HEADER = { 'tus-resumable': '1.0.0' } as const;

export interface TusApp extends ListeningApp {
  endpoint: string;
  bearer(user: User): { authorization: string };
  /** A raw request over HTTP (fetch), as alice unless `as` says otherwise; `as: null` sends no token. */
  request(
    method: string,
    url: string,
    options?: { as?: User | null; headers?: Record<string, string>; body?: Buffer | string },
  ): Promise<Response>;
  /** Creates an upload with raw tus headers and returns its path (`/api/media/uploads/ID`). */
  create(length: number, options?: { as?: User; metadata?: Record<string, string> }): Promise<string>;
  /** The files in the tus store's directory (data files and their `.json` info). */
  uploadFiles(): Promise<string[]>;
  reservations(): Promise<{ id: string; username: string; bytes: number }[]>;
  /** Every file under the blob store (stored items, renditions, unfinished writes). */
  blobFiles(): Promise<string[]>;
  mediaList(as?: User): Promise<MediaItem[]>;
}

export async function startTusApp(
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<TusApp> {
  const t = await startListeningApp(env, options);
  const { base, tokens } = t;
  const bearer = (user: User) => ({ authorization: `Bearer ${tokens[user]}` });
  const tusApp: TusApp = {
    ...t,
    base,
    endpoint: `${base}${TUS}`,
    tokens,
    bearer,
    request(method, url, options = {}) {
      const auth = options.as === null ? {} : bearer(options.as ?? 'alice');
      return fetch(`${base}${url}`, {
        method,
        headers: { ...auth, ...options.headers },
        ...(options.body === undefined ? {} : { body: options.body }),
      });
    },
    async create(length, options = {}) {
      const res = await tusApp.request('POST', TUS, {
        as: options.as ?? 'alice',
        headers: {
          'tus-resumable': '1.0.0',
          'upload-length': String(length),
          ...(options.metadata ? { 'upload-metadata': encodeMetadata(options.metadata) } : {}),
        },
      });
      if (res.status !== 201) throw new Error(`creation failed: ${res.status} ${await res.text()}`);
      const location = res.headers.get('location') ?? '';
      return new URL(location, base).pathname;
    },
    async uploadFiles() {
      return (await fs.readdir(path.join(t.dir, 'uploads'))).sort();
    },
    async reservations() {
      const rows = await t.services.database.db.selectFrom('reservations').selectAll().execute();
      return rows.map((r) => ({ id: r.id, username: r.username, bytes: Number(r.bytes) }));
    },
    async blobFiles() {
      const dir = path.join(t.dir, 'blobs');
      const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
      return entries
        .filter((e) => e.isFile())
        .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
    },
    async mediaList(as = 'alice') {
      const res = await tusApp.request('GET', '/api/media/list?limit=100', { as });
      expect(res.status).toBe(200);
      return ((await res.json()) as { items: MediaItem[] }).items;
    },
  };
  return tusApp;
}

/** PATCH headers for `offset`, with the tus version and the byte stream's content type. */
export function patchHeaders(offset: number): Record<string, string> {
  return {
    'tus-resumable': '1.0.0',
    'upload-offset': String(offset),
    'content-type': 'application/offset+octet-stream',
  };
}

export function encodeMetadata(metadata: Record<string, string>): string {
  return Object.entries(metadata)
    .map(([key, value]) => `${key} ${Buffer.from(value).toString('base64')}`)
    .join(',');
}

export { expectError } from '../helpers/contract.ts';

export type { ErrorBody };

export function fixture(name: string): Promise<Buffer> {
  return fs.readFile(path.join(FIXTURES, name));
}

/**
 * A request over a plain socket with the path sent exactly as given (fetch would resolve `..`).
 * With `hold`, the body is written but the request is left open: the response must come without
 * the rest of the body. The request is destroyed once the response is complete.
 */
export function rawRequest(
  app: TusApp,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer; hold?: boolean } = {},
): Promise<RawResponse> {
  const { port } = new URL(app.base);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method, path, headers: options.headers });
    request.on('error', reject);
    request.on('response', (response) => {
      readResponse(response).then((result) => {
        resolve(result);
        request.destroy();
      }, reject);
    });
    if (options.body) request.write(options.body);
    if (!options.hold) request.end();
  });
}

export interface TusOutcome {
  /** The Media-Id header of the response that completed the upload. */
  mediaId: string | undefined;
  /** The method of the request that response answered (PATCH, or POST with creation-with-upload). */
  completedBy: string | undefined;
  /** Every request the client made, in order. */
  methods: string[];
  url: string | null;
}

/** tus-js-client options for `as`, with retries off: a failure is reported, not retried. */
export function clientOptions(
  app: TusApp,
  as: User,
  extra: Partial<tus.UploadOptions> = {},
): tus.UploadOptions {
  return {
    endpoint: app.endpoint,
    headers: { Authorization: `Bearer ${app.tokens[as]}` },
    retryDelays: [],
    ...extra,
  };
}

/** Runs an upload with tus-js-client; resolves when it succeeds, rejects with its error. */
export function tusUpload(
  app: TusApp,
  data: Buffer,
  extra: Partial<tus.UploadOptions> = {},
  as: User = 'alice',
): Promise<TusOutcome> {
  return new Promise((resolve, reject) => {
    const outcome: TusOutcome = { mediaId: undefined, completedBy: undefined, methods: [], url: null };
    const client = new tus.Upload(
      data,
      clientOptions(app, as, {
        ...extra,
        onAfterResponse: (req, res) => {
          outcome.methods.push(req.getMethod());
          const id = res.getHeader('Media-Id');
          if (id) {
            outcome.mediaId = id;
            outcome.completedBy = req.getMethod();
          }
        },
        onSuccess: () => resolve({ ...outcome, url: client.url }),
        onError: (error) => reject(Object.assign(error, { outcome: { ...outcome, url: client.url } })),
      }),
    );
    client.start();
  });
}

/** An upload tus-js-client must fail: the server's status and error body, and the upload's url. */
export async function tusFailure(
  app: TusApp,
  data: Buffer,
  extra: Partial<tus.UploadOptions> = {},
  as: User = 'alice',
): Promise<{ status: number | undefined; body: ErrorBody | undefined; outcome: TusOutcome }> {
  try {
    await tusUpload(app, data, extra, as);
  } catch (error) {
    const { originalResponse, outcome } = error as tus.DetailedError & { outcome: TusOutcome };
    const text = originalResponse?.getBody();
    return {
      status: originalResponse?.getStatus(),
      body: text ? (JSON.parse(text) as ErrorBody) : undefined,
      outcome,
    };
  }
  throw new Error('the upload succeeded');
}
