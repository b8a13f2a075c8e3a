export interface RevocationEvent {
  sessionIds?: string[];
  username?: string;
}

/**
 * Tells every instance that sessions ended, so their caches drop them. With one instance the
 * local bus suffices; with several, the Redis bus (redis-bus.ts) carries the events.
 */
export interface RevocationBus {
  publish(event: RevocationEvent): Promise<void>;
  subscribe(listener: (event: RevocationEvent) => void): void;
  close(): Promise<void>;
}

export class LocalRevocationBus implements RevocationBus {
  publish(): Promise<void> {
    return Promise.resolve();
  }
  subscribe(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}
