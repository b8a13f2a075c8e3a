import { withDeadline } from './deadline.ts';
import { DependencyUnavailableError, isDependencyFailure } from './dependency-failure.ts';

/**
 * Fails fast while a dependency is known to be down, so that requests do not each wait out a
 * timeout against a database or Redis that cannot answer. A call that fails with a dependency
 * failure opens the breaker; while open, calls throw DependencyUnavailableError at once and ask for
 * a fresh readiness check (the probe, at most one a second, see readiness.ts). The first check that
 * started after the breaker opened and passes closes it again. Requests never probe themselves, so
 * none of them pays a timeout while the dependency is down.
 */
export class Breaker {
  readonly name: string;
  readonly #timeoutMs: number | undefined;
  #open = false;
  /** Bumped on every opening, so a check that began before it cannot close the breaker. */
  #generation = 0;
  #probe: (() => void) | undefined;
  readonly #listeners: ((open: boolean) => void)[] = [];

  /** `timeoutMs`: how long run() lets a call take before it counts as a failure (none: unbounded). */
  constructor(name: string, timeoutMs?: number) {
    this.name = name;
    this.#timeoutMs = timeoutMs;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get generation(): number {
    return this.#generation;
  }

  /** What to call, without waiting for it, to find out whether the dependency is back. */
  setProbe(probe: () => void): void {
    this.#probe = probe;
  }

  /** Told when the breaker opens (true) or closes (false), e.g. to log it once per outage. */
  onChange(listener: (open: boolean) => void): void {
    this.#listeners.push(listener);
  }

  /** Throws DependencyUnavailableError while open (and asks for a probe). */
  assertClosed(): void {
    if (!this.#open) return;
    this.#probe?.();
    throw new DependencyUnavailableError(this.name);
  }

  /** A call (or a check) saw the dependency fail. */
  open(): void {
    if (this.#open) return;
    this.#generation++;
    this.#open = true;
    for (const listener of this.#listeners) listener(true);
    this.#probe?.();
  }

  /** A check that started at `generation` passed: the dependency is back, unless it failed since. */
  closeIfSince(generation: number): void {
    if (!this.#open || generation !== this.#generation) return;
    this.#open = false;
    for (const listener of this.#listeners) listener(false);
  }

  /**
   * Runs `call` unless the breaker is open, within the breaker's timeout. A dependency failure
   * (the timeout included) opens the breaker and is thrown as DependencyUnavailableError; any other
   * error (a constraint violation, a bug) passes as it is.
   */
  async run<T>(call: () => Promise<T>): Promise<T> {
    this.assertClosed();
    try {
      const pending = call();
      return await (this.#timeoutMs === undefined
        ? pending
        : withDeadline(pending, this.#timeoutMs, this.name));
    } catch (error) {
      throw this.failure(error);
    }
  }

  /** Classifies an error of a call made outside run(): opens on a dependency failure. */
  failure(error: unknown): unknown {
    if (!isDependencyFailure(error)) return error;
    this.open();
    return error instanceof DependencyUnavailableError
      ? error
      : new DependencyUnavailableError(this.name, error);
  }
}
