import net from 'node:net';

/** What came back on a raw connection, and whether (and how) the server closed it. */
export interface RawExchange {
  /** Everything the server sent, as text. */
  received: string;
  /** Bytes of our own the socket had accepted when it closed. */
  written: number;
  /** The socket error, when the connection ended in one (e.g. ECONNRESET). */
  error: NodeJS.ErrnoException | undefined;
}

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A TCP connection to the server on which a test writes exactly the bytes it wants, when it wants
 * (a slow or stalled client), and learns when the server closes it.
 */
export class RawConnection {
  readonly socket: net.Socket;
  readonly closed: Promise<RawExchange>;
  #received: Buffer[] = [];
  #stopped = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#received.push(chunk));
    this.closed = new Promise((resolve) => {
      let error: NodeJS.ErrnoException | undefined;
      socket.on('error', (e: NodeJS.ErrnoException) => (error = e));
      socket.on('close', () => {
        this.#stopped = true;
        resolve({ received: this.received, written: socket.bytesWritten, error });
      });
    });
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  get received(): string {
    return Buffer.concat(this.#received).toString('utf8');
  }

  /** Whether the server has closed the connection. */
  get isClosed(): boolean {
    return this.#stopped;
  }

  write(data: string | Buffer): void {
    if (!this.#stopped && !this.socket.destroyed) this.socket.write(data);
  }

  /**
   * Writes `data` one byte at a time, a byte every `everyMs`, until it is all sent or the server
   * closes the connection; resolves with the number of bytes written.
   */
  async trickle(data: string | Buffer, everyMs: number): Promise<number> {
    const bytes = Buffer.from(data);
    let sent = 0;
    while (sent < bytes.length && !this.#stopped) {
      this.write(bytes.subarray(sent, sent + 1));
      sent++;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    return sent;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Waits for the server to close `connection`, failing after `withinMs` (a must-not-hang bound). */
export async function closedWithin(connection: RawConnection, withinMs: number): Promise<RawExchange> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the server kept the connection open for ${withinMs} ms`)),
      withinMs,
    );
  });
  try {
    return await Promise.race([connection.closed, timeout]);
  } finally {
    clearTimeout(timer);
    connection.destroy();
  }
}

/** Parses the one HTTP/1.1 response in `text` (a Content-Length body). */
export function parseResponse(text: string): ParsedResponse {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete response in ${JSON.stringify(text)}`);
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = Buffer.from(text.slice(end + 4))
    .subarray(0, length)
    .toString('utf8');
  return { status, headers, body };
}
