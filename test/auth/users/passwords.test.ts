import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as argon2 from '@node-rs/argon2';
import type { Algorithm } from '@node-rs/argon2';
import { describe, expect, it } from 'vitest';
import { hashScheme, isUsableHash, OWASP_ARGON2ID_MIN, PasswordHasher } from '../../../src/auth/passwords.ts';
import { parseUsersFile } from '../../../src/auth/user-file.ts';
import { LimiterFullError } from '../../../src/util/limiter.ts';
import { tempDir } from '../../helpers/temp.ts';
import { required } from '../../helpers/requirements.ts';

const hasher = new PasswordHasher();
const htpasswdAvailable = required(
  spawnSync('htpasswd', ['-h']).error === undefined,
  "Apache's htpasswd",
  'apt-get install apache2-utils (.ci/run does)',
);
const NO_HTPASSWD = 'htpasswd not found: install apache2-utils to run the htpasswd compatibility tests';

function phcParams(hash: string): Record<string, number> {
  const [, algorithm, version, params] = hash.split('$');
  expect(algorithm).toBe('argon2id');
  expect(version).toBe('v=19');
  const entries = (params ?? '')
    .split(',')
    .map((kv): [string, number] => [kv.split('=')[0]!, Number(kv.split('=')[1])]);
  return Object.fromEntries(entries);
}

