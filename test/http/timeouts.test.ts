import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startListeningApp, type ListeningApp, PASSWORDS } from '../helpers/app.ts';
import { expectErrorShape } from '../helpers/contract.ts';
import { KiB, MiB, sha256, until, type MediaItem } from '../helpers/common.ts';
import {
  expectNothingStored,
  multipart,
  MULTIPART_TAIL,
  MULTIPART_TYPE,
  partHead,
  pdfOfSize,
  pdfStream,
  startMediaApp,
  streamUpload,
  type MediaApp,
} from '../media/media-helpers.ts';
import { closedWithin, parseResponse, RawConnection, type ParsedResponse } from './raw-socket.ts';

/**
 * Finding 5 of the security review: a client that sends slowly, or stops sending, must not hold a
 * connection (and what a request holds) for ever. Over real sockets, with the timeouts set short.
 */

/** A must-not-hang bound: far above the 1–2 s timeouts, far below "for ever". */
const CLOSED_WITHIN_MS = 8000;

function expect408(response: ParsedResponse): void {
  expectErrorShape(
    { status: response.status, contentType: response.headers['content-type'], text: response.body },
    408,
    'REQUEST_TIMEOUT',
  );
  expect(response.headers.connection).toBe('close');
  expect(response.headers['x-content-type-options']).toBe('nosniff');
  expect(response.headers['x-request-id']).toMatch(/./);
}

