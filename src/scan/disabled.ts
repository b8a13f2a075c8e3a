import { Writable } from 'node:stream';
import type { Scanner, ScanSession } from './scanner.ts';

/** Scanning switched off by configuration: every file is clean and the bytes go nowhere. */
export class DisabledScanner implements Scanner {
  readonly enabled = false;

  start(): ScanSession {
    const stream = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    return {
      stream,
      verdict: () => Promise.resolve({ clean: true }),
      abort: () => {
        stream.destroy();
      },
    };
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }
}