describe('PasswordHasher', () => {
  it('writes argon2id hashes at or above OWASP parameters (m=19456 KiB, t=2, p=1)', async () => {
    const hash = await hasher.hash('correct horse');
    const p = phcParams(hash);
    expect(p.m).toBeGreaterThanOrEqual(19456);
    expect(p.t).toBeGreaterThanOrEqual(2);
    expect(p.p).toBeGreaterThanOrEqual(1);
    expect(await hasher.verify(hash, 'correct horse')).toBe(true);
    expect(await hasher.verify(hash, 'correct horsE')).toBe(false);
    expect(hash).not.toContain('correct horse');
  });

  it('salts: the same password hashes differently each time', async () => {
    expect(await hasher.hash('same password')).not.toBe(await hasher.hash('same password'));
  });

  it('refuses parameters below the OWASP minimum', () => {
    expect(() => new PasswordHasher({ params: { memoryCost: 4096 } })).toThrow(RangeError);
    expect(() => new PasswordHasher({ params: { timeCost: 1 } })).toThrow(RangeError);
    expect(OWASP_ARGON2ID_MIN).toEqual({ memoryCost: 19456, timeCost: 2, parallelism: 1 });
  });

  it('matches composed and decomposed spellings of the same password', async () => {
    const hash = await hasher.hash('caf\u00e9-latte');
    expect(await hasher.verify(hash, 'cafe\u0301-latte')).toBe(true);
  });

  it('verifies bcrypt lines written by Apache htpasswd -B', async ({ skip }) => {
    skip(!htpasswdAvailable, NO_HTPASSWD);
    const dir = tempDir('stowage-htpasswd-');
    const file = join(dir, 'users');
    execFileSync('htpasswd', ['-B', '-b', '-c', file, 'alice', 'secretpw1'], { stdio: 'ignore' });
    execFileSync('htpasswd', ['-B', '-C', '5', '-b', file, 'bob', 'hunter2!x'], { stdio: 'ignore' });
    const { users, errors } = parseUsersFile(readFileSync(file, 'utf8'));
    expect(errors).toEqual([]);
    const alice = users.get('alice')!;
    expect(alice.hash).toMatch(/^\$2y\$/);
    expect(alice.roles).toEqual(['user']);
    expect(await hasher.verify(alice.hash, 'secretpw1')).toBe(true);
    expect(await hasher.verify(alice.hash, 'secretpw2')).toBe(false);
    expect(await hasher.verify(users.get('bob')!.hash, 'hunter2!x')).toBe(true);
    // Legacy hashes are flagged for replacement by argon2id.
    expect(hasher.needsRehash(alice.hash)).toBe(true);
  });

  it('spends on a bcrypt line at least the argon2id work an unknown user costs', async ({ skip }) => {
    skip(!htpasswdAvailable, NO_HTPASSWD);
    // Measured by the work done, not by the clock: a cheap bcrypt line ($2y$05$, htpasswd's
    // default cost) alone would answer several times faster than the unknown-user verification.
    const out = execFileSync('htpasswd', ['-B', '-C', '5', '-n', '-b', 'alice', 'secretpw1'], {
      encoding: 'utf8',
    });
    const bcryptHash = out.trim().split(':')[1]!;
    const argonHash = await hasher.hash('secretpw1');
    const work = async (fn: () => Promise<boolean>) => {
      const before = hasher.stats;
      const result = await fn();
      const after = hasher.stats;
      return {
        result,
        argon2id: after.argon2idVerifications - before.argon2idVerifications,
        bcrypt: after.bcryptVerifications - before.bcryptVerifications,
      };
    };
    expect(await work(() => hasher.verify(bcryptHash, 'wrong-pw-1'))).toEqual({
      result: false,
      argon2id: 1,
      bcrypt: 1,
    });
    expect(await work(() => hasher.verify(bcryptHash, 'secretpw1'))).toMatchObject({ result: true });
    expect(await work(() => hasher.verifyDummy('wrong-pw-1'))).toEqual({
      result: false,
      argon2id: 1,
      bcrypt: 0,
    });
    expect(await work(() => hasher.verify(argonHash, 'wrong-pw-1'))).toEqual({
      result: false,
      argon2id: 1,
      bcrypt: 0,
    });
    // An argon2id line cheaper than today's parameters is topped up the same way.
    const cheap = await argon2.hash('secretpw1', { algorithm: 2 as Algorithm, memoryCost: 64, timeCost: 1 });
    expect(await work(() => hasher.verify(cheap, 'wrong-pw-1'))).toEqual({
      result: false,
      argon2id: 2,
      bcrypt: 0,
    });
    expect(await work(() => hasher.verify(cheap, 'secretpw1'))).toMatchObject({ result: true });
    expect(await work(() => hasher.verify('$apr1$x$y', 'wrong-pw-1'))).toEqual({
      result: false,
      argon2id: 1,
      bcrypt: 0,
    });
  });

  it('never verifies $apr1$, {SHA}, crypt, plaintext or weak argon2 variants', async () => {
    const password = 'secretpw1';
    const sha = '{SHA}' + createHash('sha1').update(password).digest('base64');
    const refused = [
      '$apr1$9kNvt3mQ$6CP7L7xZfXGW1oPsRBEXA0', // MD5 variant: not this password, but the format is refused anyway
      sha,
      'abJnggxhB/yJU', // DES crypt
      '$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z1',
      '$5$rounds=5000$salt$xxxxxxxx',
      password, // plaintext
      '',
      '$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g',
      '$argon2id$garbage',
      '$2y$05$tooshort',
    ];
    for (const hash of refused) {
      expect(isUsableHash(hash), hash).toBe(false);
      expect(await hasher.verify(hash, password), hash).toBe(false);
      expect(await hasher.verify(hash, hash), hash).toBe(false);
    }
    expect(hashScheme(sha)).toBeNull();
  });

  it('refuses the $apr1$ and {SHA} lines htpasswd writes, even with the right password', async ({ skip }) => {
    skip(!htpasswdAvailable, NO_HTPASSWD);
    for (const flag of ['-m', '-s']) {
      const out = execFileSync('htpasswd', [flag, '-n', '-b', 'alice', 'secretpw1'], { encoding: 'utf8' });
      const hash = out.trim().split(':')[1]!;
      expect(await hasher.verify(hash, 'secretpw1')).toBe(false);
    }
  });

  it('refuses stored hashes whose cost would pin a hashing thread', async () => {
    const huge =
      '$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
    expect(isUsableHash(huge)).toBe(false);
    expect(isUsableHash('$2y$20$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui')).toBe(false);
    expect(await hasher.verify(huge, 'anything1')).toBe(false);
  });

  it('answers an unknown user (dummy verification) in about the time of a real one', async () => {
    const real = await hasher.hash('the real password');
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      const start = process.hrtime.bigint();
      await fn();
      return Number(process.hrtime.bigint() - start);
    };
    const realTimes: number[] = [];
    const dummyTimes: number[] = [];
    for (let i = 0; i < 7; i++) {
      realTimes.push(await time(() => hasher.verify(real, 'a wrong password')));
      dummyTimes.push(await time(() => hasher.verifyDummy('a wrong password')));
    }
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const ratio = median(dummyTimes) / median(realTimes);
    expect(ratio).toBeGreaterThan(0.3);
    expect(ratio).toBeLessThan(3);
    expect(await hasher.verifyDummy('the real password')).toBe(false);
  });

  it('hashes off the event loop: other callbacks run while a hash is computed', async () => {
    let ticks = 0;
    let done = false;
    const tick = (): void => {
      ticks++;
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    // Hashing on the loop itself would let no callback run at all; off it, many run per hash.
    // Several hashes keep a scheduling hiccup on a loaded machine from deciding the outcome.
    for (let i = 0; i < 5; i++) await hasher.hash('keep the loop free');
    done = true;
    expect(ticks).toBeGreaterThanOrEqual(5);
  });

  it('bounds concurrency and the queue: past it, callers get LimiterFullError at once', async () => {
    const small = new PasswordHasher({ concurrency: 1, maxQueue: 1 });
    const hash = await small.hash('a password');
    const first = small.verify(hash, 'a password');
    const second = small.verifyDummy('x');
    await expect(small.verify(hash, 'a password')).rejects.toBeInstanceOf(LimiterFullError);
    await expect(small.verifyDummy('y')).rejects.toBeInstanceOf(LimiterFullError);
    expect(await first).toBe(true);
    expect(await second).toBe(false);
    expect(await small.verify(hash, 'a password')).toBe(true);
  });

  it('needsRehash is false for current argon2id hashes and true for weaker or foreign ones', async () => {
    expect(hasher.needsRehash(await hasher.hash('whatever1'))).toBe(false);
    const stronger = new PasswordHasher({ params: { memoryCost: 32768 } });
    expect(stronger.needsRehash(await hasher.hash('whatever1'))).toBe(true);
    expect(hasher.needsRehash('{SHA}abc')).toBe(true);
  });
});
