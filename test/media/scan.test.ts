import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clamdAvailable, EICAR, EICAR_SIGNATURE, startClamd, type RunningClamd } from '../helpers/clamd.ts';
import {
  expectError,
  expectNothingStored,
  KiB,
  MiB,
  pdf,
  pdfStream,
  sha256,
  startMediaApp,
  streamUpload,
  type MediaApp,
  type MediaItem,
} from './media-helpers.ts';

/** A PDF with the EICAR test string in its body: an allowed type that carries "malware". */
function infectedPdf(): Buffer {
  return Buffer.concat([pdf(0, 'see attachment'), Buffer.from(`\n${EICAR}\n`, 'latin1')]);
}

async function readyz(app: MediaApp) {
  const res = await app.api('GET', '/readyz', { as: null });
  return { status: res.status, body: res.json<{ status: string; checks: Record<string, string> }>() };
}

/** A TCP port on which nothing listens. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe.skipIf(!clamdAvailable())('uploads are scanned by a real clamd', () => {
  let clamd: RunningClamd;
  let app: MediaApp;
  beforeAll(async () => {
    clamd = await startClamd({ streamMaxLength: 16 * MiB });
    app = await startMediaApp({ STOWAGE_CLAMD: clamd.url });
  });
  afterAll(async () => {
    await app?.close();
    await clamd?.stop();
  });

  test('an infected file → 422 MALWARE_DETECTED naming the signature, nothing stored', async () => {
    const res = await app.upload([{ name: 'file', filename: 'invoice.pdf', data: infectedPdf() }]);
    expectError(res, 422, 'MALWARE_DETECTED');
    expect(res.json().error.details).toEqual({ signature: EICAR_SIGNATURE });
    await expectNothingStored(app);
  });

  test('EICAR deep inside a larger file streamed over HTTP is found too', async () => {
    const total = 4 * MiB;
    const res = await streamUpload({
      port: app.port,
      token: app.tokens.alice,
      filename: 'big.pdf',
      chunks: pdfStream(total, 64 * KiB, { at: 3 * MiB + 12_345, bytes: Buffer.from(EICAR, 'latin1') }),
    });
    expect(res.status).toBe(422);
    expect(JSON.parse(res.body).error).toMatchObject({
      code: 'MALWARE_DETECTED',
      details: { signature: EICAR_SIGNATURE },
    });
    await expectNothingStored(app);
  });

  test('a clean file is stored, and /readyz reports the scanner ok', async () => {
    const file = pdf(500);
    const res = await app.upload([{ name: 'file', filename: 'clean.pdf', data: file }]);
    expect(res.status).toBe(201);
    expect(res.json<MediaItem>().sha256).toBe(sha256(file));
    expect(await readyz(app)).toMatchObject({
      status: 200,
      body: { status: 'ok', checks: { scanner: 'ok' } },
    });
  });
});

describe.skipIf(!clamdAvailable())('fail closed', () => {
  test('scanner unreachable → 503 SCANNER_UNAVAILABLE, nothing stored, /readyz 503', async () => {
    const app = await startMediaApp({ STOWAGE_CLAMD: `tcp://127.0.0.1:${await closedPort()}` });
    try {
      const res = await app.upload([{ name: 'file', filename: 'a.pdf', data: pdf() }]);
      expectError(res, 503, 'SCANNER_UNAVAILABLE');
      await expectNothingStored(app);
      const ready = await readyz(app);
      expect(ready).toMatchObject({ status: 503, body: { status: 'fail', checks: { scanner: 'fail' } } });
    } finally {
      await app.close();
    }
  });

  test("clamd's own size limit (StreamMaxLength) → 503, never a pass, nothing stored", async () => {
    const clamd = await startClamd({ streamMaxLength: 64 * KiB });
    const app = await startMediaApp({ STOWAGE_CLAMD: clamd.url });
    try {
      const small = await app.upload([{ name: 'file', filename: 'small.pdf', data: pdf(1000) }]);
      expect(small.status).toBe(201);
      expect((await app.api('DELETE', `/api/media/${small.json<MediaItem>().id}`)).status).toBe(204);

      const res = await streamUpload({
        port: app.port,
        token: app.tokens.alice,
        filename: 'past-clamd-limit.pdf',
        chunks: pdfStream(512 * KiB, 16 * KiB),
      });
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body).error.code).toBe('SCANNER_UNAVAILABLE');
      await expectNothingStored(app);
    } finally {
      await app.close();
      await clamd.stop();
    }
  });
});

describe('a scanner without a clear verdict', () => {
  test('an answer that is neither OK nor FOUND → 503, nothing stored', async () => {
    // Not clamd: something on its port that reads the whole stream, then answers an error.
    const fake = net.createServer((socket) => {
      let tail = Buffer.alloc(0);
      socket.on('data', (data: Buffer) => {
        tail = Buffer.concat([tail, data]).subarray(-4);
        if (tail.equals(Buffer.alloc(4))) socket.end('stream: Can not allocate memory ERROR\0');
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const app = await startMediaApp({
      STOWAGE_CLAMD: `tcp://127.0.0.1:${(fake.address() as net.AddressInfo).port}`,
    });
    try {
      const res = await app.upload([{ name: 'file', filename: 'a.pdf', data: pdf() }]);
      expectError(res, 503, 'SCANNER_UNAVAILABLE');
      await expectNothingStored(app);
    } finally {
      await app.close();
      await new Promise((resolve) => fake.close(resolve));
    }
  });
});

describe('without STOWAGE_CLAMD', () => {
  test('/readyz reports the scanner off and stays ready', async () => {
    const app = await startMediaApp();
    try {
      expect(await readyz(app)).toMatchObject({
        status: 200,
        body: { status: 'ok', checks: { database: 'ok', storage: 'ok', scanner: 'off' } },
      });
    } finally {
      await app.close();
    }
  });
});
