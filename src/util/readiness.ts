import type { Breaker } from './breaker.ts';
import { systemClock, type Clock } from './clock.ts';
import { withDeadline } from './deadline.ts';

/** One readiness check: resolves 'ok' (or 'off' for a part that is turned off), throws when down. */
export type Check = () => Promise<'ok' | 'off'>;
export type CheckResult = 'ok' | 'off' | 'fail';

export interface ReadinessReport {
  checks: Record<string, CheckResult>;
  ok: boolean;
  /** When the checks finished (clock milliseconds). */
  at: number;
}

export interface ReadinessOptions {
  /** A check that has not answered after this long fails. */
  timeoutMs: number;
  /** How old a report may be before the next caller runs the checks again. */
  maxAgeMs?: number;
  clock?: Clock;
  /** Breakers fed by the check of the same name: a failed check opens, a passed one closes. */
  breakers?: Breaker[];
}

/**
 * The readiness checks, run at most once per `maxAgeMs` however often they are asked for: one run
 * is in flight at a time, concurrent callers share it, and its report is reused until it is older
 * than `maxAgeMs`. /readyz is unauthenticated, so without this every call would touch the database,
 * Redis, the scanner and storage. The same runs are the probes of the breakers: while a breaker is
 * open the checks run again every `maxAgeMs` in the background, so a dependency that comes back is
 * noticed even without traffic.
 */
export class Readiness {
  readonly #checks: Record<string, Check>;
  readonly #timeoutMs: number;
  readonly #maxAgeMs: number;
  readonly #clock: Clock;
  readonly #breakers: Breaker[];
  #report: ReadinessReport | undefined;
  #inFlight: Promise<ReadinessReport> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #runs = 0;

  constructor(checks: Record<string, Check>, options: ReadinessOptions) {
    this.#checks = checks;
    this.#timeoutMs = options.timeoutMs;
    this.#maxAgeMs = options.maxAgeMs ?? 1000;
    this.#clock = options.clock ?? systemClock;
    this.#breakers = options.breakers ?? [];
    for (const breaker of this.#breakers) breaker.setProbe(() => this.refresh());
  }

  /** How many times the checks have actually run (for metrics and tests). */
  get runs(): number {
    return this.#runs;
  }

  /** A report at most `maxAgeMs` old: the cached one, the one in flight, or a new run. */
  current(): Promise<ReadinessReport> {
    const report = this.#report;
    if (report && this.#clock.now() - report.at <= this.#maxAgeMs) return Promise.resolve(report);
    this.#inFlight ??= this.#run().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /**
   * Asks for a run without waiting for it: now, or, while the last report is still fresh, as soon
   * as it is not (so a breaker that just opened is probed even if no request comes).
   */
  refresh(): void {
    const report = this.#report;
    const age = report ? this.#clock.now() - report.at : Infinity;
    if (age <= this.#maxAgeMs && !this.#inFlight) this.#schedule(this.#maxAgeMs - age + 1);
    else void this.current();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #run(): Promise<ReadinessReport> {
    this.#runs++;
    const generations = new Map(this.#breakers.map((b) => [b, b.generation]));
    const names = Object.keys(this.#checks);
    const results = await Promise.all(names.map((name) => this.#runCheck(this.#checks[name]!)));
    const checks = Object.fromEntries(names.map((name, i) => [name, results[i]!]));
    for (const [breaker, generation] of generations) {
      const result = checks[breaker.name];
      if (result === 'fail') breaker.open();
      else if (result === 'ok') breaker.closeIfSince(generation);
    }
    const report = { checks, ok: results.every((r) => r !== 'fail'), at: this.#clock.now() };
    this.#report = report;
    if (this.#breakers.some((b) => b.isOpen)) this.#schedule(this.#maxAgeMs + 1);
    return report;
  }

  async #runCheck(check: Check): Promise<CheckResult> {
    try {
      return await withDeadline(check(), this.#timeoutMs, 'readiness check');
    } catch {
      return 'fail';
    }
  }

  #schedule(delayMs: number): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.refresh();
    }, delayMs);
    this.#timer.unref();
  }
}
