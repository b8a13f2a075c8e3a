import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EICAR, EICAR_SIGNATURE, clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.ts';
import {
  TUS_HEADER,
  KiB,
  expectError,
  patchHeaders,
  pdfOfSize,
  sha256,
  startTusApp,
  tusUpload,
  type TusApp,
} from './tus-helpers.ts';

/**
 * The bytes of a tus upload are hashed, typed and scanned while its PATCHes arrive; the state
 * that makes this possible (an open clamd stream) can be lost between PATCHes — clamd closes an
 * idle stream, or its connection breaks. Then, and only then, the completion scans the stored
 * bytes once more: a lost scan must never let a file through unscanned.
 * clamd is reached through a TCP proxy the test can cut, as clamd's own timeout would.
 */

const scanning = clamdAvailable();

/** A TCP proxy to clamd whose open connections can be cut while new ones still go through. */
async function cuttableProxy(target: string): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    url: `tcp://127.0.0.1:${address.port}`,
    cut: () => {
      for (const socket of open) socket.destroy();
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function infectedPdf(size: number): Buffer {
  const data = pdfOfSize(size);
  Buffer.from(EICAR, 'latin1').copy(data, size - 8 * KiB);
  return data;
}

describe.skipIf(!scanning)('the scan that runs while the PATCHes arrive', () => {
  let clamd: RunningClamd | undefined;
  let proxy: Awaited<ReturnType<typeof cuttableProxy>> | undefined;
  let app: TusApp;

  beforeAll(async () => {
    clamd = await startClamd();
    proxy = await cuttableProxy(clamd.url);
    app = await startTusApp({ STOWAGE_CLAMD: proxy.url });
  });
  afterAll(async () => {
    await app?.close();
    await proxy?.close();
    await clamd?.stop();
  });

  async function twoPatchesWithCut(data: Buffer): Promise<Response> {
    const uploadPath = await app.create(data.length);
    const first = await app.request('PATCH', uploadPath, {
      headers: patchHeaders(0),
      body: data.subarray(0, 64 * KiB),
    });
    expect(first.status).toBe(204);
    // The open scan stream is gone, as when clamd times out an idle stream between PATCHes.
    proxy!.cut();
    return app.request('PATCH', uploadPath, {
      headers: patchHeaders(64 * KiB),
      body: data.subarray(64 * KiB),
    });
  }

  test('an infected file whose scan stream was lost between PATCHes is still found (422)', async () => {
    const last = await twoPatchesWithCut(infectedPdf(256 * KiB));
    const body = await expectError(last, 422, 'MALWARE_DETECTED');
    expect(body.error.details.signature).toBe(EICAR_SIGNATURE);
    expect(await app.mediaList()).toEqual([]);
    expect(await app.reservations()).toEqual([]);
  });

  test('a clean file whose scan stream was lost is scanned again and stored', async () => {
    const data = pdfOfSize(256 * KiB);
    const last = await twoPatchesWithCut(data);
    expect(last.status).toBe(204);
    const item = (await app.mediaList()).find((i) => i.id === last.headers.get('media-id'));
    expect(item).toMatchObject({ size: data.length, sha256: sha256(data) });
    expect((await app.request('DELETE', `/api/media/${item!.id}`)).status).toBe(204);
  });

  test('an infected file sent in many chunks without interruption is found by the streaming scan', async () => {
    const failed = await tusUpload(app, infectedPdf(512 * KiB), { chunkSize: 32 * KiB }).catch(
      (error: { originalResponse?: { getStatus(): number; getBody(): string } }) => error.originalResponse,
    );
    expect(failed && 'getStatus' in failed ? failed.getStatus() : undefined).toBe(422);
    expect(await app.reservations()).toEqual([]);
  });

  test('several uploads at once: each is scanned, stored or refused as it should', async () => {
    const clean = [0, 1, 2, 3, 4, 5].map((i) => pdfOfSize(200 * KiB + i));
    const results = await Promise.all(clean.map((data) => tusUpload(app, data, { chunkSize: 48 * KiB })));
    const items = await app.mediaList();
    for (const [i, result] of results.entries()) {
      expect(items.find((item) => item.id === result.mediaId)?.sha256).toBe(sha256(clean[i]!));
    }
    for (const item of items) await app.request('DELETE', `/api/media/${item.id}`);
    const res = await app.request('HEAD', '/api/media/uploads/AAAAAAAAAAAAAAAAAAAAAA', {
      headers: TUS_HEADER,
    });
    expect(res.status).toBe(404);
  });
});
