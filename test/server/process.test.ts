import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

/**
 * The real server process, started the way an operator starts it (`node src/main.ts`), in a
 * temporary working directory with its own data dir.
 */

const MAIN = path.resolve(import.meta.dirname, '../../src/main.ts');
const STARTUP_MS = 30_000;

interface Server {
  child: ChildProcess;
  port: number;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  url(p: string): string;
}

const started: Server[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const server of started.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
  }
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stowage-proc-'));
  dirs.push(dir);
  return dir;
}

/** The environment of the test runner minus anything that would change how the server starts. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('STOWAGE_') && !k.startsWith('VITEST') && k !== 'NODE_OPTIONS')
      env[k] = v;
  }
  return env;
}

/** A port nobody listens on right now: port 0 would work, but the server does not print its port. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function spawnServer(cwd: string, env: Record<string, string>, port: number): Server {
  const child = spawn(process.execPath, [MAIN], {
    cwd,
    env: { ...baseEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const server: Server = {
    child,
    port,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    url: (p) => `http://127.0.0.1:${port}${p}`,
  };
  started.push(server);
  return server;
}

/** Starts the server and waits until /healthz answers (or the process dies, which fails the test). */
async function startServer(cwd: string, env: Record<string, string> = {}): Promise<Server> {
  const port = await freePort();
  const server = spawnServer(cwd, { STOWAGE_PORT: String(port), ...env }, port);
  await waitFor(server, async () => (await fetch(server.url('/healthz'))).ok);
  return server;
}

