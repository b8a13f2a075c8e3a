import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

const CWD = '/srv/stowage';

/** The problems loadConfig reports for `env`, or [] when it accepts it. */
function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env, CWD);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

/** Asserts that `env` is refused with exactly one problem line, naming `variable`. */
function expectRefused(env: Record<string, string>, variable: string): void {
  const found = problems(env);
  expect(found, JSON.stringify(env)).toHaveLength(1);
  expect(found[0]).toMatch(new RegExp(`^${variable}\\b`));
  expect(found[0]).not.toContain('\n');
}

describe('defaults', () => {
  it('match the contract table', () => {
    const config = loadConfig({}, CWD);
    const dataDir = path.join(CWD, 'data');
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      dataDir,
      usersFile: path.join(dataDir, 'users'),
      database: { kind: 'sqlite' },
      storage: { kind: 'local' },
      redisUrl: undefined,
      clamd: undefined,
      maxUploadBytes: 2_147_483_648,
      quotaBytes: null,
      accessTokenTtl: 900,
      refreshTokenTtl: 2_592_000,
      linkMaxTtl: 86_400,
      corsOrigins: [],
      trustProxy: undefined,
      logLevel: 'info',
    });
    // SQLite and local blobs live in the data dir.
    if (config.database.kind !== 'sqlite' || config.storage.kind !== 'local') throw new Error('unreachable');
    expect(path.dirname(config.database.file)).toBe(dataDir);
    expect(config.storage.dir.startsWith(dataDir + path.sep)).toBe(true);
  });

  it('allow the contract’s media types and no HTML, SVG, script or executable', () => {
    const { allowedTypes } = loadConfig({}, CWD);
    for (const type of [
      'image/jpeg',
      'image/png',
      'image/gif',
      'image/webp',
      'image/avif',
      'image/heic',
      'image/heif',
      'image/tiff',
      'video/mp4',
      'video/quicktime',
      'video/webm',
      'audio/mpeg',
      'audio/ogg',
      'audio/wav',
      'audio/flac',
      'application/pdf',
    ]) {
      expect(allowedTypes).toContain(type);
    }
    expect(allowedTypes.some((t) => /matroska/.test(t))).toBe(true);
    expect(allowedTypes.some((t) => /opus/.test(t))).toBe(true);
    expect(allowedTypes.some((t) => /m4a|aac|audio\/mp4/.test(t))).toBe(true);
    for (const type of allowedTypes) {
      expect(type).not.toMatch(/html|svg|xml|javascript|ecmascript|x-msdownload|executable|x-sh|\*/);
    }
  });

  it('treat empty variables as unset and resolve relative paths against the working directory', () => {
    const config = loadConfig(
      { STOWAGE_PORT: '', STOWAGE_DATA_DIR: 'var/media', STOWAGE_USERS_FILE: '../users' },
      CWD,
    );
    expect(config.port).toBe(8080);
    expect(config.dataDir).toBe(path.join(CWD, 'var/media'));
    expect(config.usersFile).toBe(path.resolve(CWD, '../users'));
  });
});

