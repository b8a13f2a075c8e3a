import { AppError } from '../errors.ts';
import type { CounterStore, WindowCount } from '../util/counter-store.ts';

const WINDOW_MS = 15 * 60_000;
const PER_USER_AND_ADDRESS = 5;

/**
 * Brute-force protection for logins: 5 failures for one username from one address lock that pair
 * out for the rest of the 15-minute window (the right password included, or the lock would tell
 * the attacker when they guessed right); a wider cap per address stops spraying across usernames.
 * Other users and other addresses are unaffected.
 */
export class LoginThrottle {
  readonly #store: CounterStore;
  readonly #addressLimit: number;

  constructor(store: CounterStore, addressLimit: number) {
    this.#store = store;
    this.#addressLimit = addressLimit;
  }

  async check(username: string, ip: string): Promise<void> {
    const [pair, address] = await Promise.all([
      this.#store.get(pairKey(username, ip)),
      this.#store.get(addressKey(ip)),
    ]);
    if (pair && pair.count >= PER_USER_AND_ADDRESS) throw limited(pair);
    if (address && address.count >= this.#addressLimit) throw limited(address);
  }

  async recordFailure(username: string, ip: string): Promise<void> {
    await Promise.all([
      this.#store.increment(pairKey(username, ip), WINDOW_MS),
      this.#store.increment(addressKey(ip), WINDOW_MS),
    ]);
  }

  async recordSuccess(username: string, ip: string): Promise<void> {
    await this.#store.reset(pairKey(username, ip));
  }
}

function pairKey(username: string, ip: string): string {
  return `login:${ip}:${username.toLowerCase()}`;
}

function addressKey(ip: string): string {
  return `login-ip:${ip}`;
}

function limited(window: WindowCount): AppError {
  const seconds = Math.max(1, Math.ceil(window.resetInMs / 1000));
  return new AppError('RATE_LIMITED', 'Too many failed logins. Try again later.', {
    headers: { 'Retry-After': String(seconds) },
    details: { retryAfter: seconds },
  });
}
