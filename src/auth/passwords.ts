/**
 * Password hashing and verification. New hashes are argon2id; bcrypt hashes written by Apache's
 * `htpasswd -B` verify too. Anything else is refused: it is never compared as plaintext, and an
 * unusable hash costs the same work as a real one so that the answer time does not tell them apart.
 *
 * Both libraries run in the libuv thread pool, off the event loop. That pool is shared with file
 * I/O and DNS, so the number of hashes in flight is bounded (and the queue behind them too: past it
 * LimiterFullError propagates and the HTTP layer answers that the server is busy).
 */
import { randomBytes } from 'node:crypto';
import * as argon2 from '@node-rs/argon2';
import type { Algorithm } from '@node-rs/argon2';
import * as bcrypt from '@node-rs/bcrypt';
import { ConcurrencyLimiter } from '../util/limiter.ts';
import { MAX_PASSWORD_LENGTH } from './user-file.ts';

export interface Argon2Params {
  /** KiB */
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/** OWASP Password Storage Cheat Sheet minimum for argon2id: 19 MiB, 2 iterations, 1 lane. */
export const OWASP_ARGON2ID_MIN: Readonly<Argon2Params> = { memoryCost: 19456, timeCost: 2, parallelism: 1 };

/**
 * Upper bounds on the cost a stored hash may ask for. The file is trusted, but one mistyped line
 * should not be able to pin a hashing thread for hours or allocate gigabytes on every login.
 */
const MAX_ARGON2_MEMORY_KIB = 1024 * 1024;
const MAX_ARGON2_TIME = 16;
const MAX_ARGON2_PARALLELISM = 16;
const MAX_BCRYPT_COST = 16;

// A declared const enum cannot be read under isolatedModules; 2 is Argon2id in @node-rs/argon2.
const ARGON2ID = 2 as Algorithm;

const BCRYPT_RE = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

export type HashScheme = 'argon2id' | 'bcrypt';

/** The scheme of a stored hash, or null for formats this server refuses. */
export function hashScheme(hash: string): HashScheme | null {
  if (hash.startsWith('$argon2id$')) return 'argon2id';
  if (BCRYPT_RE.test(hash)) return 'bcrypt';
  return null;
}

function argon2Params(hash: string): Argon2Params | null {
  try {
    const p = argon2.parseOptions(hash);
    if (p.algorithm !== ARGON2ID) return null;
    return { memoryCost: p.memoryCost, timeCost: p.timeCost, parallelism: p.parallelism };
  } catch {
    return null;
  }
}

/** The cost field of a modular-crypt bcrypt string: `$2y$12$…`. */
function bcryptCost(hash: string): number | null {
  const match = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/.exec(hash);
  return match ? Number(match[1]) : null;
}

/** Whether a stored hash is one this server will verify (known scheme, parseable, sane cost). */
export function isUsableHash(hash: string): boolean {
  switch (hashScheme(hash)) {
    case 'argon2id': {
      const p = argon2Params(hash);
      return (
        p !== null &&
        p.memoryCost <= MAX_ARGON2_MEMORY_KIB &&
        p.timeCost <= MAX_ARGON2_TIME &&
        p.parallelism <= MAX_ARGON2_PARALLELISM
      );
    }
    case 'bcrypt': {
      const cost = bcryptCost(hash);
      return cost !== null && cost <= MAX_BCRYPT_COST;
    }
    case null:
      return false;
  }
}

/**
 * Passwords are hashed as NFC so that the same password typed on systems that compose characters
 * differently (macOS input is often NFD) still matches. bcrypt lines come from other tools and are
 * verified on the raw string.
 */
function normalize(password: string): string {
  return password.normalize('NFC');
}

function phcBase64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}

export interface PasswordHasherOptions {
  /** Hashes computed at once (default 2, leaving the rest of the libuv pool to file I/O). */
  concurrency?: number;
  /** Hashes waiting for a slot before LimiterFullError (default 64). */
  maxQueue?: number;
  /** argon2id cost for new hashes; refused below OWASP_ARGON2ID_MIN. */
  params?: Partial<Argon2Params>;
}

/** What a hasher has done and is doing: for tests and metrics, never for decisions. */
export interface HasherStats {
  /** argon2id verifications run to the end, real or dummy. */
  argon2idVerifications: number;
  /** bcrypt verifications run to the end. */
  bcryptVerifications: number;
  /** New hashes computed. */
  hashes: number;
  /** Hashes and verifications running now, and waiting for a slot. */
  active: number;
  queued: number;
}

