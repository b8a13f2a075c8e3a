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
import { ACCESS_CACHE_TTL_MS } from './util/ttl-cache.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { FallbackCounterStore, MemoryCounterStore, type CounterStore } from './util/counter-store.ts';
import { Breaker } from './util/breaker.ts';
import { Readiness } from './util/readiness.ts';
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
import { Sweeper, type SweepScheduler } from './media/sweeper.ts';
import { ScratchLease } from './storage/scratch.ts';
import { TusUploads } from './uploads/tus/tus-uploads.ts';
import { Thumbnails, defaultThumbnailSize } from './media/thumbnails.ts';
import { ThumbnailsAhead } from './media/thumbnails-ahead.ts';
import { RenditionCache } from './media/rendition-cache.ts';
import { mediaImageSource } from './media/image-source.ts';
import { createTusStore } from './uploads/tus/tus-store.ts';
import type { Locker } from '@tus/utils';
import type { Clock } from './util/clock.ts';
import { MemoryLocker } from './cluster/memory-locker.ts';
import { AuditLog } from './audit/audit-log.ts';
import { VideoTools } from './video/video-tools.ts';
import { MetadataReader } from './media/media-metadata.ts';
import { MetadataBackfill } from './media/metadata-backfill.ts';

export interface Services {
  config: Config;
  metrics: Metrics;
  database: DatabaseHandle;
  users: UsersStore;
  hasher: PasswordHasher;
  tokens: AccessTokens;
  sessions: SessionService;
  loginThrottle: LoginThrottle;
  /** Rate-limit counters: Redis when configured (this instance's own while it is down). */
  counters: CounterStore;
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
  audit: AuditLog;
  /** ffprobe/ffmpeg, or null when they are missing. */
  video: VideoTools | null;
  metadata: MetadataReader;
  backfill: MetadataBackfill;
  /** The index and byte budget of stored thumbnails and renditions. */
  renditionCache: RenditionCache;
  /** /readyz's checks, at most 1 s old; they also tell the breakers when a dependency is back. */
  readiness: Readiness;
  close(): Promise<void>;
}

/**
 * The composition root: the only place that knows which implementation of each part runs. Parts
 * are closed in reverse order of construction, also when construction fails half-way.
 */
export interface ServiceOptions {
  /** The time source of time-dependent parts (tests pass a ManualClock). */
  clock?: Clock;
  /** When the sweeper's periodic pass runs (tests fire it by hand). */
  sweepScheduler?: SweepScheduler;
  /** When the metadata backfill's periodic pass runs (tests fire it by hand). */
  backfillScheduler?: SweepScheduler;
}

