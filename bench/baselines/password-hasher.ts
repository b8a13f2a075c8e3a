/**
 * Baseline of figure 8: Stowage's PasswordHasher alone, outside any server, with the parameters
 * and concurrency the server uses (its defaults: argon2id m=19456 KiB, t=2, p=1, two hashes at
 * once). It verifies wrong passwords for SECONDS, as a failed login does, and prints how many
 * verifications per second it managed.
 *
 * usage: node password-hasher.ts SECONDS
 */
import { PasswordHasher } from '../../src/auth/passwords.ts';

const seconds = Number(process.argv[2] ?? 5);
const hasher = new PasswordHasher();
// More callers than the hasher's two slots keep both slots busy at all times.
const CALLERS = 4;

let done = 0;
const started = performance.now();
const deadline = started + seconds * 1000;
await Promise.all(
  Array.from({ length: CALLERS }, async () => {
    while (performance.now() < deadline) {
      await hasher.verifyDummy('wrong-password');
      done++;
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
console.log(JSON.stringify({ verifications: done, seconds: elapsed, perSecond: done / elapsed }));