/** Polls `check` (errors count as "not yet") until it holds; fails if the process exits first. */
async function waitFor(server: Server, check: () => Promise<boolean>, timeoutMs = STARTUP_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (server.child.exitCode !== null) {
      throw new Error(`server exited with ${server.child.exitCode}: ${server.stderr()}${server.stdout()}`);
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out; stderr: ${server.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The exit code, or a failure when the process is still running after `ms`. */
async function exitCode(server: Server, ms = 15_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([server.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function stop(server: Server): Promise<number | null> {
  server.child.kill('SIGTERM');
  return exitCode(server);
}

/**
 * The first admin's generated password: with stderr not a terminal (a pipe here, as under systemd)
 * it is written to a file in the data directory, never printed (test/auth/initial-admin.test.ts).
 */
function generatedPassword(cwd: string): string {
  return fs.readFileSync(path.join(cwd, 'data', 'initial-admin-password'), 'utf8').trim();
}

async function post(server: Server, p: string, body: unknown, token?: string): Promise<Response> {
  return fetch(server.url(p), {
    method: 'POST',
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

vi.setConfig({ testTimeout: 60_000 });

describe('first start and the secrets it creates', () => {
  it('creates an admin once, hands its password over once, and keeps users file and JWT key private', async () => {
    const cwd = tempDir();
    const env = { STOWAGE_DATA_DIR: path.join(cwd, 'data') };
    const first = await startServer(cwd, env);
    const password = generatedPassword(cwd);
    expect(first.stdout()).not.toContain(password);
    expect(first.stderr()).not.toContain(password);

    const usersFile = path.join(cwd, 'data', 'users');
    expect(fs.statSync(usersFile).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(usersFile, 'utf8')).not.toContain(password);
    expect(fs.statSync(path.join(cwd, 'data', 'keys', 'jwt-ed25519.pem')).mode & 0o777).toBe(0o600);

    const res = await post(first, '/api/auth/login', { username: 'admin', password });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ user: { username: 'admin', roles: ['admin'] } });
    expect(await stop(first)).toBe(0);

    const second = await startServer(cwd, env);
    expect(second.stderr()).not.toMatch(/password/i);
    expect((await post(second, '/api/auth/login', { username: 'admin', password })).status).toBe(200);
    expect(await stop(second)).toBe(0);
  });
});

describe('configuration at start', () => {
  it('stops with a non-zero exit and one line naming an invalid variable', async () => {
    const cwd = tempDir();
    const server = spawnServer(cwd, { STOWAGE_PORT: 'abc', STOWAGE_DATA_DIR: path.join(cwd, 'data') }, 0);
    expect(await exitCode(server)).not.toBe(0);
    const lines = server
      .stderr()
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('STOWAGE_PORT');
    // It stopped before doing anything: no admin was created.
    expect(fs.existsSync(path.join(cwd, 'data', 'users'))).toBe(false);
  });

  it('reads .env from the working directory, with real environment variables winning', async () => {
    const cwd = tempDir();
    const dotenvPort = await freePort();
    fs.writeFileSync(
      path.join(cwd, '.env'),
      `# settings for this instance\nSTOWAGE_PORT=${dotenvPort}\nSTOWAGE_DATA_DIR=./from-dotenv\nSTOWAGE_LOG_LEVEL=warn\n`,
    );
    // STOWAGE_PORT comes from the real environment too, and wins; the rest only from .env.
    const server = await startServer(cwd);
    expect(fs.existsSync(path.join(cwd, 'from-dotenv', 'users'))).toBe(true);
    await expect(fetch(`http://127.0.0.1:${dotenvPort}/healthz`)).rejects.toThrow();
    // warn from .env: the info-level "listening" and request lines are not logged.
    expect(server.stdout()).not.toMatch(/"level":30/);
    expect(server.stdout()).toMatch(/"level":40/);
    expect(await stop(server)).toBe(0);
  });
});

describe('shutdown', () => {
  it('lets a request in flight finish on SIGTERM, then exits 0', async () => {
    const cwd = tempDir();
    const server = await startServer(cwd, { STOWAGE_DATA_DIR: path.join(cwd, 'data') });
    const password = generatedPassword(cwd);
    const body = JSON.stringify({ username: 'admin', password });

    // A login whose body is only half sent: the request has begun but cannot finish yet.
    const socket = net.connect(server.port, '127.0.0.1');
    let response = '';
    socket.on('data', (d: Buffer) => (response += d.toString()));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      `POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    socket.write(body.slice(0, 10));
    await waitFor(server, async () => server.stdout().includes('"url":"/api/auth/login"'));

    server.child.kill('SIGTERM');
    await waitFor(server, async () => server.stdout().includes('shutting down'));
    expect(server.child.exitCode).toBeNull();
    socket.write(body.slice(10));

    expect(await exitCode(server)).toBe(0);
    await closed;
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    expect(response).toContain('"accessToken"');
  });
});

describe('logs', () => {
  it('are JSON lines that never contain passwords or tokens', async () => {
    const cwd = tempDir();
    const server = await startServer(cwd, {
      STOWAGE_DATA_DIR: path.join(cwd, 'data'),
      STOWAGE_LOG_LEVEL: 'trace',
    });
    const password = generatedPassword(cwd);
    const wrongPassword = 'wrong-Pa55word-that-must-not-be-logged';

    expect(
      (await post(server, '/api/auth/login', { username: 'admin', password: wrongPassword })).status,
    ).toBe(401);
    const login = await post(server, '/api/auth/login', { username: 'admin', password });
    const first = (await login.json()) as { accessToken: string; refreshToken: string };
    const me = await fetch(server.url('/api/auth/me'), {
      headers: { authorization: `Bearer ${first.accessToken}` },
    });
    expect(me.status).toBe(200);
    const refreshed = await post(server, '/api/auth/refresh', { refreshToken: first.refreshToken });
    const second = (await refreshed.json()) as { accessToken: string; refreshToken: string };
    expect((await post(server, '/api/auth/logout', undefined, second.accessToken)).status).toBe(204);
    expect((await post(server, '/api/auth/refresh', { refreshToken: second.refreshToken })).status).toBe(401);
    expect(
      (
        await fetch(server.url('/api/auth/me'), {
          headers: { authorization: `Bearer ${second.accessToken}` },
        })
      ).status,
    ).toBe(401);
    const linkToken = 'signed-link-token-that-must-not-be-logged';
    await fetch(server.url(`/api/media/abc/content?download=1&token=${linkToken}`));
    expect(await stop(server)).toBe(0);

    const log = server.stdout();
    const lines = log.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
    expect(log).toContain('/api/auth/refresh');
    const secrets = [password, wrongPassword, first.refreshToken, second.refreshToken, linkToken];
    for (const token of [first.accessToken, second.accessToken]) secrets.push(token, token.split('.')[2]!);
    for (const secret of secrets) expect(log).not.toContain(secret);
    expect(server.stderr()).not.toContain(first.accessToken);
    expect(server.stderr()).not.toContain(first.refreshToken);
  });
});
