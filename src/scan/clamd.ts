import { connect, type Socket } from 'node:net';
import { AppError } from '../errors.ts';
import { InstreamSession } from './clamd-session.ts';
import { ReplyReader } from './clamd-reply.ts';
import type { Scanner, ScanSession } from './scanner.ts';

export type ClamdAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface ClamdScannerOptions {
  /** `tcp://HOST:PORT` or `unix:/path/to/clamd.sock` (STOWAGE_CLAMD). */
  url: string;
  connectTimeoutMs?: number;
  /** How long clamd may take to accept data or, after the last byte, to answer. */
  idleTimeoutMs?: number;
  maxChunkBytes?: number;
}

const USAGE = 'expected tcp://HOST:PORT or unix:/path/to/clamd.sock';

/**
 * The one parser of a clamd address (STOWAGE_CLAMD): the config check at start and the scanner
 * both use it, so a value that starts the server is one the scanner can connect to. Throws an
 * Error on one line naming the problem.
 */
export function parseClamdUrl(url: string): ClamdAddress {
  if (url.startsWith('unix:')) {
    const path = url.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/') || path.startsWith('//') || path.includes('\0')) {
      throw new Error(`Invalid clamd URL "${shown(url)}": the socket path must be absolute (${USAGE})`);
    }
    return { kind: 'unix', path };
  }
  if (!url.startsWith('tcp://')) throw new Error(`Invalid clamd URL "${shown(url)}": ${USAGE}`);
  // URL drops an empty query or fragment ("tcp://h:1?"); neither means anything to clamd.
  if (/[?#]/.test(url)) {
    throw new Error(`Invalid clamd URL "${shown(url)}": only a host and port are allowed (${USAGE})`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new Error(`Invalid clamd URL "${shown(url)}": ${USAGE}`, { cause });
  }
  const extra = parsed.username || parsed.password || parsed.search || parsed.hash;
  if (extra || (parsed.pathname !== '' && parsed.pathname !== '/')) {
    throw new Error(`Invalid clamd URL "${shown(url)}": only a host and port are allowed (${USAGE})`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(parsed.port);
  if (host === '' || parsed.port === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`Invalid clamd URL "${shown(url)}": a host and a port (1-65535) are required (${USAGE})`);
  }
  return { kind: 'tcp', host, port };
}

/** The address as it may appear in a message: credentials (which clamd never takes) left out. */
function shown(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//…@');
}

/** Scans through a clamd daemon over its INSTREAM protocol; fails closed on anything unclear. */
export class ClamdScanner implements Scanner {
  readonly enabled = true;
  readonly address: ClamdAddress;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #maxChunkBytes: number;

  constructor(options: ClamdScannerOptions) {
    this.address = parseClamdUrl(options.url);
    this.#connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? 5000);
    this.#idleTimeoutMs = positive('idleTimeoutMs', options.idleTimeoutMs ?? 30_000);
    this.#maxChunkBytes = positive('maxChunkBytes', options.maxChunkBytes ?? 64 * 1024);
  }

  start(): ScanSession {
    return new InstreamSession(this.#connect(), {
      connectTimeoutMs: this.#connectTimeoutMs,
      idleTimeoutMs: this.#idleTimeoutMs,
      maxChunkBytes: this.#maxChunkBytes,
    });
  }

  ping(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = this.#connect();
      const reader = new ReplyReader();
      let settled = false;
      const done = (reason?: string, cause?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (reason === undefined) return resolve();
        reject(new AppError('SCANNER_UNAVAILABLE', undefined, { cause: new Error(reason, { cause }) }));
      };
      const timer = setTimeout(
        () => done(`clamd did not answer PING within ${this.#connectTimeoutMs} ms`),
        this.#connectTimeoutMs,
      );
      socket.on('data', (data: Buffer) => {
        const reply = reader.push(data);
        if (reply === 'PONG') done();
        else if (reply !== undefined || reader.overflowed)
          done(`clamd answered PING with: ${reply ?? '(overlong)'}`);
      });
      socket.on('error', (error) => done('clamd connection failed', error));
      socket.on('close', () => done('clamd closed the connection without answering PING'));
      socket.write('zPING\0');
    });
  }

  #connect(): Socket {
    const { address } = this;
    return address.kind === 'unix'
      ? connect({ path: address.path })
      : connect({ host: address.host, port: address.port });
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new Error(`ClamdScanner: ${name} must be a positive integer`);
  return value;
}
