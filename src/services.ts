import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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
import { LocalInvalidationBus, type InvalidationBus } from './util/invalidation-bus.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { MemoryCounterStore, type CounterStore } from './util/counter-store.ts';
import type { Check } from './http/routes/ops.ts';
import type { BlobStore } from './storage/blob-store.ts';
import { createBlobStore } from './storage/create.ts';
import type { Scanner } from './scan/scanner.ts';
import { ClamdScanner } from './scan/clamd.ts';
import { DisabledScanner } from './scan/disabled.ts';
import { ImageProcessor } from './images/image-processor.ts';
import { MediaRepo } from './media/media-repo.ts';
import { Ingest } from './uploads/ingest.ts';
import { MediaService } from './media/media-service.ts';
import { TypePolicy } from './uploads/file-types.ts';
import { Signer } from './media/signing.ts';
import { loadHmacKey } from './auth/keys.ts';
import { Sweeper } from './media/sweeper.ts';
import { TusUploads } from './uploads/tus/tus-uploads.ts';
import { Thumbnails } from './media/thumbnails.ts';
import { createTusStore } from './uploads/tus/tus-store.ts';
import type { Locker } from '@tus/utils';

export interface Services {
  config: Config;
  metrics: Metrics;
  database: DatabaseHandle;
  users: UsersStore;
  hasher: PasswordHasher;
  tokens: AccessTokens;
  sessions: SessionService;
  loginThrottle: LoginThrottle;
  redis: Redis | undefined;
  storage: BlobStore;
  scanner: Scanner;
  images: ImageProcessor;
  repo: MediaRepo;
  ingest: Ingest;
  media: MediaService;
  sweeper: Sweeper;
  tus: TusUploads;
  thumbnails: Thumbnails;
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

    let redis: Redis | undefined;
    let bus: InvalidationBus = new LocalInvalidationBus();
    let counters: CounterStore = new MemoryCounterStore();
    let locker: Locker | undefined;
    if (config.redisUrl) {
      // Loaded only when configured, like the other optional backends.
      const [{ Redis }, { RedisInvalidationBus }, { RedisCounterStore }, { RedisLocker }] = await Promise.all(
        [
          import('ioredis'),
          import('./cluster/redis-bus.ts'),
          import('./cluster/redis-counter-store.ts'),
          import('./cluster/redis-locker.ts'),
        ],
      );
      const client = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
      // Connection errors surface on commands (and in /readyz); the client reconnects by itself.
      client.on('error', (error: Error) => logger.warn({ err: error }, 'redis connection problem'));
      redis = client;
      closers.push(async () => void (await client.quit().catch(() => client.disconnect())));
      await client.connect();
      bus = await RedisInvalidationBus.create(client, logger);
      closers.push(() => bus.close());
      counters = new RedisCounterStore(client);
      locker = new RedisLocker(client);
    }

    // With several instances and no Redis to carry invalidations, a short cache bounds staleness.
    const cacheTtlMs = redis ? 60_000 : 1_000;
    const sessions = new SessionService(database.db, bus, {
      refreshTtlSeconds: config.refreshTokenTtl,
      cacheTtlMs,
    });
    users.onChange((change) => {
      for (const username of [...change.removed, ...change.credentialsChanged]) {
        sessions.revokeAllForUser(username).catch((error: unknown) => {
          logger.error({ err: error, username }, 'could not end the sessions of a changed user');
        });
      }
    });

    const tokens = new AccessTokens(await loadSigningKey(config.jwtKeyFile), config.accessTokenTtl);
    const metrics = new Metrics();
    const spoolDir = path.join(config.dataDir, 'tmp');
    await fs.mkdir(spoolDir, { recursive: true, mode: 0o700 });
    const storage = await createBlobStore(config.storage);
    closers.push(() => Promise.resolve(storage.close?.()));
    const scanner: Scanner = config.clamd ? new ClamdScanner({ url: config.clamd }) : new DisabledScanner();
    const images = await ImageProcessor.create({
      concurrency: config.imageConcurrency,
      maxQueue: config.imageQueue,
      tempDir: spoolDir,
    });
    if (!images.heifDecoder)
      logger.warn('heif-dec not found: HEIC/HEIF uploads are accepted but get no thumbnails');
    const repo = new MediaRepo(database.db, database.dialect);
    const policy = new TypePolicy(config.allowedTypes);
    const ingest = new Ingest({
      storage,
      scanner,
      images,
      repo,
      policy,
      metrics,
      maxUploadBytes: config.maxUploadBytes,
      quotaBytes: config.quotaBytes,
      spoolDir,
    });
    const secret = await loadHmacKey(config.linkKeyFile);
    const media = new MediaService({
      repo,
      storage,
      cursors: new Signer(secret, 'cursor'),
      links: new Signer(secret, 'link'),
      bus,
      cacheTtlMs,
    });
    const tus = new TusUploads({
      datastore: await createTusStore(config),
      ingest,
      repo,
      policy,
      scanner,
      spoolDir,
      maxUploadBytes: config.maxUploadBytes,
      quotaBytes: config.quotaBytes,
      expirySeconds: config.uploadExpiry,
      logger,
      ...(locker ? { locker } : {}),
    });
    const sweeper = new Sweeper({
      storage,
      repo,
      sessions,
      spoolDir,
      logger,
      tus,
      // Local disk belongs to this process alone, so at start any unfinished write is a crash
      // leftover; a bucket is shared with other instances whose uploads may be in flight.
      startupIncompleteAgeMs: config.storage.kind === 's3' ? 24 * 3_600_000 : 0,
    });
    sweeper.start();
    closers.push(() => sweeper.stop());
    const services: Services = {
      config,
      metrics,
      database,
      users,
      // One core stays free for the event loop, so a login flood cannot stall other requests.
      hasher: new PasswordHasher({ concurrency: Math.max(1, os.availableParallelism() - 1) }),
      tokens,
      sessions,
      loginThrottle: new LoginThrottle(counters, config.loginAddressLimit),
      redis,
      storage,
      scanner,
      images,
      repo,
      ingest,
      media,
      sweeper,
      tus,
      thumbnails: new Thumbnails(storage, images, spoolDir),
      readinessChecks: {
        database: async () => {
          await database.ping();
          return 'ok';
        },
        storage: async () => {
          await storage.ping();
          return 'ok';
        },
        scanner: async () => {
          if (!scanner.enabled) return 'off';
          await scanner.ping();
          return 'ok';
        },
        ...(redis
          ? {
              redis: async () => {
                await redis.ping();
                return 'ok' as const;
              },
            }
          : {}),
      },
      close: closeAll,
    };
    return services;
  } catch (error) {
    await closeAll();
    throw error;
  }
}