describe('accepted values', () => {
  it('reads each variable', () => {
    const config = loadConfig(
      {
        STOWAGE_HOST: '0.0.0.0',
        STOWAGE_PORT: '9000',
        STOWAGE_DATABASE_URL: 'postgresql://u:p@db:5432/stowage',
        STOWAGE_STORAGE: 's3',
        STOWAGE_S3_BUCKET: 'media',
        STOWAGE_S3_ENDPOINT: 'http://minio:9000',
        STOWAGE_S3_FORCE_PATH_STYLE: 'true',
        STOWAGE_REDIS_URL: 'redis://cache:6379',
        STOWAGE_CLAMD: 'tcp://clamd:3310',
        STOWAGE_MAX_UPLOAD_BYTES: '1000',
        STOWAGE_ALLOWED_TYPES: 'image/*, application/pdf',
        STOWAGE_QUOTA_BYTES: '5000',
        STOWAGE_CORS_ORIGINS: 'https://app.example.com,http://localhost:5173',
        STOWAGE_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1, fd00::/8',
        STOWAGE_LOG_LEVEL: 'debug',
      },
      CWD,
    );
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 9000,
      database: { kind: 'postgres', url: 'postgresql://u:p@db:5432/stowage' },
      storage: { kind: 's3', bucket: 'media', endpoint: 'http://minio:9000', forcePathStyle: true },
      redisUrl: 'redis://cache:6379',
      clamd: 'tcp://clamd:3310',
      maxUploadBytes: 1000,
      allowedTypes: ['image/*', 'application/pdf'],
      quotaBytes: 5000,
      corsOrigins: ['https://app.example.com', 'http://localhost:5173'],
      trustProxy: ['10.0.0.0/8', '127.0.0.1', 'fd00::/8'],
      logLevel: 'debug',
    });
    expect(loadConfig({ STOWAGE_CLAMD: 'unix:/run/clamav/clamd.ctl' }, CWD).clamd).toBe(
      'unix:/run/clamav/clamd.ctl',
    );
    // An IPv6 literal, as the scanner accepts it (the full table: test/scan/clamd-url.test.ts).
    expect(loadConfig({ STOWAGE_CLAMD: 'tcp://[::1]:3310' }, CWD).clamd).toBe('tcp://[::1]:3310');
  });
});

describe('invalid values are refused, naming the variable', () => {
  it.each(['abc', '-1', '65536', '80.5', '8080x', '0x50'])('STOWAGE_PORT=%s', (value) => {
    expectRefused({ STOWAGE_PORT: value }, 'STOWAGE_PORT');
  });

  it.each(['maybe', '2', 'yes please'])('a boolean: STOWAGE_S3_FORCE_PATH_STYLE=%s', (value) => {
    expectRefused(
      { STOWAGE_STORAGE: 's3', STOWAGE_S3_BUCKET: 'b', STOWAGE_S3_FORCE_PATH_STYLE: value },
      'STOWAGE_S3_FORCE_PATH_STYLE',
    );
  });

  it.each(['mysql://db/stowage', 'postgres:/db', 'http://db:5432', 'stowage.db'])(
    'STOWAGE_DATABASE_URL=%s',
    (value) => {
      expectRefused({ STOWAGE_DATABASE_URL: value }, 'STOWAGE_DATABASE_URL');
    },
  );

  it('s3 without a bucket, and unknown storage kinds', () => {
    expectRefused({ STOWAGE_STORAGE: 's3' }, 'STOWAGE_S3_BUCKET');
    expectRefused({ STOWAGE_STORAGE: 'ftp' }, 'STOWAGE_STORAGE');
  });

  it.each([
    'clamd:3310',
    'tcp://clamd',
    'http://clamd:3310',
    'tcp://clamd:port',
    'tcp://clamd:99999',
    'unix:',
    'unix:relative/clamd.sock',
  ])('STOWAGE_CLAMD=%s', (value) => {
    expectRefused({ STOWAGE_CLAMD: value }, 'STOWAGE_CLAMD');
  });

  it.each([
    '*',
    'https://app.example.com/path',
    'https://app.example.com/',
    'app.example.com',
    'https://*.example.com',
  ])('STOWAGE_CORS_ORIGINS=%s', (value) => {
    expectRefused({ STOWAGE_CORS_ORIGINS: value }, 'STOWAGE_CORS_ORIGINS');
  });

  it.each(['verbose', 'INFO ', 'warning'])('STOWAGE_LOG_LEVEL=%s', (value) => {
    expectRefused({ STOWAGE_LOG_LEVEL: value }, 'STOWAGE_LOG_LEVEL');
  });

  it.each(['jpeg', 'image/', 'image/jpeg;q=1', '*/*', 'image/jpeg,text'])(
    'STOWAGE_ALLOWED_TYPES=%s',
    (value) => {
      expectRefused({ STOWAGE_ALLOWED_TYPES: value }, 'STOWAGE_ALLOWED_TYPES');
    },
  );

  it('other variables: redis url, proxy list, sizes and TTLs', () => {
    expectRefused({ STOWAGE_REDIS_URL: 'cache:6379' }, 'STOWAGE_REDIS_URL');
    for (const proxy of ['my-proxy', '10.0.0.0/33', '::1/129', '10.0.0.0/8/8', '10.0.0.0/x']) {
      expectRefused({ STOWAGE_TRUST_PROXY: proxy }, 'STOWAGE_TRUST_PROXY');
    }
    expectRefused({ STOWAGE_MAX_UPLOAD_BYTES: '2GB' }, 'STOWAGE_MAX_UPLOAD_BYTES');
    expectRefused({ STOWAGE_QUOTA_BYTES: '-5' }, 'STOWAGE_QUOTA_BYTES');
    expectRefused({ STOWAGE_ACCESS_TOKEN_TTL: '15m' }, 'STOWAGE_ACCESS_TOKEN_TTL');
    expectRefused({ STOWAGE_REFRESH_TOKEN_TTL: 'forever' }, 'STOWAGE_REFRESH_TOKEN_TTL');
    expectRefused({ STOWAGE_LINK_MAX_TTL: '0' }, 'STOWAGE_LINK_MAX_TTL');
  });

  it('reports every bad variable at once, one line each', () => {
    const found = problems({ STOWAGE_PORT: 'abc', STOWAGE_LOG_LEVEL: 'loud', STOWAGE_CORS_ORIGINS: '*' });
    expect(found).toHaveLength(3);
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual([
      'STOWAGE_CORS_ORIGINS',
      'STOWAGE_LOG_LEVEL',
      'STOWAGE_PORT',
    ]);
  });
});

