import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { cleanEnv, readUsers, runCli, tempProject } from './cli-helpers.ts';

const hasher = new PasswordHasher();

async function addUser(cwd: string, name: string, password: string, ...extra: string[]) {
  return runCli(['users', 'add', name, '--password-stdin', ...extra], { cwd, input: `${password}\n` });
}

describe('stowage users (child process)', () => {
  it('add writes an argon2id line, mode 0600, that verifies the password; list shows name and roles', async () => {
    const { cwd, usersFile } = tempProject();
    const added = await addUser(cwd, 'alice', 'secretpw1');
    expect(added.code).toBe(0);
    expect(await addUser(cwd, 'bob', 'bobsecret9', '--role', 'admin')).toMatchObject({ code: 0 });

    expect(statSync(usersFile).mode & 0o777).toBe(0o600);
    const users = readUsers(usersFile);
    expect(users.get('alice')?.hash).toMatch(/^\$argon2id\$/);
    expect(await hasher.verify(users.get('alice')!.hash, 'secretpw1')).toBe(true);
    expect(users.get('bob')?.roles).toEqual(['admin']);

    const list = await runCli(['users', 'list'], { cwd });
    expect(list).toMatchObject({ code: 0, stdout: 'alice\tuser\nbob\tadmin\n' });
    const output = added.stdout + added.stderr + list.stdout + list.stderr;
    expect(output).not.toContain('secretpw1');
    expect(output).not.toContain('$argon2id$');
  });

  it('list prints no hash, also for bcrypt and unknown-format lines', async () => {
    const { cwd, usersFile } = tempProject();
    mkdirSync(join(cwd, 'data'));
    writeFileSync(
      usersFile,
      '# team\nalice:$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=:admin,user\n',
    );
    const list = await runCli(['users', 'list'], { cwd });
    expect(list).toMatchObject({ code: 0, stdout: 'alice\tuser\nbob\tadmin,user\n' });
    expect(list.stdout + list.stderr).not.toMatch(/\$2y\$|SHA|W6ph/);
  });

  it('add refuses an existing name and leaves the file as it was', async () => {
    const { cwd, usersFile } = tempProject();
    await addUser(cwd, 'alice', 'secretpw1');
    const before = readFileSync(usersFile, 'utf8');
    const again = await addUser(cwd, 'alice', 'otherpass2');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
    expect(readFileSync(usersFile, 'utf8')).toBe(before);
  });

  it('passwd replaces the hash: the new password verifies, the old one no longer does', async () => {
    const { cwd, usersFile } = tempProject();
    await addUser(cwd, 'alice', 'secretpw1', '--role', 'admin');
    const result = await runCli(['users', 'passwd', 'alice', '--password-stdin'], {
      cwd,
      input: 'newsecret2\n',
    });
    expect(result.code).toBe(0);
    const alice = readUsers(usersFile).get('alice')!;
    expect(await hasher.verify(alice.hash, 'newsecret2')).toBe(true);
    expect(await hasher.verify(alice.hash, 'secretpw1')).toBe(false);
    expect(alice.roles).toEqual(['admin']);
    expect(statSync(usersFile).mode & 0o777).toBe(0o600);
  });

  it('passwd and remove fail clearly for a name that does not exist', async () => {
    const { cwd } = tempProject();
    await addUser(cwd, 'alice', 'secretpw1');
    const passwd = await runCli(['users', 'passwd', 'zed', '--password-stdin'], {
      cwd,
      input: 'whatever99\n',
    });
    expect(passwd.code).toBe(1);
    expect(passwd.stderr).toMatch(/no user "zed"/);
    const remove = await runCli(['users', 'remove', 'zed'], { cwd });
    expect(remove.code).toBe(1);
    expect(remove.stderr).toMatch(/no user "zed"/);
  });

  it('remove deletes the user and keeps the others and the comments', async () => {
    const { cwd, usersFile } = tempProject();
    mkdirSync(join(cwd, 'data'));
    writeFileSync(usersFile, '# keep me\r\n');
    await addUser(cwd, 'alice', 'secretpw1');
    await addUser(cwd, 'bob', 'secretpw2');
    expect(await runCli(['users', 'remove', 'alice'], { cwd })).toMatchObject({ code: 0 });
    expect([...readUsers(usersFile).keys()]).toEqual(['bob']);
    expect(readFileSync(usersFile, 'utf8')).toMatch(/^# keep me\nbob:/);
  });

  it.each(['../x', 'Admin', 'a b', 'x'.repeat(65), '-rf', 'a:b'])(
    'refuses the name %j with exit 1',
    async (name) => {
      const { cwd, usersFile } = tempProject();
      const result = await runCli(['users', 'add', name, '--password-stdin'], { cwd, input: 'secretpw1\n' });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/invalid username|unknown option/);
      expect(existsSync(usersFile)).toBe(false);
    },
  );

  it('refuses a password under 8 characters', async () => {
    const { cwd, usersFile } = tempProject();
    const result = await addUser(cwd, 'alice', 'short7!');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/at least 8 characters/);
    expect(existsSync(usersFile)).toBe(false);
  });

  it('--password-stdin drops exactly one trailing LF or CRLF, nothing else', async () => {
    const { cwd, usersFile } = tempProject();
    await runCli(['users', 'add', 'crlf', '--password-stdin'], { cwd, input: 'secretpw1\r\n' });
    await runCli(['users', 'add', 'space', '--password-stdin'], { cwd, input: ' secretpw1 \n' });
    await runCli(['users', 'add', 'noeol', '--password-stdin'], { cwd, input: 'secretpw1' });
    await runCli(['users', 'add', 'twolines', '--password-stdin'], {
      cwd,
      input: 'secretpw1\nsecond line\n',
    });
    const users = readUsers(usersFile);
    expect(await hasher.verify(users.get('crlf')!.hash, 'secretpw1')).toBe(true);
    expect(await hasher.verify(users.get('space')!.hash, ' secretpw1 ')).toBe(true);
    expect(await hasher.verify(users.get('noeol')!.hash, 'secretpw1')).toBe(true);
    expect(await hasher.verify(users.get('twolines')!.hash, 'secretpw1')).toBe(true);
  });

  it('empty stdin is an error, not an empty password', async () => {
    const { cwd, usersFile } = tempProject();
    const result = await runCli(['users', 'add', 'alice', '--password-stdin'], { cwd, input: '' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no password on stdin/);
    expect(existsSync(usersFile)).toBe(false);
  });

  it('never takes a password from argv, and does not echo one back', async () => {
    const { cwd, usersFile } = tempProject();
    for (const args of [
      ['users', 'add', 'alice', '--password', 'hunter2hunter2'],
      ['users', 'add', 'alice', '--password=hunter2hunter2'],
      ['users', 'add', 'alice', 'hunter2hunter2'],
    ]) {
      const result = await runCli(args, { cwd });
      expect(result.code).toBe(2);
      expect(result.stderr).not.toContain('hunter2hunter2');
    }
    expect(existsSync(usersFile)).toBe(false);
  });

  it('without a terminal and without --password-stdin, it refuses rather than hangs', async () => {
    const { cwd } = tempProject();
    const result = await runCli(['users', 'add', 'alice'], { cwd, input: 'secretpw1\n' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--password-stdin/);
  });

  it('usage errors exit 2 with one clear line', async () => {
    const { cwd } = tempProject();
    const cases: [string[], RegExp][] = [
      [['users', 'list', '--frobnicate'], /unknown option "--frobnicate"/],
      [['users', 'frob'], /unknown subcommand "frob"/],
      [['users'], /missing subcommand/],
      [['usres', 'list'], /unknown command "usres"/],
      [['users', 'add'], /needs a NAME/],
      [['users', 'add', 'alice', '--role', 'root', '--password-stdin'], /unknown role "root"/],
      [['users', 'remove', 'alice', '--role', 'admin'], /takes no --role/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, { cwd, input: 'secretpw1\n' });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr.split('\n')[0], args.join(' ')).toMatch(message);
    }
  });

  it('refuses to rewrite a users file with errors, naming the line', async () => {
    const { cwd, usersFile } = tempProject();
    mkdirSync(join(cwd, 'data'));
    const broken =
      'alice:$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\nthis line is broken\n';
    writeFileSync(usersFile, broken);
    const result = await addUser(cwd, 'bob', 'secretpw1');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/line 2/);
    expect(readFileSync(usersFile, 'utf8')).toBe(broken);
  });

  it('finds the file via STOWAGE_USERS_FILE, STOWAGE_DATA_DIR, or .env (real env wins)', async () => {
    const { cwd } = tempProject();
    const viaFile = await runCli(['users', 'add', 'a1', '--password-stdin'], {
      cwd,
      input: 'secretpw1\n',
      env: cleanEnv({ STOWAGE_USERS_FILE: 'custom/users.txt', STOWAGE_DATA_DIR: 'ignored' }),
    });
    expect(viaFile.code).toBe(0);
    expect(readUsers(join(cwd, 'custom/users.txt')).has('a1')).toBe(true);

    await runCli(['users', 'add', 'a2', '--password-stdin'], {
      cwd,
      input: 'secretpw1\n',
      env: cleanEnv({ STOWAGE_DATA_DIR: 'var' }),
    });
    expect(readUsers(join(cwd, 'var/users')).has('a2')).toBe(true);

    writeFileSync(join(cwd, '.env'), 'STOWAGE_DATA_DIR=from-dotenv\n');
    await addUser(cwd, 'a3', 'secretpw1');
    expect(readUsers(join(cwd, 'from-dotenv/users')).has('a3')).toBe(true);
    await runCli(['users', 'add', 'a4', '--password-stdin'], {
      cwd,
      input: 'secretpw1\n',
      env: cleanEnv({ STOWAGE_DATA_DIR: 'real-env' }),
    });
    expect(readUsers(join(cwd, 'real-env/users')).has('a4')).toBe(true);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it('concurrent runs of "users add" all land: no line is lost', async () => {
    const { cwd, usersFile } = tempProject();
    const names = Array.from({ length: 10 }, (_, i) => `user${i}`);
    const results = await Promise.all(names.map((name) => addUser(cwd, name, `password-${name}`)));
    expect(results.map((r) => r.code)).toEqual(names.map(() => 0));
    const users = readUsers(usersFile);
    expect([...users.keys()].sort()).toEqual([...names].sort());
    expect(await hasher.verify(users.get('user7')!.hash, 'password-user7')).toBe(true);
    expect(statSync(usersFile).mode & 0o777).toBe(0o600);
    expect(existsSync(`${usersFile}.lock`)).toBe(false);
  });
});
