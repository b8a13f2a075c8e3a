import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, test } from 'vitest';
import { DisabledScanner } from '../../src/scan/disabled.ts';
import { EICAR } from '../helpers/clamd.ts';

describe('DisabledScanner', () => {
  test('is disabled, accepts any bytes, and calls everything clean', async () => {
    const scanner = new DisabledScanner();
    expect(scanner.enabled).toBe(false);
    await expect(scanner.ping()).resolves.toBeUndefined();
    const session = scanner.start();
    await pipeline(Readable.from([Buffer.from(EICAR, 'latin1'), Buffer.alloc(1024 * 1024)]), session.stream);
    await expect(session.verdict()).resolves.toEqual({ clean: true });
  });

  test('abort() ends the stream and may be repeated', () => {
    const session = new DisabledScanner().start();
    session.abort();
    session.abort();
    expect(session.stream.destroyed).toBe(true);
  });
});