describe('token and session lifetimes', () => {
  it('accepts access tokens down to 1 second, and refuses 0', () => {
    for (const ttl of ['1', '5', '9']) {
      expect(loadConfig({ STOWAGE_ACCESS_TOKEN_TTL: ttl }, CWD).accessTokenTtl).toBe(Number(ttl));
    }
    expectRefused({ STOWAGE_ACCESS_TOKEN_TTL: '0' }, 'STOWAGE_ACCESS_TOKEN_TTL');
    expectRefused({ STOWAGE_ACCESS_TOKEN_TTL: '86401' }, 'STOWAGE_ACCESS_TOKEN_TTL');
  });

  it('limits sessions per user to 50 and their age to 30 days by default', () => {
    const config = loadConfig({}, CWD);
    expect(config.sessionsPerUser).toBe(50);
    expect(config.sessionMaxAge).toBe(2_592_000);
    const set = loadConfig({ STOWAGE_SESSIONS_PER_USER: '3', STOWAGE_SESSION_MAX_AGE: '3600' }, CWD);
    expect(set.sessionsPerUser).toBe(3);
    expect(set.sessionMaxAge).toBe(3600);
  });

  it.each(['0', '-1', 'many', '1.5'])('refuses STOWAGE_SESSIONS_PER_USER=%s', (value) => {
    expectRefused({ STOWAGE_SESSIONS_PER_USER: value }, 'STOWAGE_SESSIONS_PER_USER');
  });

  it.each(['0', '59', '30d', '315360001'])('refuses STOWAGE_SESSION_MAX_AGE=%s', (value) => {
    expectRefused({ STOWAGE_SESSION_MAX_AGE: value }, 'STOWAGE_SESSION_MAX_AGE');
  });
});

describe('STOWAGE_DEPENDENCY_TIMEOUT_MS', () => {
  it('defaults to 2 s, so that two dependencies timing out in one request still answer within 5 s', () => {
    expect(loadConfig({}, CWD).dependencyTimeoutMs).toBe(2000);
    expect(loadConfig({ STOWAGE_DEPENDENCY_TIMEOUT_MS: '750' }, CWD).dependencyTimeoutMs).toBe(750);
  });

  it.each(['0', '99', '60001', '2s', '-1', '1.5'])('refuses %s', (value) => {
    expectRefused({ STOWAGE_DEPENDENCY_TIMEOUT_MS: value }, 'STOWAGE_DEPENDENCY_TIMEOUT_MS');
  });
});

