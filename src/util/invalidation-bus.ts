export interface InvalidationEvent {
  /** Sessions that ended. */
  sessionIds?: string[];
  /** Every session of this user ended. */
  username?: string;
  /** Media items that changed or were deleted. */
  mediaIds?: string[];
  /** Signed links that were revoked. */
  linkIds?: string[];
}

/**
 * Tells every instance that something it may have cached changed, so its caches drop it. With
 * one instance the local bus suffices; with several, the Redis bus (redis-bus.ts) carries events.
 * Delivery is best effort (a message can be lost): it makes a change take effect at once, while
 * the caches' short lifetime (ACCESS_CACHE_TTL_MS in ttl-cache.ts) is what guarantees the bound.
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
