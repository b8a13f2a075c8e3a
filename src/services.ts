import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { Config } from './config.ts';
import { openDatabase, type DatabaseHandle } from './db/database.ts';
import { Metrics } from './metrics.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { UsersStore } from './auth/users-store.ts';
import { AccessTokens } from './auth/tokens.ts';
import { loadSigningKey } from './auth/keys.ts';
import { SessionService } from './auth/sessions.ts';
import { LocalRevocationBus, type RevocationBus } from './auth/revocation-bus.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { MemoryCounterStore, type CounterStore } from './util/counter-store.ts';
import { UsageService } from './media/usage.ts';
import type { Check } from './http/routes/ops.ts';

export interface Services {
  config: Config;
  metrics: Metrics;
  database: DatabaseHandle;
  users: UsersStore;
  hasher: PasswordHasher;
  tokens: AccessTokens;
  sessions: SessionService;
  loginThrottle: LoginThrottle;
  usage: UsageService;
  redis: Redis | undefined;
  readinessChecks: Record<string, Check>;
  close(): Promise<void>;
}

/**
 * The composition root: the only place that knows which implementation of each part runs. Parts
 * are closed in reverse order of construction, also when construction fails half-way.
 */
export async function createServices(config: Config, logger: Logger): Promise<Services> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (error) {
        logger.warn({ err: error }, 'error while shutting down');
      }
    }
  };
  try {
    const database = await openDatabase(config.database);
    closers.push(() => database.close());

    const users = await UsersStore.open(config.usersFile, logger);
    closers.push(() => users.close());

    const bus: RevocationBus = new LocalRevocationBus();
    const counters: CounterStore = new MemoryCounterStore();
    const redis: Redis | undefined = undefined;

    const sessions = new SessionService(database.db, bus, {
      refreshTtlSeconds: config.refreshTokenTtl,
      // With several instances and no Redis to carry revocations, a short cache bounds staleness.
      cacheTtlMs: redis ? 60_000 : 1_000,
    });
    users.onChange((change) => {
      for (const username of [...change.removed, ...change.credentialsChanged]) {
        sessions.revokeAllForUser(username).catch((error: unknown) => {
          logger.error({ err: error, username }, 'could not end the sessions of a changed user');
        });
      }
    });

    const tokens = new AccessTokens(await loadSigningKey(config.jwtKeyFile), config.accessTokenTtl);
    const services: Services = {
      config,
      metrics: new Metrics(),
      database,
      users,
      hasher: new PasswordHasher(),
      tokens,
      sessions,
      loginThrottle: new LoginThrottle(counters, config.loginAddressLimit),
      usage: new UsageService(database.db),
      redis,
      readinessChecks: {
        database: async () => {
          await database.ping();
          return 'ok';
        },
      },
      close: closeAll,
    };
    return services;
  } catch (error) {
    await closeAll();
    throw error;
  }
}
