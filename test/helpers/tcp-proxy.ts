import net from 'node:net';

/**
 * - `forward`: bytes flow both ways.
 * - `refuse`: the dependency is down: nothing listens on the port (connecting gets ECONNREFUSED)
 *   and open connections are reset.
 * - `drop`: a network partition: connections stay open and new ones are accepted, but no byte gets
 *   through either way. As with TCP across a healed partition, what was held back is delivered
 *   once the proxy forwards again.
 */
export type ProxyMode = 'forward' | 'refuse' | 'drop';

export interface TcpProxy {
  port: number;
  /** Connections accepted so far (e.g. to count how often something connected to the target). */
  readonly accepted: number;
  readonly mode: ProxyMode;
  setMode(mode: ProxyMode): Promise<void>;
  /** Resets every connection and stops listening; safe in any mode. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
}

/**
 * A TCP proxy to inject dependency faults (PostgreSQL, Redis, clamd) into tests: point the app at
 * 127.0.0.1:proxy.port instead of the real port, then cut the connection in one of two ways.
 */
export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const host = target.host ?? '127.0.0.1';
  let mode: ProxyMode = 'forward';
  let accepted = 0;
  const pairs = new Set<Pair>();

  const connectUpstream = (pair: Pair): void => {
    const upstream = net.connect({ host, port: target.port });
    pair.upstream = upstream;
    const { client } = pair;
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    upstream.on('error', end).on('close', end);
    client.on('close', end);
    relay(client, upstream);
    relay(upstream, client);
    client.resume();
  };

  // Bytes are only read while forwarding: a paused socket leaves them in the kernel's buffers,
  // from where they flow on once the partition heals.
  const relay = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (mode === 'forward') from.resume();
        });
      }
    });
  };

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    accepted++;
    client.on('error', () => client.destroy());
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('close', () => {
      if (!pair.upstream) pairs.delete(pair);
    });
    // In a partition the connection is accepted but silent; it reaches the target after healing.
    if (mode === 'forward') connectUpstream(pair);
  });
  server.on('error', () => undefined);

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });
  const resetAll = () => {
    for (const pair of pairs) {
      pair.client.resetAndDestroy();
      pair.upstream?.resetAndDestroy();
    }
    pairs.clear();
  };

  const port = await listen(0);
  return {
    port,
    get accepted() {
      return accepted;
    },
    get mode() {
      return mode;
    },
    async setMode(next) {
      const previous = mode;
      mode = next;
      if (next === 'refuse') {
        const closed = stopListening();
        resetAll();
        await closed;
        return;
      }
      if (previous === 'refuse') await listen(port);
      for (const pair of pairs) {
        if (next === 'drop') {
          pair.client.pause();
          pair.upstream?.pause();
        } else if (pair.upstream) {
          pair.client.resume();
          pair.upstream.resume();
        } else {
          connectUpstream(pair);
        }
      }
    },
    async close() {
      mode = 'refuse';
      const closed = stopListening();
      resetAll();
      await closed;
    },
  };
}
