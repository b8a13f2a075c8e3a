import { peakRssBytes, MiB } from './rss.ts';
import type { Server } from './servers.ts';

export interface FreshRun<T> {
  result: T;
  /** The server's peak RSS over its start and this one job, MiB. */
  peakRssMiB: number;
}

/**
 * Starts a server, runs one job against it, reads its peak RSS, runs `after` (clean-up that must
 * not count), and stops it. A fresh process per measurement is what makes peak RSS comparable:
 * a long-lived process would carry every earlier transfer's high-water mark.
 */
export async function fresh<S extends Server, T>(
  start: () => Promise<S>,
  job: (server: S) => Promise<T>,
  after?: (server: S, result: T) => Promise<void>,
): Promise<FreshRun<T>> {
  const server = await start();
  try {
    const result = await job(server);
    const peakRssMiB = peakRssBytes(server.pid) / MiB;
    await after?.(server, result);
    return { result, peakRssMiB };
  } finally {
    await server.stop();
  }
}
