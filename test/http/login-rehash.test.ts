/**
 * bcrypt lines written by Apache's `htpasswd -B` (the real binary): a wrong password costs the
 * argon2id work an unknown user costs, and a successful login rewrites the line as argon2id, under
 * the users file's lock, without ending the user's sessions.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { createTestApp, type TestApp } from '../helpers/app.ts';
import { until } from '../helpers/common.ts';
import { tempDir } from '../helpers/temp.ts';
import { cleanEnv, runCli } from '../cli/cli-helpers.ts';
import { expectError, expectUnauthenticated, login, me } from './http-helpers.ts';
import { required } from '../helpers/requirements.ts';

const htpasswdAvailable = required(
  spawnSync('htpasswd', ['-h']).error === undefined,
  "Apache's htpasswd",
  'apt-get install apache2-utils (.ci/run does)',
);
const NO_HTPASSWD = 'htpasswd not found: install apache2-utils to run the htpasswd compatibility tests';

const CAROL = 'carol-bcrypt-pw1';

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/**
 * A users file with an htpasswd -B line for carol (role admin added by hand, as an operator
 * would), between lines that must come out of any rewrite byte for byte.
 */
async function usersFileWithBcrypt(): Promise<{ file: string; before: string; after: string }> {
  const dir = tempDir('stowage-rehash-');
  const file = join(dir, 'users');
  execFileSync('htpasswd', ['-B', '-C', '5', '-b', '-c', file, 'carol', CAROL], { stdio: 'ignore' });
  const carolLine = readFileSync(file, 'utf8').trim();
  expect(carolLine).toMatch(/^carol:\$2y\$05\$/);
  const hasher = new PasswordHasher();
  const before = `# operators\nalice:${await hasher.hash('alice-password-1')}:admin\n\n`;
  const after = `  bob:${await hasher.hash('bob-password-22')}   # spacing kept\n# end\n`;
  writeFileSync(file, `${before}${carolLine}:admin\n${after}`, { mode: 0o600 });
  return { file, before, after };
}

const carolLogin = async (app: TestApp) => login(app, 'carol', CAROL);

describe('bcrypt lines', () => {
  it('do the argon2id work of an unknown user when the password is wrong', async ({ skip }) => {
    skip(!htpasswdAvailable, NO_HTPASSWD);
    const { file } = await usersFileWithBcrypt();
    t = await createTestApp({ STOWAGE_USERS_FILE: file });
    const hasher = t.services.hasher;
    const work = async (username: string, remoteAddress: string) => {
      const before = hasher.stats;
      const res = await login(t!, username, 'not-the-password', remoteAddress);
      expectError(res, 401, 'INVALID_CREDENTIALS');
      const after = hasher.stats;
      return {
        argon2id: after.argon2idVerifications - before.argon2idVerifications,
        bcrypt: after.bcryptVerifications - before.bcryptVerifications,
      };
    };
    expect(await work('carol', '192.0.2.1')).toEqual({ argon2id: 1, bcrypt: 1 });
    expect(await work('nobody', '192.0.2.2')).toEqual({ argon2id: 1, bcrypt: 0 });
    expect(await work('alice', '192.0.2.3')).toEqual({ argon2id: 1, bcrypt: 0 });
    // A wrong password rewrites nothing.
    expect(readFileSync(file, 'utf8')).toMatch(/^carol:\$2y\$05\$/m);
  });

  it('are rewritten as argon2id after a successful login, under the lock, roles and other lines kept', async ({
    skip,
  }) => {
    skip(!htpasswdAvailable, NO_HTPASSWD);
    const { file, before, after } = await usersFileWithBcrypt();
    t = await createTestApp({ STOWAGE_USERS_FILE: file });
    const app = t;

    // Another writer (a "stowage users" command) holds the lock, as the CLI's own lock file.
    const lock = `${file}.lock`;
    writeFileSync(lock, `${process.pid}\n${hostname()}\n`, { flag: 'wx', mode: 0o600 });
    const hashesBefore = app.services.hasher.stats.hashes;
    const first = await carolLogin(app);
    expect(first.statusCode).toBe(200);
    const session = first.json<{ accessToken: string }>();
    // The new hash is computed; the rewrite must now wait for the lock.
    await until(() => app.services.hasher.stats.hashes > hashesBefore, 10_000, 'rehash computed');
    const snapshot = readFileSync(file, 'utf8');
    const deadline = Date.now() + 500;
    while (Date.now() < deadline) {
      expect(readFileSync(file, 'utf8')).toBe(snapshot);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // The lock holder writes what it read under the lock, plus a user of its own, and lets go.
    // Had the rehash not waited for the lock, this write would now silently undo it.
    const dave = `dave:${await new PasswordHasher().hash('dave-password-4')}\n`;
    writeFileSync(`${file}.cli-tmp`, snapshot + dave, { mode: 0o600 });
    renameSync(`${file}.cli-tmp`, file);
    unlinkSync(lock);

    await until(() => /^carol:\$argon2id\$/m.test(readFileSync(file, 'utf8')), 15_000, 'carol rehashed');
    const text = readFileSync(file, 'utf8');
    const carolLine = text.split('\n').find((l) => l.startsWith('carol:'))!;
    expect(carolLine).toMatch(
      /^carol:\$argon2id\$v=19\$m=19456,t=2,p=1\$[^:\s]+:admin # rehash-of:[0-9a-f]{16}$/,
    );
    expect(text).toBe(`${before}${carolLine}\n${after}${dave}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    // The server follows the rewrite: carol is now checked against argon2id, with the same password.
    await until(() => app.services.users.get('carol')?.hash.startsWith('$argon2id$') === true, 10_000);
    expect(app.services.users.get('carol')?.roles).toEqual(['admin']);
    const hasherStats = app.services.hasher.stats;
    expect((await carolLogin(app)).statusCode).toBe(200);
    expect(app.services.hasher.stats.bcryptVerifications).toBe(hasherStats.bcryptVerifications);

    // The rehash is no credentials change: the session from before it goes on.
    const row = () =>
      app.services.database.db
        .selectFrom('sessions')
        .select('revoked_at')
        .where('username', '=', 'carol')
        .orderBy('created_at')
        .executeTakeFirstOrThrow();
    for (let i = 0; i < 5; i++) {
      expect((await me(app, session.accessToken)).statusCode).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await row()).revoked_at).toBeNull();

    // A real new password still ends every session of carol's.
    const passwd = await runCli(['users', 'passwd', 'carol', '--password-stdin'], {
      cwd: tempDir('stowage-rehash-cli-'),
      env: cleanEnv({ STOWAGE_USERS_FILE: file }),
      input: 'carol-new-password\n',
    });
    expect(passwd.code, passwd.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toContain('rehash-of');
    await until(async () => (await me(app, session.accessToken)).statusCode === 401, 10_000, 'revoked');
    expectUnauthenticated(await me(app, session.accessToken));
    expect((await row()).revoked_at).not.toBeNull();
    expectError(await carolLogin(app), 401, 'INVALID_CREDENTIALS');
  });
});