describe('small bodies and headers', () => {
  let t: ListeningApp;
  beforeAll(async () => {
    // Idle longer than the body deadline: only the deadline can end a trickle that never pauses.
    t = await startListeningApp({ STOWAGE_BODY_TIMEOUT: '1', STOWAGE_IDLE_TIMEOUT: '3' });
  });
  afterAll(() => t.close());

  it('answers 408 to a login body trickled past the body deadline, then closes the connection', async () => {
    const body = JSON.stringify({ username: 'alice', password: PASSWORDS.alice });
    const connection = await RawConnection.open(t.port);
    connection.write(
      'POST /api/auth/login HTTP/1.1\r\nHost: stowage\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${body.length}\r\n\r\n`,
    );
    // One byte every 300 ms: never idle, but the whole body would take 15 s.
    const sending = connection.trickle(body, 300);
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    expect(await sending).toBeLessThan(body.length);
    expect408(parseResponse(exchange.received));
  });

  it('still serves a small body sent in a few pieces within the deadline', async () => {
    const body = JSON.stringify({ username: 'alice', password: PASSWORDS.alice });
    const connection = await RawConnection.open(t.port);
    connection.write(
      'POST /api/auth/login HTTP/1.1\r\nHost: stowage\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    );
    connection.write(body.slice(0, 10));
    await new Promise((resolve) => setTimeout(resolve, 100));
    connection.write(body.slice(10));
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    expect(parseResponse(exchange.received).status).toBe(200);
  });

  it('answers 408 to headers that stop half-way, then closes the connection', async () => {
    const connection = await RawConnection.open(t.port);
    connection.write('GET /healthz HTTP/1.1\r\nHost: stow');
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    expect408(parseResponse(exchange.received));
  });

  it('answers 408 to headers trickled slower than the deadline allows (slowloris)', async () => {
    const connection = await RawConnection.open(t.port);
    const headers = 'GET /healthz HTTP/1.1\r\nHost: stowage\r\nX-Slow: ' + 'a'.repeat(40) + '\r\n\r\n';
    const sending = connection.trickle(headers, 200);
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    expect(await sending).toBeLessThan(headers.length);
    expect408(parseResponse(exchange.received));
  });

  it('closes a connection on which nothing is ever sent', async () => {
    const connection = await RawConnection.open(t.port);
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    // There was no request to answer.
    expect(exchange.received).toBe('');
  });

  it.each([
    ['an unparsable request line', 'NOT HTTP AT ALL\r\n\r\n'],
    [
      'headers past the size limit',
      `GET /healthz HTTP/1.1\r\nHost: stowage\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    ],
  ])('answers %s with 400 BAD_REQUEST in the contract’s shape, then closes', async (_what, request) => {
    const connection = await RawConnection.open(t.port);
    connection.write(request);
    const response = parseResponse((await closedWithin(connection, CLOSED_WITHIN_MS)).received);
    expectErrorShape(
      { status: response.status, contentType: response.headers['content-type'], text: response.body },
      400,
      'BAD_REQUEST',
    );
    expect(response.headers.connection).toBe('close');
  });

  it('keeps serving everyone else meanwhile', async () => {
    const stalled = await RawConnection.open(t.port);
    stalled.write('POST /api/auth/login HTTP/1.1\r\nHost: stowage\r\nContent-Length: 100\r\n\r\n{');
    const res = await fetch(`${t.base}/healthz`);
    expect(res.status).toBe(200);
    await closedWithin(stalled, CLOSED_WITHIN_MS);
  });
});

describe('transfers that stall', () => {
  let app: MediaApp;
  beforeAll(async () => {
    app = await startMediaApp({ STOWAGE_BODY_TIMEOUT: '1', STOWAGE_IDLE_TIMEOUT: '1' });
  });
  afterAll(() => app.close());

  const uploadHead = (contentLength: number) =>
    'POST /api/media/upload HTTP/1.1\r\nHost: stowage\r\n' +
    `Authorization: Bearer ${app.tokens.alice}\r\nContent-Type: ${MULTIPART_TYPE}\r\n` +
    `Content-Length: ${contentLength}\r\n\r\n`;

  it('answers 408 to a multipart upload that stops mid-body, and leaves nothing behind', async () => {
    const file = pdfOfSize(4 * MiB);
    const head = partHead({ name: 'file', filename: 'stalled.pdf' });
    const connection = await RawConnection.open(app.port);
    connection.write(uploadHead(head.length + file.length + MULTIPART_TAIL.length));
    connection.write(head);
    // Send, never pausing for long, until the server is writing the file: there is then a temp
    // file to clean up. Then stop sending, with most of the body still to come.
    let sent = 0;
    while ((await app.leftovers()).incomplete.length === 0) {
      expect(sent, 'no temp file appeared').toBeLessThan(file.length / 2);
      connection.write(file.subarray(sent, sent + 64 * KiB));
      sent += 64 * KiB;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    expect408(parseResponse(exchange.received));
    await expectNothingStored(app);
    // The server is fine afterwards, and the upload can be made again.
    const item = await app.uploadFile(pdfOfSize(64 * KiB), 'again.pdf');
    expect(item.size).toBe(64 * KiB);
    await app.api('DELETE', `/api/media/${item.id}`);
  });

  it('lets an upload take longer than the body deadline while its bytes keep coming', async () => {
    const file = pdfOfSize(256 * KiB);
    const { body } = multipart([{ name: 'file', filename: 'slow.pdf', data: file }]);
    const connection = await RawConnection.open(app.port);
    connection.write(uploadHead(body.length).replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
    // Eight pieces 400 ms apart: about 3 s in all, three times the body deadline, never idle.
    const piece = Math.ceil(body.length / 8);
    for (let at = 0; at < body.length; at += piece) {
      connection.write(body.subarray(at, at + piece));
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    const response = parseResponse((await closedWithin(connection, CLOSED_WITHIN_MS)).received);
    expect(response.status, response.body).toBe(201);
    const item = JSON.parse(response.body) as MediaItem;
    expect(item.sha256).toBe(sha256(file));
    await app.api('DELETE', `/api/media/${item.id}`);
  });
  it('closes a download whose client stops reading', async () => {
    const file = pdfOfSize(32 * MiB);
    const item = await app.uploadFile(file, 'big.pdf');
    const connections = () =>
      new Promise<number>((resolve, reject) =>
        app.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
      );
    const before = await connections();
    const connection = await RawConnection.open(app.port);
    // Read nothing: the response fills every buffer on the way and the server can send no more.
    connection.socket.pause();
    connection.write(
      `GET ${item.urls.content} HTTP/1.1\r\nHost: stowage\r\nAuthorization: Bearer ${app.tokens.alice}\r\n\r\n`,
    );
    await until(async () => (await connections()) === before + 1, 5000, 'the connection to open');
    await until(async () => (await connections()) === before, CLOSED_WITHIN_MS, 'the server to close it');
    connection.destroy();
    await app.api('DELETE', `/api/media/${item.id}`);
  });
});

describe('a tus PATCH that stops sending', () => {
  let t: ListeningApp;
  beforeAll(async () => {
    t = await startListeningApp({ STOWAGE_BODY_TIMEOUT: '1', STOWAGE_IDLE_TIMEOUT: '1' });
  });
  afterAll(() => t.close());

  const tus = (method: string, url: string, headers: Record<string, string>, body?: Buffer) =>
    fetch(`${t.base}${url}`, {
      method,
      headers: { authorization: `Bearer ${t.tokens.alice}`, 'tus-resumable': '1.0.0', ...headers },
      ...(body ? { body } : {}),
    });

  it('is cut off, holds no lock, and the upload resumes from a consistent offset', async () => {
    const file = pdfOfSize(2 * MiB);
    const created = await tus('POST', '/api/media/uploads', { 'upload-length': String(file.length) });
    expect(created.status).toBe(201);
    const upload = new URL(created.headers.get('location') ?? '', t.base).pathname;

    const connection = await RawConnection.open(t.port);
    connection.write(
      `PATCH ${upload} HTTP/1.1\r\nHost: stowage\r\nAuthorization: Bearer ${t.tokens.alice}\r\n` +
        'Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n' +
        `Content-Length: ${file.length}\r\n\r\n`,
    );
    const stalledAt = 768 * KiB;
    connection.write(file.subarray(0, stalledAt));
    const exchange = await closedWithin(connection, CLOSED_WITHIN_MS);
    // Nothing of the response had been sent: the client is told why before the connection closes.
    expect408(parseResponse(exchange.received));

    // No lock is left behind: the upload answers at once, at an offset that holds exactly the
    // bytes stored, and takes the rest from there.
    const started = Date.now();
    const head = await tus('HEAD', upload, {});
    expect(head.status).toBe(200);
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset).toBeLessThanOrEqual(stalledAt);
    const rest = await tus(
      'PATCH',
      upload,
      { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
      file.subarray(offset),
    );
    expect(rest.status, await rest.clone().text()).toBe(204);
    expect(Date.now() - started).toBeLessThan(5000);
    const id = rest.headers.get('media-id');
    const item = await fetch(`${t.base}/api/media/${id}`, { headers: t.auth(t.tokens.alice) });
    expect(((await item.json()) as MediaItem).sha256).toBe(sha256(file));
  });
});

/**
 * A stand-in for clamd that either stops reading for `stallMs` before it scans, or reads at once
 * and takes `stallMs` to give its verdict (OK).
 */
async function slowScanner(
  mode: 'stops reading' | 'is slow to answer',
  stallMs: number,
): Promise<net.Server> {
  const clamd = net.createServer((socket) => {
    let tail = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      tail = Buffer.concat([tail, data]).subarray(-4);
      if (!tail.equals(Buffer.alloc(4))) return;
      if (mode === 'is slow to answer') setTimeout(() => socket.end('stream: OK\0'), stallMs);
      else socket.end('stream: OK\0');
    });
    socket.on('error', () => undefined);
    if (mode === 'stops reading') {
      socket.pause();
      setTimeout(() => socket.resume(), stallMs);
    }
  });
  await new Promise<void>((resolve) => clamd.listen(0, '127.0.0.1', resolve));
  return clamd;
}

describe('uploads the server itself holds up', () => {
  // Three idle periods: long enough that a server mistaking its own delay for the client's would
  // have cut the upload off.
  const stallMs = 3000;

  it.each([
    // The upload's bytes back up through the server to the client: nothing arrives meanwhile.
    ['stops reading', 48 * MiB],
    // Every byte is in; the answer waits for the verdict.
    ['is slow to answer', 256 * KiB],
  ] as const)('are not cut off when the scanner %s (backpressure is not idleness)', async (mode, size) => {
    const clamd = await slowScanner(mode, stallMs);
    const app = await startMediaApp({
      STOWAGE_IDLE_TIMEOUT: '1',
      STOWAGE_BODY_TIMEOUT: '1',
      STOWAGE_CLAMD: `tcp://127.0.0.1:${(clamd.address() as net.AddressInfo).port}`,
    });
    try {
      const result = await streamUpload({
        port: app.port,
        token: app.tokens.alice,
        filename: 'held-back.pdf',
        chunks: pdfStream(size),
      });
      expect({ status: result.status, body: result.status === 201 ? '' : result.body }).toEqual({
        status: 201,
        body: '',
      });
      expect((JSON.parse(result.body) as MediaItem).size).toBe(size);
    } finally {
      await app.close();
      await new Promise((resolve) => clamd.close(resolve));
    }
  });
});