export async function createServices(
  config: Config,
  logger: Logger,
  options: ServiceOptions = {},
): Promise<Services> {
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
    // Breakers fail requests fast while the database or Redis is known to be unreachable.
    const timeoutMs = config.dependencyTimeoutMs;
    const databaseBreaker = new Breaker('database');
    const redisBreaker = new Breaker('redis', timeoutMs);
    for (const breaker of [databaseBreaker, redisBreaker]) {
      breaker.onChange((open) => {
        if (open) logger.error(`${breaker.name} unreachable: requests that need it get 503 until it answers`);
        else logger.info(`${breaker.name} reachable again`);
      });
    }
    const database = await openDatabase(config.database, { timeoutMs, breaker: databaseBreaker });
    closers.push(() => database.close());

    const users = await UsersStore.open(config.usersFile, logger);
    closers.push(() => users.close());

    let redis: Redis | undefined;
    let bus: InvalidationBus = new LocalInvalidationBus();
    let counters: CounterStore = new MemoryCounterStore();
    // Upload locks with tus's hand-over (a waiting request asks the holder to let go).
    let locker: Locker = new MemoryLocker();
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
      const client = new Redis(config.redisUrl, {
        lazyConnect: true,
        // Never wait on an unreachable Redis: commands fail at once while disconnected (no offline
        // queue); our calls have their deadline in the breaker; ioredis's own timeouts, plain
        // timers, are the backstop, and replace a connection that stopped answering.
        connectTimeout: timeoutMs,
        commandTimeout: 2 * timeoutMs,
        socketTimeout: 2 * timeoutMs,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
      });
      // Connection errors surface on commands (and in /readyz); the client reconnects by itself.
      client.on('error', (error: Error) => logger.warn({ err: error }, 'redis connection problem'));
      redis = client;
      closers.push(async () => void (await client.quit().catch(() => client.disconnect())));
      await client.connect();
      bus = await RedisInvalidationBus.create(client, logger, redisBreaker);
      closers.push(() => bus.close());
      counters = new FallbackCounterStore(new RedisCounterStore(client), counters, redisBreaker);
      const redisLocker = new RedisLocker(client);
      closers.push(() => redisLocker.close());
      locker = redisLocker;
    }

    const audit = new AuditLog(database.db, {
      logger,
      ...(options.clock ? { clock: options.clock } : {}),
    });

    // What decides access is cached for at most a second, with or without Redis: pub/sub can lose
    // an invalidation, and a revocation must hold on every instance within 1 s regardless.
    const cacheTtlMs = ACCESS_CACHE_TTL_MS;
    const sessions = new SessionService(database.db, bus, {
      refreshTtlSeconds: config.refreshTokenTtl,
      cacheTtlMs,
      maxAgeSeconds: config.sessionMaxAge,
      perUserLimit: config.sessionsPerUser,
      audit,
      ...(options.clock ? { clock: options.clock } : {}),
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
    // Several instances may share the data directory: each keeps its unfinished writes and spool
    // files in folders of its own, so that no start-up sweep removes another's work in progress.
    const scratch = await ScratchLease.acquire(path.join(config.dataDir, 'instances'));
    closers.push(() => scratch.release());
    const spoolRoot = path.join(config.dataDir, 'tmp');
    const spoolDir = await scratch.area(spoolRoot);
    const storage = await createBlobStore(config.storage, scratch);
    closers.push(() => Promise.resolve(storage.close?.()));
    const scanner: Scanner = config.clamd ? new ClamdScanner({ url: config.clamd }) : new DisabledScanner();
    const images = await ImageProcessor.create({
      concurrency: config.imageConcurrency,
      maxQueue: config.imageQueue,
      tempDir: spoolDir,
    });
    if (!images.heifDecoder)
      logger.warn('heif-dec not found: HEIC/HEIF uploads are accepted but get no thumbnails');
    const video = await VideoTools.find({
      ffprobe: config.ffprobePath,
      ffmpeg: config.ffmpegPath,
      tempDir: spoolDir,
      timeoutMs: config.mediaToolTimeout * 1000,
      concurrency: config.imageConcurrency,
      maxQueue: config.imageQueue,
    });
    if (!video) {
      logger.warn(
        `${config.ffprobePath}/${config.ffmpegPath} not found: videos and audio are stored with media null and videos get no poster`,
      );
    }
    const metadata = new MetadataReader({ images, video, enabled: config.mediaMetadata });
    const repo = new MediaRepo(database.db, database.dialect);
    const policy = new TypePolicy(config.allowedTypes);
    const ingest = new Ingest({
      storage,
      scanner,
      metadata,
      repo,
      policy,
      metrics,
      maxUploadBytes: config.maxUploadBytes,
      quotaBytes: config.quotaBytes,
      spoolDir,
      audit,
      // ThumbnailsAhead is built below; an upload is stored only once the services run.
      stored: (item) => ahead?.stored(item),
    });
    const secret = await loadHmacKey(config.linkKeyFile);
    const media = new MediaService({
      repo,
      storage,
      cursors: new Signer(secret, 'cursor'),
      links: new Signer(secret, 'link-record'),
      legacyLinks: new Signer(secret, 'link'),
      bus,
      cacheTtlMs,
      trashDays: config.trashDays,
      ...(options.clock ? { clock: options.clock } : {}),
      // Thumbnails is built below; a deletion comes only once the services run.
      deleted: async (id) => {
        ahead?.forget(id);
        await thumbnails.forget(id);
      },
    });
    const tus = new TusUploads({
      datastore: await createTusStore(config),
      ingest,
      repo,
      policy,
      scanner,
      metrics,
      spoolDir,
      maxUploadBytes: config.maxUploadBytes,
      quotaBytes: config.quotaBytes,
      expirySeconds: config.uploadExpiry,
      logger,
      locker,
    });
    const renditionCache = new RenditionCache(database.db, storage, {
      budgetBytes: config.renditionCacheBytes,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const thumbnails = new Thumbnails({
      storage,
      images,
      source: mediaImageSource(storage, spoolDir, video),
      cache: renditionCache,
    });
    const ahead = config.thumbnailsAhead
      ? new ThumbnailsAhead({
          thumbnails,
          size: defaultThumbnailSize(config.thumbnailSizes),
          logger,
          metrics,
        })
      : null;
    if (ahead) closers.push(() => ahead.close());
    const sweeper = new Sweeper({
      storage,
      repo,
      sessions,
      scratch,
      spoolRoot,
      logger,
      tus,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.sweepScheduler ? { scheduler: options.sweepScheduler } : {}),
    });
    const DAY_MS = 86_400_000;
    sweeper.addStep({ name: 'trash', run: ({ now }) => media.purgeTrash(now) });
    sweeper.addStep({
      name: 'old audit entries',
      run: ({ now }) => audit.purgeBefore(now - config.auditDays * DAY_MS),
    });
    sweeper.addStep({ name: 'rendition cache', run: () => renditionCache.reconcile() });
    sweeper.start();
    closers.push(() => sweeper.stop());
    const backfill = new MetadataBackfill({
      repo,
      storage,
      reader: metadata,
      spoolDir,
      logger,
      ...(options.backfillScheduler ? { scheduler: options.backfillScheduler } : {}),
    });
    if (config.mediaMetadata) backfill.start();
    closers.push(() => backfill.stop());
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
      counters,
      redis,
      storage,
      scanner,
      images,
      repo,
      ingest,
      media,
      sweeper,
      tus,
      audit,
      thumbnails,
      video,
      metadata,
      backfill,
      renditionCache,
      readiness: new Readiness(
        {
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
        { timeoutMs, breakers: redis ? [databaseBreaker, redisBreaker] : [databaseBreaker] },
      ),
      close: closeAll,
    };
    closers.push(async () => services.readiness.close());
    return services;
  } catch (error) {
    await closeAll();
    throw error;
  }
}
