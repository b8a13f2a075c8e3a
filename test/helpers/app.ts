import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../../src/config.ts';
import { createServices, type ServiceOptions, type Services } from '../../src/services.ts';
import { buildApp } from '../../src/app.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';

export const PASSWORDS = { alice: 'alice-password-1', bob: 'bob-password-22', root: 'root-password-333' };

let usersFileText: Promise<string> | undefined;

/** alice and bob are users, root is an admin. Hashed once per test file: argon2id is slow on purpose. */
function defaultUsersFile(): Promise<string> {
  usersFileText ??= (async () => {
    const hasher = new PasswordHasher();
    const lines = [
      `alice:${await hasher.hash(PASSWORDS.alice)}`,
      `bob:${await hasher.hash(PASSWORDS.bob)}:user`,
      `root:${await hasher.hash(PASSWORDS.root)}:admin`,
    ];
    return lines.join('\n') + '\n';
  })();
  return usersFileText;
}

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  config: Config;
  dir: string;
  login(username: keyof typeof PASSWORDS): Promise<{ accessToken: string; refreshToken: string }>;
  auth(token: string): { authorization: string };
  close(): Promise<void>;
}

export interface ListeningApp extends TestApp {
  /** http://127.0.0.1:PORT of the listening server. */
  base: string;
  port: number;
  /** An access token for each test user. */
  tokens: Record<keyof typeof PASSWORDS, string>;
}

/** What a test may put in place of the defaults: a logger that it reads, a clock, a scheduler. */
export interface TestAppOptions extends ServiceOptions {
  logger?: Logger;
}

/** A test app listening on a free port, with every test user logged in. */
export async function startListeningApp(
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<ListeningApp> {
  const t = await createTestApp(env, options);
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (t.app.server.address() as { port: number }).port;
  const tokens = {} as Record<keyof typeof PASSWORDS, string>;
  for (const user of ['alice', 'bob', 'root'] as const) tokens[user] = (await t.login(user)).accessToken;
  return { ...t, base: `http://127.0.0.1:${port}`, port, tokens };
}

export async function createTestApp(
  env: Record<string, string> = {},
  options: TestAppOptions = {},
): Promise<TestApp> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-test-'));
  const config = loadConfig({ STOWAGE_DATA_DIR: dir, STOWAGE_LOG_LEVEL: 'silent', ...env });
  await fs.mkdir(path.dirname(config.usersFile), { recursive: true });
  await fs
    .writeFile(config.usersFile, await defaultUsersFile(), { mode: 0o600, flag: 'wx' })
    .catch(() => undefined);
  const { logger = pino({ level: config.logLevel }), ...serviceOptions } = options;
  const services = await createServices(config, logger, serviceOptions);
  const app = await buildApp(services, logger);
  await app.ready();
  return {
    app,
    services,
    config,
    dir,
    async login(username) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username, password: PASSWORDS[username] },
      });
      if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
      return res.json<{ accessToken: string; refreshToken: string }>();
    },
    auth: (token) => ({ authorization: `Bearer ${token}` }),
    async close() {
      await app.close();
      await services.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
