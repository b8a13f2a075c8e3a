export interface InvalidationEvent {
  /** Sessions that ended. */
  sessionIds?: string[];
  /** Every session of this user ended. */
  username?: string;
  /** Media items that changed or were deleted. */
  mediaIds?: string[];
}

/**
 * Tells every instance that something it may have cached changed, so its caches drop it. With
 * one instance the local bus suffices; with several, the Redis bus (redis-bus.ts) carries events.
 */
export interface InvalidationBus {
  publish(event: InvalidationEvent): Promise<void>;
  subscribe(listener: (event: InvalidationEvent) => void): void;
  close(): Promise<void>;
}

/** Delivers only to this process: a publisher's own caches are cleared directly by the publisher. */
export class LocalInvalidationBus implements InvalidationBus {
  publish(): Promise<void> {
    return Promise.resolve();
  }
  subscribe(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}
