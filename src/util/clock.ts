/**
 * The time source of everything that acts on time (expiry, sweeps, retention, caches), passed
 * down like the config so tests move time forward instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
