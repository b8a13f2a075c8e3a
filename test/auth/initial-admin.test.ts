/**
 * The first start's generated admin password never reaches a log: with stderr a pipe (a log file,
 * the journal) it goes to a 0600 file in the data directory whose path is logged, and the file
 * goes once the password is changed; on a terminal it is printed there once. Real server process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { cleanEnv, readUsers, runCli } from '../cli/cli-helpers.ts';
import { until } from '../helpers/common.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { tempDir } from '../helpers/temp.ts';
import { required } from '../helpers/requirements.ts';

const MAIN = resolve(import.meta.dirname, '../../src/main.ts');
const scriptAvailable = required(
  spawnSync('script', ['--version']).status === 0,
  'script (a terminal for the test)',
  'apt-get install bsdutils',
);

const running: ServerProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.kill('SIGTERM')));
});

function project() {
  const cwd = tempDir('stowage-first-admin-');
  const dataDir = join(cwd, 'data');
  return {
    cwd,
    dataDir,
    passwordFile: join(dataDir, 'initial-admin-password'),
    usersFile: join(dataDir, 'users'),
  };
}

async function start(cwd: string, dataDir: string): Promise<ServerProcess> {
  const server = await startServerProcess({ cwd, env: { STOWAGE_DATA_DIR: dataDir } });
  running.push(server);
  return server;
}

async function stop(server: ServerProcess): Promise<void> {
  running.splice(running.indexOf(server), 1);
  await server.kill('SIGTERM');
}

async function loginStatus(base: string, password: string): Promise<number> {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  });
  await res.arrayBuffer();
  return res.status;
}

async function passwd(cwd: string, dataDir: string, password: string): Promise<void> {
  const result = await runCli(['users', 'passwd', 'admin', '--password-stdin'], {
    cwd,
    env: cleanEnv({ STOWAGE_DATA_DIR: dataDir }),
    input: `${password}\n`,
  });
  expect(result.code, result.stderr).toBe(0);
}

describe('the first admin password, with stderr not a terminal', () => {
  it('goes to a 0600 file whose path is logged, never into the output, and the file goes when the password is changed', async () => {
    const { cwd, dataDir, passwordFile } = project();
    const server = await start(cwd, dataDir);

    expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
    const password = readFileSync(passwordFile, 'utf8').trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(server.output()).toContain(passwordFile);
    expect(server.output()).not.toContain(password);
    expect(await loginStatus(server.base, password)).toBe(200);

    await passwd(cwd, dataDir, 'a-new-admin-password');
    await until(() => !existsSync(passwordFile), 10_000, 'password file deleted');
    expect(await loginStatus(server.base, 'a-new-admin-password')).toBe(200);
    expect(server.output()).not.toContain(password);
  });

  it('keeps the file across restarts while unchanged, and deletes it at start once changed', async () => {
    const { cwd, dataDir, passwordFile } = project();
    await stop(await start(cwd, dataDir));
    const password = readFileSync(passwordFile, 'utf8').trim();

    const again = await start(cwd, dataDir);
    expect(readFileSync(passwordFile, 'utf8').trim()).toBe(password);
    expect(again.output()).not.toContain(password);
    await stop(again);

    // Changed while the server was down: the next start deletes the file before it listens.
    await passwd(cwd, dataDir, 'changed-offline-1');
    const third = await start(cwd, dataDir);
    expect(existsSync(passwordFile)).toBe(false);
    expect(await loginStatus(third.base, 'changed-offline-1')).toBe(200);
  });
});

describe.skipIf(!scriptAvailable)('the first admin password, on a terminal', () => {
  it('is printed once on the terminal, and no file is written', async () => {
    const { cwd, dataDir, usersFile } = project();
    const command = [process.execPath, MAIN].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
    const env = cleanEnv({ STOWAGE_DATA_DIR: dataDir, STOWAGE_PORT: '0', STOWAGE_HOST: '127.0.0.1' });
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd, env });
    let screen = '';
    const closed = new Promise<void>((done) => child.once('close', () => done()));
    child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
    try {
      await until(() => /Server listening at/.test(screen), 30_000, `server start:\n${screen}`);
    } finally {
      // The server ends with its terminal (SIGHUP); a SIGTERM to `script` closes it.
      child.kill('SIGTERM');
      await closed;
    }
    const shown = [...screen.matchAll(/password: (\S+)/g)].map((m) => m[1]!);
    expect(shown).toHaveLength(1);
    const admin = readUsers(usersFile).get('admin')!;
    expect(await new PasswordHasher().verify(admin.hash, shown[0]!)).toBe(true);
    expect(readdirSync(dataDir)).not.toContain('initial-admin-password');
  });
});
