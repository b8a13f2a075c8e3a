import { spawnSync } from 'node:child_process';
import {
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  lstatSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseUsersFile } from '../../../src/auth/user-file.ts';
import {
  readUsersFile,
  updateUsersFile,
  UsersFileLockError,
  UsersFileParseError,
} from '../../../src/auth/users-file-io.ts';
import { tempDir as makeTempDir } from '../../helpers/temp.ts';

const H = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';

function tempDir(): string {
  return makeTempDir('stowage-users-io-');
}

describe('updateUsersFile', () => {
  it('creates the file and its directory, mode 0600, and leaves no temp or lock file', async () => {
    const dir = tempDir();
    const file = join(dir, 'nested', 'users');
    await updateUsersFile(file, (users) => {
      users.set('alice', { username: 'alice', hash: H, roles: ['admin'] });
    });
    expect(readFileSync(file, 'utf8')).toBe(`alice:${H}:admin\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'nested'))).toEqual(['users']);
  });

  it('tightens a loose mode back to 0600 when it rewrites', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(file, `alice:${H}\n`, { mode: 0o666 });
    await updateUsersFile(file, (users) => void users.delete('alice'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe('');
  });

  it('replaces the file by rename (a reader holding the old file sees it whole)', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(file, `alice:${H}\n`);
    const before = statSync(file).ino;
    await updateUsersFile(file, (users) => {
      users.set('bob', { username: 'bob', hash: H, roles: ['user'] });
    });
    expect(statSync(file).ino).not.toBe(before);
  });

  it('keeps comments and other lines when it rewrites', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(file, `# ops: do not edit by hand\r\nalice:${H} # since 2020\r\n`);
    await updateUsersFile(file, (users) => {
      users.set('bob', { username: 'bob', hash: H, roles: ['user'] });
    });
    expect(readFileSync(file, 'utf8')).toBe(
      `# ops: do not edit by hand\nalice:${H} # since 2020\nbob:${H}\n`,
    );
  });

  it('refuses to rewrite a file with errors instead of dropping its bad lines', async () => {
    const file = join(tempDir(), 'users');
    const original = `alice:${H}\nBroken Line\n`;
    writeFileSync(file, original);
    const attempt = updateUsersFile(file, (users) => {
      users.set('bob', { username: 'bob', hash: H, roles: ['user'] });
    });
    await expect(attempt).rejects.toBeInstanceOf(UsersFileParseError);
    await expect(attempt).rejects.toThrow(/line 2/);
    expect(readFileSync(file, 'utf8')).toBe(original);
  });

  it('leaves the file untouched when the mutation throws', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(file, `alice:${H}\n`);
    const ino = statSync(file).ino;
    await expect(
      updateUsersFile(file, (users) => {
        users.clear();
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(readFileSync(file, 'utf8')).toBe(`alice:${H}\n`);
    expect(statSync(file).ino).toBe(ino);
  });

  it('serialises concurrent writers: no update is lost', async () => {
    const file = join(tempDir(), 'users');
    await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        updateUsersFile(file, async (users) => {
          await new Promise((r) => setTimeout(r, Math.random() * 5));
          users.set(`user${i}`, { username: `user${i}`, hash: H, roles: ['user'] });
        }),
      ),
    );
    const { users, errors } = await readUsersFile(file);
    expect(errors).toEqual([]);
    expect(users.size).toBe(25);
  });

  it('waits for a live lock and gives up with a clear error', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(`${file}.lock`, `${process.pid}\n${'some-other-host'}\n`);
    await expect(updateUsersFile(file, () => undefined, { timeoutMs: 200 })).rejects.toBeInstanceOf(
      UsersFileLockError,
    );
  });

  it('breaks a lock abandoned long ago', async () => {
    const file = join(tempDir(), 'users');
    writeFileSync(`${file}.lock`, `1\nsome-other-host\n`);
    const old = new Date(Date.now() - 120_000);
    utimesSync(`${file}.lock`, old, old);
    await updateUsersFile(file, (users) => void users.set('a', { username: 'a', hash: H, roles: ['user'] }), {
      timeoutMs: 5_000,
    });
    expect(parseUsersFile(readFileSync(file, 'utf8')).users.has('a')).toBe(true);
  });

  it('breaks at once a lock whose holder on this machine has exited', async () => {
    const file = join(tempDir(), 'users');
    const exited = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(`${file}.lock`, `${exited}\n${hostname()}\n`);
    await updateUsersFile(file, (users) => void users.set('a', { username: 'a', hash: H, roles: ['user'] }), {
      timeoutMs: 2_000,
    });
    expect(parseUsersFile(readFileSync(file, 'utf8')).users.has('a')).toBe(true);
  });

  it('writes through a symlinked users file, keeping the link', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'real-users'), `alice:${H}\n`);
    symlinkSync(join(dir, 'real-users'), join(dir, 'users'));
    await updateUsersFile(join(dir, 'users'), (users) => void users.delete('alice'));
    expect(lstatSync(join(dir, 'users')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, 'real-users'), 'utf8')).toBe('');
  });
});
