import { randomFillSync } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { ClamdScanner } from '../../src/scan/clamd.ts';

/** Peers that are not a working clamd: the scanner must fail closed against every one of them. */

const MiB = 1024 * 1024;
const peers: { server: Server; sockets: Set<Socket> }[] = [];

afterEach(async () => {
  await Promise.all(peers.splice(0).map(close));
});

/** close() waits for open connections, and these peers may hold theirs forever. */
function close(peer: { server: Server; sockets: Set<Socket> }): Promise<void> {
  peer.sockets.forEach((socket) => socket.destroy());
  return new Promise((resolve) => peer.server.close(() => resolve()));
}

async function fakeClamd(onConnection: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  peers.push({ server, sockets });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('no address');
  return `tcp://127.0.0.1:${address.port}`;
}

/** Reads the INSTREAM command and frames, then calls `onEnd` once the zero-length frame arrived. */
function readInstream(socket: Socket, onEnd: () => void): void {
  let buffered = Buffer.alloc(0);
  let commandSeen = false;
  socket.on('data', (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    if (!commandSeen) {
      const nul = buffered.indexOf(0);
      if (nul === -1) return;
      commandSeen = true;
      buffered = buffered.subarray(nul + 1);
    }
    while (buffered.length >= 4) {
      const length = buffered.readUInt32BE(0);
      if (length === 0) return onEnd();
      if (buffered.length < 4 + length) return;
      buffered = buffered.subarray(4 + length);
    }
  });
}

async function freePortUrl(): Promise<string> {
  const url = await fakeClamd(() => undefined);
  await close(peers.pop()!);
  return url;
}

async function scanText(scanner: ClamdScanner, text: string): Promise<unknown> {
  const session = scanner.start();
  // The pipeline may fail too (fail fast); the verdict is what must say why.
  await pipeline(Readable.from([Buffer.from(text)]), session.stream).catch(() => undefined);
  return session.verdict();
}

const unavailable = { code: 'SCANNER_UNAVAILABLE', status: 503 };

describe('ClamdScanner fails closed', () => {
  test('an unreachable port is unavailable, quickly', async () => {
    const scanner = new ClamdScanner({ url: await freePortUrl() });
    const started = Date.now();
    await expect(scanText(scanner, 'hello')).rejects.toMatchObject(unavailable);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('a missing unix socket is unavailable', async () => {
    const scanner = new ClamdScanner({ url: 'unix:/nonexistent/stowage/clamd.sock' });
    await expect(scanText(scanner, 'hello')).rejects.toMatchObject(unavailable);
  });

  test('a server that reads but never answers is unavailable after the idle timeout', async () => {
    const url = await fakeClamd((socket) => readInstream(socket, () => undefined));
    const scanner = new ClamdScanner({ url, idleTimeoutMs: 300 });
    const started = Date.now();
    await expect(scanText(scanner, 'hello')).rejects.toMatchObject(unavailable);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3000);
  });

  test('a server that never reads stalls the source (backpressure), then times out', async () => {
    const url = await fakeClamd((socket) => socket.pause());
    const scanner = new ClamdScanner({ url, idleTimeoutMs: 500 });
    const session = scanner.start();
    let produced = 0;
    const source = Readable.from(
      (function* () {
        for (; produced < 512 * MiB; produced += 64 * 1024)
          yield randomFillSync(Buffer.allocUnsafe(64 * 1024));
      })(),
    );
    await expect(pipeline(source, session.stream)).rejects.toMatchObject(unavailable);
    await expect(session.verdict()).rejects.toMatchObject(unavailable);
    // Only what the kernel's socket buffers and the stream's small buffer hold was ever read.
    expect(produced).toBeLessThan(64 * MiB);
  });

  test('a server that answers garbage is unavailable', async () => {
    const url = await fakeClamd((socket) => readInstream(socket, () => socket.end('HELLO THERE\0')));
    await expect(scanText(new ClamdScanner({ url }), 'hello')).rejects.toMatchObject(unavailable);
  });

  test('an ERROR reply is unavailable, not clean', async () => {
    const url = await fakeClamd((socket) =>
      readInstream(socket, () => socket.end("stream: Can't allocate memory ERROR\0")),
    );
    await expect(scanText(new ClamdScanner({ url }), 'hello')).rejects.toMatchObject(unavailable);
  });

  test('"OK" before the stream ended is not a verdict on the whole file', async () => {
    const url = await fakeClamd((socket) => {
      socket.on('data', () => undefined);
      socket.write('stream: OK\0');
    });
    const scanner = new ClamdScanner({ url });
    const session = scanner.start();
    const source = Readable.from(
      (async function* () {
        yield Buffer.from('first part');
        await new Promise((resolve) => setTimeout(resolve, 200));
        yield Buffer.from('second part');
      })(),
    );
    await pipeline(source, session.stream).catch(() => undefined);
    await expect(session.verdict()).rejects.toMatchObject(unavailable);
  });

  test('a reply cut off before its terminator is unavailable', async () => {
    const url = await fakeClamd((socket) => readInstream(socket, () => socket.end('stream: OK')));
    await expect(scanText(new ClamdScanner({ url }), 'hello')).rejects.toMatchObject(unavailable);
  });

  test('a connection closed mid-stream fails the pipeline instead of hanging it', async () => {
    const url = await fakeClamd((socket) => socket.once('data', () => socket.destroy()));
    const session = new ClamdScanner({ url }).start();
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 4096; i++) yield randomFillSync(Buffer.allocUnsafe(64 * 1024));
      })(),
    );
    await expect(pipeline(source, session.stream)).rejects.toMatchObject(unavailable);
    await expect(session.verdict()).rejects.toMatchObject(unavailable);
  });

  test('abort() ends the scan, is idempotent, and the verdict says unavailable', async () => {
    const url = await fakeClamd((socket) => readInstream(socket, () => socket.end('stream: OK\0')));
    const session = new ClamdScanner({ url }).start();
    session.stream.write('partial');
    session.abort();
    session.abort();
    expect(session.stream.destroyed).toBe(true);
    await expect(session.verdict()).rejects.toMatchObject(unavailable);
  });

  test('ping fails against an unreachable port and against a peer that is not clamd', async () => {
    await expect(new ClamdScanner({ url: await freePortUrl() }).ping()).rejects.toMatchObject(unavailable);
    const url = await fakeClamd((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await expect(new ClamdScanner({ url }).ping()).rejects.toMatchObject(unavailable);
    const silent = await fakeClamd(() => undefined);
    const started = Date.now();
    await expect(new ClamdScanner({ url: silent, connectTimeoutMs: 300 }).ping()).rejects.toMatchObject(
      unavailable,
    );
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
