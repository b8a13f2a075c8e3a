import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import { startListeningApp, type ListeningApp, type TestAppOptions } from '../helpers/app.ts';
import { FIXTURES, KiB, type MediaItem, type User } from '../helpers/common.ts';
import { eventually } from '../helpers/eventually.ts';

/** Shared helpers for the media tests: a listening app, multipart bodies, small real files. */

export { KiB, MiB, FIXTURES, sha256, type MediaItem, type User } from '../helpers/common.ts';

export interface MediaApp extends ListeningApp {
  /** A JSON request through app.inject, with alice's token unless `as` says otherwise. */
  api(method: string, url: string, options?: { as?: User | null; body?: unknown }): Promise<ApiResponse>;
  /** Uploads a multipart body built from `parts` (app.inject: the body is small). */
  upload(parts: Part[], as?: User | null): Promise<ApiResponse>;
  /** Uploads one file with default fields. */
  uploadFile(data: Buffer, filename?: string, as?: User, fields?: Record<string, string>): Promise<MediaItem>;
  leftovers(): Promise<Leftovers>;
  rows(): Promise<number>;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
  rawPayload: Buffer;
  json<T = any>(): T; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function startMediaApp(
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<MediaApp> {
  const t = await startListeningApp(env, options);
  const { tokens } = t;
  const headersFor = (as: User | null | undefined): Record<string, string> =>
    as === null ? {} : { authorization: `Bearer ${tokens[as ?? 'alice']}` };
  const wrap = (res: {
    statusCode: number;
    headers: ApiResponse['headers'];
    body: string;
    rawPayload: Buffer;
  }): ApiResponse => ({
    status: res.statusCode,
    headers: res.headers,
    body: res.body,
    rawPayload: res.rawPayload,
    json: <T>() => JSON.parse(res.body) as T,
  });
  const media: MediaApp = {
    ...t,
    async api(method, url, options = {}) {
      const res = await t.app.inject({
        method: method as 'GET',
        url,
        headers: headersFor(options.as),
        ...(options.body === undefined ? {} : { payload: options.body as object }),
      });
      return wrap(res);
    },
    async upload(parts, as) {
      const { body, contentType } = multipart(parts);
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/media/upload',
        headers: { ...headersFor(as), 'content-type': contentType },
        payload: body,
      });
      return wrap(res);
    },
    async uploadFile(data, filename = 'file.bin', as, fields = {}) {
      const parts: Part[] = Object.entries(fields).map(([name, value]) => ({ name, value }));
      parts.push({ name: 'file', filename, data });
      const res = await media.upload(parts, as);
      if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${res.body}`);
      return res.json<MediaItem>();
    },
    leftovers: () => leftovers(t.dir),
    async rows() {
      const row = await t.services.database.db
        .selectFrom('media')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
  };
  return media;
}

// ---------------------------------------------------------------------------------------------
// Multipart bodies

export type Part =
  | { name: string; value: string }
  | { name: string; filename: string; data: Buffer; type?: string; rawFilename?: Buffer };

export const BOUNDARY = '----stowage-test-boundary-7MA4YWxkTrZu0gW';

export function partHead(part: {
  name: string;
  filename: string;
  type?: string;
  rawFilename?: Buffer;
}): Buffer {
  const filename = part.rawFilename ?? Buffer.from(part.filename.replace(/"/g, '%22'), 'utf8');
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${part.name}"; filename="`),
    filename,
    Buffer.from(`"\r\nContent-Type: ${part.type ?? 'application/octet-stream'}\r\n\r\n`),
  ]);
}

