import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.ts';
import { createServices } from './services.ts';
import { buildApp } from './app.ts';
import { loggerOptions } from './logger.ts';
import { UsersStore } from './auth/users-store.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { announceInitialAdmin, InitialPasswordFile } from './auth/initial-admin.ts';

const SHUTDOWN_GRACE_MS = 30_000;

async function main(): Promise<void> {
  // Everything the server writes (database, blobs, keys, spools) is for its own user only.
  process.umask(0o077);
  // Real environment variables win over .env: loadEnvFile never overwrites what is set.
  if (fs.existsSync('.env')) process.loadEnvFile('.env');
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) console.error(`stowage: invalid configuration: ${problem}`);
      process.exit(1);
    }
    throw error;
  }
  const logger = pino(loggerOptions(config.logLevel));
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(config.usersFile), { recursive: true, mode: 0o700 });

  const password = await UsersStore.ensureInitialAdmin(config.usersFile, new PasswordHasher());
  if (password !== null) {
    // Never into a log: on a terminal once, else into a 0600 file whose path is logged.
    await announceInitialAdmin({
      password,
      usersFile: config.usersFile,
      dataDir: config.dataDir,
      stderr: process.stderr,
      logger,
    });
  }

  const services = await createServices(config, logger);
  // The password file goes once the generated password is changed (checked now and on changes).
  await new InitialPasswordFile(config.dataDir, {
    users: services.users,
    hasher: services.hasher,
    logger,
  }).follow();
  const app = await buildApp(services, logger);
  if (!config.clamd)
    logger.warn('malware scanning is OFF (STOWAGE_CLAMD is not set): uploads are stored unscanned');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing requests in flight');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    // Connections are closed as they go idle (buildApp), so keep-alive clients do not hold this up.
    app
      .close()
      .then(() => services.close())
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  await app.listen({ host: config.host, port: config.port });
}

main().catch((error: unknown) => {
  console.error(`stowage: failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