describe('request timeouts (STOWAGE_IDLE_TIMEOUT, STOWAGE_BODY_TIMEOUT)', () => {
  it('default to 60 s idle and 30 s for headers and small bodies', () => {
    expect(loadConfig({}, CWD)).toMatchObject({ idleTimeout: 60, bodyTimeout: 30 });
  });

  it('read whole seconds', () => {
    expect(loadConfig({ STOWAGE_IDLE_TIMEOUT: '5', STOWAGE_BODY_TIMEOUT: '2' }, CWD)).toMatchObject({
      idleTimeout: 5,
      bodyTimeout: 2,
    });
  });

  it.each(['0', '-1', '1.5', '30s', '3601'])('refuse %s', (value) => {
    expectRefused({ STOWAGE_IDLE_TIMEOUT: value }, 'STOWAGE_IDLE_TIMEOUT');
    expectRefused({ STOWAGE_BODY_TIMEOUT: value }, 'STOWAGE_BODY_TIMEOUT');
  });
});

describe('anonymous rate limit and metrics token', () => {
  it('default to 3000 anonymous requests a minute per address and public metrics', () => {
    expect(loadConfig({}, CWD)).toMatchObject({ anonRateLimit: 3000, metricsToken: undefined });
  });

  it('read a limit (0 turns it off) and a token', () => {
    const token = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
    expect(
      loadConfig({ STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: '0', STOWAGE_METRICS_TOKEN: token }, CWD),
    ).toMatchObject({ anonRateLimit: 0, metricsToken: token });
    expect(loadConfig({ STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: '120' }, CWD).anonRateLimit).toBe(120);
  });

  it.each(['-1', 'lots', '60/min'])('refuse STOWAGE_ANON_RATE_LIMIT_PER_MINUTE=%s', (value) => {
    expectRefused({ STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: value }, 'STOWAGE_ANON_RATE_LIMIT_PER_MINUTE');
  });

  it.each([
    'short',
    'has spaces in the middle of it',
    'quote"d-but-long-enough',
    'ünïcode-token-long-enough',
  ])('refuse STOWAGE_METRICS_TOKEN=%s, without echoing it', (value) => {
    expectRefused({ STOWAGE_METRICS_TOKEN: value }, 'STOWAGE_METRICS_TOKEN');
    expect(problems({ STOWAGE_METRICS_TOKEN: value })[0]).not.toContain(value);
  });
});

describe('serving large files: STOWAGE_ACCEL_REDIRECT and STOWAGE_S3_REDIRECT', () => {
  it('are off by default', () => {
    expect(loadConfig({}, CWD)).toMatchObject({ accelRedirect: undefined, s3Redirect: false });
  });

  it('accept an nginx location prefix with local storage, and on with S3 storage', () => {
    for (const prefix of ['/_stowage_blobs/', '/internal/blobs/', '/a/']) {
      expect(loadConfig({ STOWAGE_ACCEL_REDIRECT: prefix }, CWD).accelRedirect).toBe(prefix);
    }
    // nginx's worker reads the files: they are kept group-readable then, private otherwise.
    expect(loadConfig({ STOWAGE_ACCEL_REDIRECT: '/a/' }, CWD).storage).toMatchObject({ groupReadable: true });
    expect(loadConfig({}, CWD).storage).not.toMatchObject({ groupReadable: true });
    const s3 = { STOWAGE_STORAGE: 's3', STOWAGE_S3_BUCKET: 'media' };
    expect(loadConfig({ ...s3, STOWAGE_S3_REDIRECT: 'on' }, CWD).s3Redirect).toBe(true);
    expect(loadConfig({ ...s3, STOWAGE_S3_REDIRECT: 'off' }, CWD).s3Redirect).toBe(false);
  });

  it.each([
    '_stowage_blobs/',
    '/_stowage_blobs',
    '/',
    '//',
    '/../etc/',
    '/./',
    '/a b/',
    '/a?x/',
    '/%2e%2e/',
    '/a//b/',
  ])('STOWAGE_ACCEL_REDIRECT=%s is refused', (value) => {
    expectRefused({ STOWAGE_ACCEL_REDIRECT: value }, 'STOWAGE_ACCEL_REDIRECT');
  });

  it('each needs its own kind of storage', () => {
    expectRefused(
      { STOWAGE_STORAGE: 's3', STOWAGE_S3_BUCKET: 'media', STOWAGE_ACCEL_REDIRECT: '/_stowage_blobs/' },
      'STOWAGE_ACCEL_REDIRECT',
    );
    expectRefused({ STOWAGE_S3_REDIRECT: 'on' }, 'STOWAGE_S3_REDIRECT');
    expectRefused(
      { STOWAGE_STORAGE: 's3', STOWAGE_S3_BUCKET: 'media', STOWAGE_S3_REDIRECT: 'sometimes' },
      'STOWAGE_S3_REDIRECT',
    );
  });
});