export function multipart(parts: Part[]): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    if ('data' in part) {
      chunks.push(partHead(part), part.data, Buffer.from('\r\n'));
    } else {
      chunks.push(
        Buffer.from(
          `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${part.name}"\r\n\r\n${part.value}\r\n`,
        ),
      );
    }
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${BOUNDARY}` };
}

export const MULTIPART_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
export const MULTIPART_TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

// ---------------------------------------------------------------------------------------------
// Small real files

/** A minimal but well-formed PDF; `padding` bytes of filler keep sizes exact and distinct. */
export function pdf(padding = 0, text = 'hello'): Buffer {
  const head = `%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n% ${text}\n`;
  const tail = 'trailer\n<< /Root 1 0 R >>\n%%EOF\n';
  return Buffer.concat([Buffer.from(head), Buffer.alloc(padding, 0x20), Buffer.from(tail)]);
}

/** A PDF of exactly `size` bytes (at least 80). */
export function pdfOfSize(size: number): Buffer {
  const file = pdf(0);
  if (size < file.length) throw new Error(`a PDF needs at least ${file.length} bytes`);
  return pdf(size - file.length);
}

/** A PCM WAV file: 8 kHz mono 8-bit with `samples` samples of a square wave. */
export function wav(samples = 800): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + samples, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(8000, 24);
  header.writeUInt32LE(8000, 28);
  header.writeUInt16LE(1, 32);
  header.writeUInt16LE(8, 34);
  header.write('data', 36);
  header.writeUInt32LE(samples, 40);
  const data = Buffer.alloc(samples);
  for (let i = 0; i < samples; i++) data[i] = i % 20 < 10 ? 0x40 : 0xc0;
  return Buffer.concat([header, data]);
}

/** A tiny MP4 (just an ftyp and an empty mdat box): what video detection looks at. */
export function mp4(): Buffer {
  const ftyp = Buffer.alloc(24);
  ftyp.writeUInt32BE(24, 0);
  ftyp.write('ftypisom', 4);
  ftyp.writeUInt32BE(0x200, 12);
  ftyp.write('isommp41', 16);
  const mdat = Buffer.alloc(16);
  mdat.writeUInt32BE(16, 0);
  mdat.write('mdat', 4);
  return Buffer.concat([ftyp, mdat]);
}

export function png(width = 8, height = 6): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 40, b: 90 } } })
    .png()
    .toBuffer();
}

export function fixture(name: string): Promise<Buffer> {
  return fs.readFile(path.join(FIXTURES, name));
}

// ---------------------------------------------------------------------------------------------
// What is on disk

export interface Leftovers {
  /** Files under blobs/ (committed blobs), as paths relative to blobs/. */
  blobs: string[];
  /** Files in blobs/.incomplete (unfinished writes). */
  incomplete: string[];
  /** Files in the spool directory (tmp/). */
  spool: string[];
}

async function filesUnder(dir: string, skip?: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((rel) => skip === undefined || rel.split(path.sep)[0] !== skip)
    .sort();
}

export async function leftovers(dataDir: string): Promise<Leftovers> {
  const blobs = path.join(dataDir, 'blobs');
  return {
    blobs: await filesUnder(blobs, '.incomplete'),
    incomplete: await filesUnder(path.join(blobs, '.incomplete')),
    spool: await filesUnder(path.join(dataDir, 'tmp')),
  };
}

export const NOTHING: Leftovers = { blobs: [], incomplete: [], spool: [] };

export { eventually } from '../helpers/eventually.ts';

/** Asserts that nothing of any upload is left: no row, no blob, no temp or spool file. */
export async function expectNothingStored(app: MediaApp): Promise<void> {
  await eventually(async () => {
    expect(await app.leftovers()).toEqual(NOTHING);
  });
  expect(await app.rows()).toBe(0);
}

export { expectError } from '../helpers/contract.ts';

// ---------------------------------------------------------------------------------------------
// Streaming over a real socket

export interface StreamedResult {
  status: number | undefined;
  body: string;
  /** Set when the connection failed before a complete response arrived. */
  error: NodeJS.ErrnoException | undefined;
  /** File bytes written when the response (or the failure) arrived. */
  sent: number;
}

/**
 * POSTs a multipart upload over a real socket, with the file's bytes produced by `chunks` as the
 * request is written (with backpressure): nothing holds the whole file.
 */
export function streamUpload(options: {
  port: number;
  token: string;
  filename: string;
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>;
  /** Called with the request once `abortAfter` bytes of the file were written; the upload stops there. */
  abortAfter?: number;
  onAbortPoint?: (request: http.ClientRequest) => Promise<void> | void;
}): Promise<StreamedResult> {
  return new Promise((resolve) => {
    let settled = false;
    let status: number | undefined;
    let sent = 0;
    let sentAtResponse: number | undefined;
    const done = (result: Omit<StreamedResult, 'sent'>) => {
      if (settled) return;
      settled = true;
      // The server answered before the upload ended: stop sending.
      if (!request.writableEnded) request.destroy();
      resolve({ ...result, sent: sentAtResponse ?? sent });
    };
    const request = http.request({
      host: '127.0.0.1',
      port: options.port,
      method: 'POST',
      path: '/api/media/upload',
      headers: { authorization: `Bearer ${options.token}`, 'content-type': MULTIPART_TYPE },
    });
    request.on('response', (response) => {
      status = response.statusCode;
      sentAtResponse = sent;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => done({ status, body, error: undefined }));
      response.on('error', (error) => done({ status, body, error }));
    });
    request.on('error', (error) => done({ status, body: '', error }));
    const write = (chunk: Buffer) =>
      new Promise<boolean>((ok) => {
        if (request.destroyed || settled) return ok(false);
        if (request.write(chunk)) return ok(true);
        const onDrain = () => {
          request.off('close', onClose);
          ok(true);
        };
        const onClose = () => {
          request.off('drain', onDrain);
          ok(false);
        };
        request.once('drain', onDrain);
        request.once('close', onClose);
      });
    void (async () => {
      if (!(await write(partHead({ name: 'file', filename: options.filename })))) return;
      for await (const chunk of options.chunks as AsyncIterable<Buffer>) {
        if (options.abortAfter !== undefined && sent + chunk.length > options.abortAfter) {
          await write(chunk.subarray(0, options.abortAfter - sent));
          await options.onAbortPoint?.(request);
          return;
        }
        if (!(await write(chunk))) return;
        sent += chunk.length;
      }
      await write(MULTIPART_TAIL);
      request.end();
    })();
  });
}

/** `total` bytes of a PDF-typed file: a PDF header, then pseudo-random filler, chunk by chunk. */
export function* pdfStream(
  total: number,
  chunkBytes = 64 * KiB,
  insert?: { at: number; bytes: Buffer },
): Generator<Buffer> {
  const head = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1');
  const block = crypto.randomBytes(chunkBytes);
  // A few buffers reused in turn, so that producing the file makes no garbage of its own (that
  // would blur the memory measurements). A consumer must be done with a chunk before taking the
  // fourth after it: streamUpload is, since it waits for each write to be accepted.
  const ring = Array.from({ length: 4 }, () => Buffer.allocUnsafe(chunkBytes));
  for (let offset = 0, n = 0; offset < total; offset += chunkBytes, n++) {
    const chunk = ring[n % ring.length]!.subarray(0, Math.min(chunkBytes, total - offset));
    block.copy(chunk, 0, 0, chunk.length);
    if (chunk.length >= 4) chunk.writeUInt32BE(n >>> 0, 0); // every chunk differs from the others
    if (offset === 0) head.copy(chunk, 0, 0, Math.min(head.length, chunk.length));
    if (insert) {
      const start = insert.at - offset;
      if (start < chunk.length && start + insert.bytes.length > 0) {
        insert.bytes.copy(chunk, Math.max(start, 0), Math.max(-start, 0));
      }
    }
    yield chunk;
  }
}
