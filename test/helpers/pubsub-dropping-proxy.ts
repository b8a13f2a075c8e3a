import net from 'node:net';

/**
 * A TCP proxy in front of Redis that, once told to, silently loses everything Redis sends to
 * connections in subscriber mode (those that sent SUBSCRIBE): published messages vanish while the
 * connection stays up and every other command keeps working — the failure Redis pub/sub allows
 * (at-most-once delivery; nothing replays what a subscriber missed).
 */
export interface PubSubDroppingProxy {
  /** The proxy's redis:// URL for database index `db`. */
  url(db: number): string;
  /** From now on, drop what Redis pushes to subscribers (for good: a frame cut in half cannot resume). */
  startDropping(): void;
  /** Everything dropped so far, as text (to check that a given message really was lost). */
  dropped(): string;
  close(): Promise<void>;
}

export async function startPubSubDroppingProxy(redisUrl: string): Promise<PubSubDroppingProxy> {
  const target = new URL(redisUrl);
  const sockets = new Set<net.Socket>();
  let dropping = false;
  let dropped = '';
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    let subscriber = false;
    client.on('data', (chunk: Buffer) => {
      if (/subscribe/i.test(chunk.toString('latin1'))) subscriber = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (subscriber && dropping) dropped += chunk.toString('latin1');
      else client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: (db) => `redis://127.0.0.1:${port}/${db}`,
    startDropping: () => {
      dropping = true;
    },
    dropped: () => dropped,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
