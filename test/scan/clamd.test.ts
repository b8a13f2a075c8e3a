import { randomFillSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ClamdScanner } from '../../src/scan/clamd.ts';
import type { ScanVerdict } from '../../src/scan/scanner.ts';
import { clamdAvailable, EICAR, EICAR_SIGNATURE, startClamd, type RunningClamd } from '../helpers/clamd.ts';

const MiB = 1024 * 1024;

/** Lazily generated random bytes (no file is ever held in memory), with `insert` placed at `at`. */
function generated(total: number, chunkBytes: number, insert?: { at: number; bytes: Buffer }): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < total; offset += chunkBytes) {
        const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(chunkBytes, total - offset)));
        if (insert !== undefined) {
          // Copy the part of `insert` that falls into this chunk, so it may straddle chunks.
          const start = insert.at - offset;
          if (start < chunk.length && start + insert.bytes.length > 0) {
            insert.bytes.copy(chunk, Math.max(start, 0), Math.max(-start, 0));
          }
        }
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

async function scan(scanner: ClamdScanner, source: Readable): Promise<ScanVerdict> {
  const session = scanner.start();
  await pipeline(source, session.stream);
  return session.verdict();
}

describe.skipIf(!clamdAvailable())('ClamdScanner against a real clamd', () => {
  let clamd: RunningClamd;

  beforeAll(async () => {
    // Large enough for the 200 MB stream below; the size-limit test runs its own small clamd.
    clamd = await startClamd({ streamMaxLength: 256 * MiB });
  });
  afterAll(async () => {
    await clamd?.stop();
  });

  const urls = (): [string, string][] => [
    ['tcp', clamd.url],
    ['unix', clamd.unixUrl],
  ];

  test('a clean stream is clean over TCP and over the unix socket', async () => {
    for (const [, url] of urls()) {
      const scanner = new ClamdScanner({ url });
      await expect(scan(scanner, Readable.from([Buffer.from('just a holiday photo')]))).resolves.toEqual({
        clean: true,
      });
    }
  });

  test('the EICAR test string is infected, named by its signature, over TCP and unix', async () => {
    for (const [, url] of urls()) {
      const scanner = new ClamdScanner({ url });
      await expect(scan(scanner, Readable.from([Buffer.from(EICAR, 'latin1')]))).resolves.toEqual({
        clean: false,
        signature: EICAR_SIGNATURE,
      });
    }
  });

  test('EICAR in the middle of a large stream, across INSTREAM chunk boundaries, is found', async () => {
    const scanner = new ClamdScanner({ url: clamd.url, maxChunkBytes: 64 * 1024 });
    // Straddles both a source chunk (100 000 bytes) and an INSTREAM frame (64 KiB) boundary.
    const at = 4 * 64 * 1024 - 30;
    const source = generated(16 * MiB, 100_000, { at, bytes: Buffer.from(EICAR, 'latin1') });
    await expect(scan(scanner, source)).resolves.toEqual({ clean: false, signature: EICAR_SIGNATURE });
  });

  test('a clean stream of the same size is clean (the detection above is not the noise)', async () => {
    const scanner = new ClamdScanner({ url: clamd.url });
    await expect(scan(scanner, generated(16 * MiB, 100_000))).resolves.toEqual({ clean: true });
  });

  test('200 MB streams through a scan with memory staying flat', async () => {
    const scanner = new ClamdScanner({ url: clamd.url });
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      await expect(scan(scanner, generated(200 * MiB, 64 * 1024))).resolves.toEqual({ clean: true });
    } finally {
      clearInterval(sampler);
    }
    // Buffering the file would need 200 MB; garbage not yet collected accounts for far less.
    expect(peak - before).toBeLessThan(150 * MiB);
  }, 120_000);

  test('ping answers', async () => {
    for (const [, url] of urls()) await expect(new ClamdScanner({ url }).ping()).resolves.toBeUndefined();
  });
});

describe.skipIf(!clamdAvailable())('ClamdScanner past clamd StreamMaxLength', () => {
  let clamd: RunningClamd;

  beforeAll(async () => {
    clamd = await startClamd({ streamMaxLength: 1 * MiB });
  });
  afterAll(async () => {
    await clamd?.stop();
  });

  test('a stream over the limit fails closed and the caller pipeline does not hang', async () => {
    const scanner = new ClamdScanner({ url: clamd.url });
    const session = scanner.start();
    const source = generated(64 * MiB, 64 * 1024);
    const piped = pipeline(source, session.stream).then(
      () => 'completed',
      () => 'failed',
    );
    const timeout = new Promise((resolve) => setTimeout(() => resolve('hung'), 10_000).unref());
    expect(await Promise.race([piped, timeout])).not.toBe('hung');
    await expect(session.verdict()).rejects.toMatchObject({ code: 'SCANNER_UNAVAILABLE' });
    // The limit stops the upload early rather than after all 64 MB were read.
    expect(source.readableEnded).toBe(false);
  });

  test('a stream just under the limit is still scanned', async () => {
    const scanner = new ClamdScanner({ url: clamd.url });
    await expect(scan(scanner, generated(MiB - 1024, 64 * 1024))).resolves.toEqual({ clean: true });
  });
});
