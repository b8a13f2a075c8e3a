import { AppError } from '../errors.ts';
import { clientAddressKey } from '../util/client-address.ts';
import type { CounterStore, WindowCount } from '../util/counter-store.ts';

const WINDOW_MS = 15 * 60_000;
const PER_USER_AND_ADDRESS = 5;

/**
 * Brute-force protection for logins: 5 failures for one username from one address lock that pair
 * out for the rest of the 15-minute window (the right password included, or the lock would tell
 * the attacker when they guessed right); a wider cap per address stops spraying across usernames.
 * Other users and other addresses are unaffected. "One address" is an IPv4 address or an IPv6 /64
 * (see client-address.ts): a client owns its whole /64 and could otherwise rotate through it.
 */
export class LoginThrottle {
  readonly #store: CounterStore;
  readonly #addressLimit: number;

  constructor(store: CounterStore, addressLimit: number) {
    this.#store = store;
    this.#addressLimit = addressLimit;
  }

  /**
   * Call before checking the password; throws RATE_LIMITED when locked out. The attempt is counted
   * against the username and the address here, before the (slow) password check, not after it:
   * else parallel guesses would all pass this check before the first failure was recorded. A
   * success gives the attempt back (recordSuccess), and so does an attempt that got no verdict
   * (giveBack: the hasher was too busy to check the password). Only a wrong password, or an
   * unknown user, stays counted: a flood that keeps the server busy must never lock out the real
   * users whose attempts it crowded out.
   */
  async check(username: string, ip: string): Promise<void> {
    const address = await this.#store.increment(addressKey(ip), WINDOW_MS);
    if (address.count > this.#addressLimit) throw limited(address);
    const pair = await this.#store.increment(pairKey(username, ip), WINDOW_MS);
    if (pair.count > PER_USER_AND_ADDRESS) throw limited(pair);
  }

  /** A right password: the pair starts over, and the address gets its attempt back. */
  async recordSuccess(username: string, ip: string): Promise<void> {
    await Promise.all([this.#store.reset(pairKey(username, ip)), this.#store.decrement(addressKey(ip))]);
  }

  /**
   * An attempt that `check` let through but that ended without a verdict on the password (the
   * server was busy, or failed): it is not a failure, so both counts get it back. It told the
   * client nothing about the password, so returning it gives a guesser nothing either.
   */
  async giveBack(username: string, ip: string): Promise<void> {
    await Promise.all([this.#store.decrement(pairKey(username, ip)), this.#store.decrement(addressKey(ip))]);
  }
}

function pairKey(username: string, ip: string): string {
  return `login:${clientAddressKey(ip)}:${username.toLowerCase()}`;
}

function addressKey(ip: string): string {
  return `login-ip:${clientAddressKey(ip)}`;
}

function limited(window: WindowCount): AppError {
  const seconds = Math.max(1, Math.ceil(window.resetInMs / 1000));
  return new AppError('RATE_LIMITED', 'Too many failed logins. Try again later.', {
    headers: { 'Retry-After': String(seconds) },
    details: { retryAfter: seconds },
  });
}