export class PasswordHasher {
  readonly params: Readonly<Argon2Params>;
  readonly #limiter: ConcurrencyLimiter;
  readonly #dummyHash: string;
  #argon2idVerifications = 0;
  #bcryptVerifications = 0;
  #hashes = 0;

  constructor(options: PasswordHasherOptions = {}) {
    const params = { ...OWASP_ARGON2ID_MIN, ...options.params };
    if (
      params.memoryCost < OWASP_ARGON2ID_MIN.memoryCost ||
      params.timeCost < OWASP_ARGON2ID_MIN.timeCost ||
      params.parallelism < OWASP_ARGON2ID_MIN.parallelism
    ) {
      throw new RangeError('argon2id parameters below the OWASP minimum (m=19456, t=2, p=1)');
    }
    this.params = Object.freeze(params);
    this.#limiter = new ConcurrencyLimiter(options.concurrency ?? 2, options.maxQueue ?? 64);
    // Verification cost depends only on the parameters, so a random salt and digest with the same
    // parameters costs exactly what a real user's check costs, and matches no password.
    const { memoryCost: m, timeCost: t, parallelism: p } = params;
    this.#dummyHash = `$argon2id$v=19$m=${m},t=${t},p=${p}$${phcBase64(randomBytes(16))}$${phcBase64(randomBytes(32))}`;
  }

  async hash(password: string): Promise<string> {
    return this.#limiter.run(async () => {
      const hash = await argon2.hash(normalize(password), {
        ...this.params,
        algorithm: ARGON2ID,
        outputLen: 32,
      });
      this.#hashes++;
      return hash;
    });
  }

  /**
   * True only when `password` matches `hash` under a supported scheme; never throws for bad hashes.
   * Throws LimiterFullError when too many verifications wait already: that is no verdict at all.
   *
   * A wrong password must answer in the same time whatever the user's line holds, and as an
   * unknown user does (the dummy argon2id verification), or the answer time tells which users
   * exist and which still have a (cheaper) bcrypt line. So a bcrypt line, or an argon2id line with
   * parameters below the current ones, is verified alongside a dummy argon2id verification, in
   * parallel, and answers when both are done: never earlier than an unknown user, and for the costs
   * htpasswd writes (-B defaults to cost 5, a few ms) bcrypt ends first, so the time is the argon2id
   * time. Doing the same real work rather than sleeping to a measured floor keeps the times equal
   * under load too, when every verification slows down alike. A bcrypt cost dearer than the
   * argon2id parameters would still answer later than an unknown user; such lines are rewritten as
   * argon2id at the user's next successful login (needsRehash).
   */
  async verify(hash: string, password: string): Promise<boolean> {
    if (!isUsableHash(hash) || [...password].length > MAX_PASSWORD_LENGTH) {
      return this.verifyDummy(password);
    }
    const argon2id = hashScheme(hash) === 'argon2id';
    if (argon2id && !this.needsRehash(hash)) {
      return this.#limiter.run(() => this.#argon2Verify(hash, normalize(password)));
    }
    // bcrypt, or argon2id with parameters cheaper than today's (as cheap as the file allows).
    return this.#limiter.run(async () => {
      const [ok] = await Promise.all([
        argon2id ? this.#argon2Verify(hash, normalize(password)) : this.#bcryptVerify(hash, password),
        this.#argon2Verify(this.#dummyHash, normalize(password)),
      ]);
      return ok;
    });
  }

  /** Does the work of one argon2id verification and fails: the answer for an unknown user. */
  async verifyDummy(password: string): Promise<false> {
    await this.#limiter.run(() =>
      this.#argon2Verify(this.#dummyHash, normalize(password.slice(0, MAX_PASSWORD_LENGTH))),
    );
    return false;
  }

  get stats(): HasherStats {
    return {
      argon2idVerifications: this.#argon2idVerifications,
      bcryptVerifications: this.#bcryptVerifications,
      hashes: this.#hashes,
      active: this.#limiter.active,
      queued: this.#limiter.queued,
    };
  }

  async #argon2Verify(hash: string, password: string): Promise<boolean> {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    } finally {
      this.#argon2idVerifications++;
    }
  }

  async #bcryptVerify(hash: string, password: string): Promise<boolean> {
    try {
      return await bcrypt.verify(password, hash);
    } catch {
      return false;
    } finally {
      this.#bcryptVerifications++;
    }
  }

  /** Whether a hash that just verified should be replaced by one with the current parameters. */
  needsRehash(hash: string): boolean {
    const p = hashScheme(hash) === 'argon2id' ? argon2Params(hash) : null;
    return (
      p === null ||
      p.memoryCost < this.params.memoryCost ||
      p.timeCost < this.params.timeCost ||
      p.parallelism < this.params.parallelism
    );
  }
}