describe('media metadata: STOWAGE_MEDIA_METADATA, STOWAGE_FFPROBE_PATH, STOWAGE_FFMPEG_PATH, STOWAGE_MEDIA_TOOL_TIMEOUT', () => {
  it('default to on, the commands on PATH and 30 s', () => {
    const config = loadConfig({}, CWD);
    expect({
      mediaMetadata: config.mediaMetadata,
      ffprobePath: config.ffprobePath,
      ffmpegPath: config.ffmpegPath,
      mediaToolTimeout: config.mediaToolTimeout,
    }).toEqual({ mediaMetadata: true, ffprobePath: 'ffprobe', ffmpegPath: 'ffmpeg', mediaToolTimeout: 30 });
  });

  it('read a switch, paths and whole seconds, and refuse the rest', () => {
    const config = loadConfig(
      {
        STOWAGE_MEDIA_METADATA: 'off',
        STOWAGE_FFPROBE_PATH: '/opt/ffmpeg/bin/ffprobe',
        STOWAGE_FFMPEG_PATH: '/opt/ffmpeg/bin/ffmpeg',
        STOWAGE_MEDIA_TOOL_TIMEOUT: '5',
      },
      CWD,
    );
    expect([config.mediaMetadata, config.ffprobePath, config.ffmpegPath, config.mediaToolTimeout]).toEqual([
      false,
      '/opt/ffmpeg/bin/ffprobe',
      '/opt/ffmpeg/bin/ffmpeg',
      5,
    ]);
    expectRefused({ STOWAGE_MEDIA_METADATA: 'sometimes' }, 'STOWAGE_MEDIA_METADATA');
    for (const value of ['0', '1.5', '3601']) {
      expectRefused({ STOWAGE_MEDIA_TOOL_TIMEOUT: value }, 'STOWAGE_MEDIA_TOOL_TIMEOUT');
    }
  });
});
describe('renditions on demand and the rendition cache', () => {
  it('default to on, 300 renders a minute, and 1 GiB of stored thumbnails and renditions', () => {
    expect(loadConfig({}, CWD)).toMatchObject({
      thumbnailsAhead: true,
      render: true,
      renderRateLimit: 300,
      renditionCacheBytes: 1073741824,
    });
  });

  it('read off, a limit (0 turns it off) and a budget', () => {
    expect(
      loadConfig(
        {
          STOWAGE_THUMBNAILS_AHEAD: 'off',
          STOWAGE_RENDER: 'off',
          STOWAGE_RENDER_RATE_LIMIT: '0',
          STOWAGE_RENDITION_CACHE_BYTES: '1048576',
        },
        CWD,
      ),
    ).toMatchObject({
      thumbnailsAhead: false,
      render: false,
      renderRateLimit: 0,
      renditionCacheBytes: 1048576,
    });
  });

  it.each([
    ['STOWAGE_THUMBNAILS_AHEAD', 'yes please'],
    ['STOWAGE_RENDER', 'maybe'],
    ['STOWAGE_RENDER_RATE_LIMIT', '-1'],
    ['STOWAGE_RENDER_RATE_LIMIT', '60/min'],
    ['STOWAGE_RENDITION_CACHE_BYTES', '0'],
    ['STOWAGE_RENDITION_CACHE_BYTES', '1G'],
  ])('refuse %s=%s', (name, value) => {
    expectRefused({ [name]: value }, name);
  });
});
