import path from 'node:path';
import net from 'node:net';
import { parseClamdUrl } from './scan/clamd.ts';

/**
 * Configuration is read from the environment once, at start, and passed down as this typed object;
 * nothing else reads process.env. Every invalid variable is reported, one line each, naming it.
 */
export type StorageConfig =
  | {
      kind: 'local';
      dir: string;
      /** Blobs readable by the group (0640, folders 0750): for nginx sending them (accel). */
      groupReadable?: boolean;
    }
  | {
      kind: 's3';
      endpoint: string | undefined;
      bucket: string;
      region: string;
      accessKeyId: string | undefined;
      secretAccessKey: string | undefined;
      forcePathStyle: boolean;
    };

export type DatabaseConfig =
  | { kind: 'sqlite'; file: string }
  | { kind: 'postgres'; url: string; poolSize: number; statementTimeoutMs: number };

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  usersFile: string;
  database: DatabaseConfig;
  storage: StorageConfig;
  redisUrl: string | undefined;
  clamd: string | undefined;
  maxUploadBytes: number;
  allowedTypes: string[];
  quotaBytes: number | null;
  accessTokenTtl: number;
  refreshTokenTtl: number;
  linkMaxTtl: number;
  corsOrigins: string[];
  trustProxy: string[] | undefined;
  logLevel: string;
  jwtKeyFile: string;
  linkKeyFile: string;
  thumbnailSizes: number[];
  /** Each stored image's default thumbnail is rendered in the background (STOWAGE_THUMBNAILS_AHEAD). */
  thumbnailsAhead: boolean;
  /** Whether GET /api/media/{id}/render exists (STOWAGE_RENDER). */
  render: boolean;
  /** Renditions rendered per minute per user, or per client address without a token; 0 is off. */
  renderRateLimit: number;
  /** Most bytes all stored thumbnails and renditions take together (least recently used go first). */
  renditionCacheBytes: number;
  /** Requests per minute per authenticated user (or client address); 0 turns the limit off. */
  userRateLimit: number;
  /** Failed logins per client address across all usernames before that address is locked out. */
  loginAddressLimit: number;
  /** How long an unfinished tus upload is kept, seconds. */
  uploadExpiry: number;
  /** Images decoded at once, and requests allowed to wait for a slot (past that: 503). */
  imageConcurrency: number;
  imageQueue: number;
  /** Live sessions one user may hold; a new login past it ends their least recently used one. */
  sessionsPerUser: number;
  /** Longest a session lives from its login, seconds, however often it is refreshed. */
  sessionMaxAge: number;
  /** Days a deleted item stays in the trash before the sweeper removes it; 0: no trash. */
  trashDays: number;
  /** Days an audit log entry is kept. */
  auditDays: number;
  /**
   * How long a call to PostgreSQL or Redis (a query, a command, a connection attempt) may take
   * before it counts as failed, so that an unreachable dependency is answered with 503 in time.
   */
  dependencyTimeoutMs: number;
  /**
   * Seconds a connection may stay silent while the server waits for the client (headers, a body
   * that stops arriving, an idle keep-alive connection); then 408 and close.
   */
  idleTimeout: number;
  /** Seconds for the headers to arrive, and again for a small (non-upload) body; then 408 and close. */
  bodyTimeout: number;
  /** Requests per minute per client address for everything that is not a signed-in user's; 0 is off. */
  anonRateLimit: number;
  /** When set, GET /metrics requires `Authorization: Bearer <this>`. */
  metricsToken: string | undefined;
  /** The web console at / and /app/ (STOWAGE_CONSOLE), built into this folder by scripts/build-console.ts. */
  console: { enabled: boolean; dir: string };
  /**
   * Local storage behind nginx: the URI prefix (starting and ending with "/") of nginx's internal
   * location for the blobs; content answers carry X-Accel-Redirect and nginx sends the bytes.
   */
  accelRedirect: string | undefined;
  /** S3 storage: content answers are 302s to a presigned GET of the object. */
  s3Redirect: boolean;
  /** Camera data, placeholders and video/audio probes at upload and in the backfill. */
  mediaMetadata: boolean;
  /** The ffprobe and ffmpeg commands (names looked up on PATH, or paths). */
  ffprobePath: string;
  ffmpegPath: string;
  /** Longest one ffprobe or ffmpeg run may take, seconds; then it is killed. */
  mediaToolTimeout: number;
}

export const DEFAULT_ALLOWED_TYPES = [
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
  'video/matroska',
  'audio/mpeg',
  'audio/mp4',
  'audio/x-m4a',
  'audio/aac',
  'audio/ogg',
  'audio/opus',
  'audio/wav',
  'audio/flac',
  'application/pdf',
];

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$/;

/** A variable's trimmed value (unset when empty), and a boolean one; problems are collected. */
function envReaders(env: Env, problems: string[]) {
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === '' ? undefined : v;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = get(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    problems.push(`${name}: must be true or false, got ${JSON.stringify(raw)}`);
    return fallback;
  };
  return { get, bool };
}

type S3StorageConfig = Extract<StorageConfig, { kind: 's3' }>;

/** The STOWAGE_S3_* settings: the server's storage, or the target of `stowage migrate --to-storage s3`. */
function readS3Settings(
  get: (name: string) => string | undefined,
  bool: (name: string, fallback: boolean) => boolean,
  problems: string[],
  requiredWhen: string,
): S3StorageConfig {
  const bucket = get('STOWAGE_S3_BUCKET');
  if (!bucket) problems.push(`STOWAGE_S3_BUCKET: required ${requiredWhen}`);
  const endpoint = get('STOWAGE_S3_ENDPOINT');
  if (endpoint !== undefined && !URL.canParse(endpoint)) {
    problems.push(`STOWAGE_S3_ENDPOINT: not a URL: ${JSON.stringify(endpoint)}`);
  }
  return {
    kind: 's3',
    endpoint,
    bucket: bucket ?? '',
    region: get('STOWAGE_S3_REGION') ?? 'us-east-1',
    accessKeyId: get('STOWAGE_S3_ACCESS_KEY_ID'),
    secretAccessKey: get('STOWAGE_S3_SECRET_ACCESS_KEY'),
    forcePathStyle: bool('STOWAGE_S3_FORCE_PATH_STYLE', false),
  };
}

export function loadConfig(env: Env, cwd: string = process.cwd()): Config {
  const problems: string[] = [];
  const { get, bool } = envReaders(env, problems);
  const int = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}: must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return Number(raw);
  };
  const list = (name: string): string[] =>
    (get(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);

  const dataDir = path.resolve(cwd, get('STOWAGE_DATA_DIR') ?? './data');
  const host = get('STOWAGE_HOST') ?? '127.0.0.1';
  if (net.isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host)) {
    problems.push(`STOWAGE_HOST: not an address or host name: ${JSON.stringify(host)}`);
  }

  let database: DatabaseConfig = { kind: 'sqlite', file: path.join(dataDir, 'stowage.db') };
  const dbUrl = get('STOWAGE_DATABASE_URL');
  if (dbUrl !== undefined) {
    if (/^postgres(ql)?:\/\//.test(dbUrl)) {
      database = {
        kind: 'postgres',
        url: dbUrl,
        poolSize: int('STOWAGE_DATABASE_POOL_SIZE', 10, 1, 1000),
        statementTimeoutMs: int('STOWAGE_DATABASE_STATEMENT_TIMEOUT_MS', 15_000, 0),
      };
    } else if (dbUrl.startsWith('sqlite:')) {
      database = {
        kind: 'sqlite',
        file: path.resolve(cwd, dbUrl.slice('sqlite:'.length).replace(/^\/\//, '')),
      };
    } else {
      problems.push('STOWAGE_DATABASE_URL: must start with postgres:// or sqlite:');
    }
  }

  let storage: StorageConfig = { kind: 'local', dir: path.join(dataDir, 'blobs') };
  const storageKind = get('STOWAGE_STORAGE') ?? 'local';
  if (storageKind === 's3') {
    storage = readS3Settings(get, bool, problems, 'when STOWAGE_STORAGE=s3');
  } else if (storageKind !== 'local') {
    problems.push(`STOWAGE_STORAGE: must be local or s3, got ${JSON.stringify(storageKind)}`);
  }

  const redisUrl = get('STOWAGE_REDIS_URL');
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) {
    problems.push('STOWAGE_REDIS_URL: must start with redis:// or rediss://');
  }
  const clamd = get('STOWAGE_CLAMD');
  if (clamd !== undefined) {
    // The scanner's own parser: what starts is exactly what the scanner can connect to.
    try {
      parseClamdUrl(clamd);
    } catch (error) {
      problems.push(`STOWAGE_CLAMD: ${(error as Error).message}`);
    }
  }

  const allowedTypes =
    get('STOWAGE_ALLOWED_TYPES') === undefined ? DEFAULT_ALLOWED_TYPES : list('STOWAGE_ALLOWED_TYPES');
  const badTypes = allowedTypes.filter((t) => !MIME_RE.test(t.toLowerCase()));
  if (badTypes.length > 0) problems.push(`STOWAGE_ALLOWED_TYPES: not MIME types: ${badTypes.join(', ')}`);

  const corsOrigins = list('STOWAGE_CORS_ORIGINS');
  for (const origin of corsOrigins) {
    // Origins are compared exactly; a wildcard pattern would silently never match.
    if (origin.includes('*') || !URL.canParse(origin) || new URL(origin).origin !== origin) {
      problems.push(
        `STOWAGE_CORS_ORIGINS: not an exact origin like https://app.example.com: ${JSON.stringify(origin)}`,
      );
    }
  }
  const trustRaw = get('STOWAGE_TRUST_PROXY');
  const trustProxy = trustRaw === undefined ? undefined : list('STOWAGE_TRUST_PROXY');
  for (const entry of trustProxy ?? []) {
    const [addr, bits, ...rest] = entry.split('/');
    const family = net.isIP(addr ?? '');
    if (
      family === 0 ||
      rest.length > 0 ||
      (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)))
    ) {
      problems.push(`STOWAGE_TRUST_PROXY: not an address or CIDR range: ${JSON.stringify(entry)}`);
    }
  }

  const logLevel = get('STOWAGE_LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel))
    problems.push(`STOWAGE_LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}`);

  const sizesRaw = list('STOWAGE_THUMBNAIL_SIZES');
  const thumbnailSizes = sizesRaw.length === 0 ? [256, 512, 1024] : sizesRaw.map(Number);
  if (thumbnailSizes.some((n) => !Number.isInteger(n) || n < 16 || n > 4096)) {
    problems.push('STOWAGE_THUMBNAIL_SIZES: must be whole numbers from 16 to 4096, comma-separated');
  }

  // One or more URI path segments of unreserved characters: the prefix goes into a response header
  // and nginx matches it against a location, so nothing that needs escaping may appear in it.
  const accelRedirect = get('STOWAGE_ACCEL_REDIRECT');
  if (accelRedirect !== undefined) {
    if (!/^\/([A-Za-z0-9_~-][A-Za-z0-9._~-]*\/)+$/.test(accelRedirect)) {
      problems.push(
        `STOWAGE_ACCEL_REDIRECT: must be a path like /_stowage_blobs/ (starting and ending with /), got ${JSON.stringify(accelRedirect)}`,
      );
    } else if (storage.kind !== 'local') {
      problems.push('STOWAGE_ACCEL_REDIRECT: needs STOWAGE_STORAGE=local (nginx serves files from disk)');
    }
  }
  if (accelRedirect !== undefined && storage.kind === 'local') storage.groupReadable = true;
  const s3Redirect = bool('STOWAGE_S3_REDIRECT', false);
  if (s3Redirect && storage.kind !== 's3') problems.push('STOWAGE_S3_REDIRECT: needs STOWAGE_STORAGE=s3');

  const quota = int('STOWAGE_QUOTA_BYTES', 0, 0);
  // An RFC 6750 b64token, long enough not to be guessed: it guards the metrics of the whole server.
  const metricsToken = get('STOWAGE_METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[A-Za-z0-9._~+/-]{16,}=*$/.test(metricsToken)) {
    problems.push(
      'STOWAGE_METRICS_TOKEN: must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (e.g. openssl rand -hex 32)',
    );
  }
  const config: Config = {
    host,
    port: int('STOWAGE_PORT', 8080, 0, 65535),
    dataDir,
    usersFile: path.resolve(cwd, get('STOWAGE_USERS_FILE') ?? path.join(dataDir, 'users')),
    database,
    storage,
    redisUrl,
    clamd,
    maxUploadBytes: int('STOWAGE_MAX_UPLOAD_BYTES', 2 * 1024 ** 3, 1),
    allowedTypes: allowedTypes.map((t) => t.toLowerCase()),
    quotaBytes: quota === 0 ? null : quota,
    // Down to 1 s: short-lived deployments and tests want tokens that expire quickly, and a
    // session (not the token) is what a client keeps; each refresh costs one small request.
    accessTokenTtl: int('STOWAGE_ACCESS_TOKEN_TTL', 900, 1, 86_400),
    refreshTokenTtl: int('STOWAGE_REFRESH_TOKEN_TTL', 2_592_000, 60, 31_536_000),
    linkMaxTtl: int('STOWAGE_LINK_MAX_TTL', 86_400, 1, 31_536_000),
    corsOrigins,
    trustProxy,
    logLevel,
    jwtKeyFile: path.resolve(
      cwd,
      get('STOWAGE_JWT_KEY_FILE') ?? path.join(dataDir, 'keys', 'jwt-ed25519.pem'),
    ),
    linkKeyFile: path.resolve(
      cwd,
      get('STOWAGE_LINK_KEY_FILE') ?? path.join(dataDir, 'keys', 'link-hmac.key'),
    ),
    thumbnailSizes,
    thumbnailsAhead: bool('STOWAGE_THUMBNAILS_AHEAD', true),
    render: bool('STOWAGE_RENDER', true),
    renderRateLimit: int('STOWAGE_RENDER_RATE_LIMIT', 300, 0),
    renditionCacheBytes: int('STOWAGE_RENDITION_CACHE_BYTES', 1024 ** 3, 1),
    userRateLimit: int('STOWAGE_RATE_LIMIT_PER_MINUTE', 1200, 0),
    loginAddressLimit: int('STOWAGE_LOGIN_ADDRESS_LIMIT', 50, 1),
    uploadExpiry: int('STOWAGE_UPLOAD_EXPIRY', 86_400, 60),
    imageConcurrency: int('STOWAGE_IMAGE_CONCURRENCY', 2, 1, 64),
    imageQueue: int('STOWAGE_IMAGE_QUEUE', 32, 0, 10_000),
    sessionsPerUser: int('STOWAGE_SESSIONS_PER_USER', 50, 1, 100_000),
    sessionMaxAge: int('STOWAGE_SESSION_MAX_AGE', 2_592_000, 60, 315_360_000),
    trashDays: int('STOWAGE_TRASH_DAYS', 0, 0, 36_500),
    auditDays: int('STOWAGE_AUDIT_DAYS', 90, 1, 36_500),
    dependencyTimeoutMs: int('STOWAGE_DEPENDENCY_TIMEOUT_MS', 2000, 100, 60_000),
    idleTimeout: int('STOWAGE_IDLE_TIMEOUT', 60, 1, 3600),
    bodyTimeout: int('STOWAGE_BODY_TIMEOUT', 30, 1, 3600),
    anonRateLimit: int('STOWAGE_ANON_RATE_LIMIT_PER_MINUTE', 3000, 0),
    metricsToken,
    console: {
      enabled: bool('STOWAGE_CONSOLE', true),
      dir: path.resolve(import.meta.dirname, '..', 'console', 'dist'),
    },
    accelRedirect,
    s3Redirect,
    mediaMetadata: bool('STOWAGE_MEDIA_METADATA', true),
    ffprobePath: get('STOWAGE_FFPROBE_PATH') ?? 'ffprobe',
    ffmpegPath: get('STOWAGE_FFMPEG_PATH') ?? 'ffmpeg',
    mediaToolTimeout: int('STOWAGE_MEDIA_TOOL_TIMEOUT', 30, 1, 3600),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** What `stowage migrate` reads besides the server's own settings (which describe the source). */
export interface MigrateConfig {
  /** The target of `--to-storage s3`: the STOWAGE_S3_* settings, read whatever STOWAGE_STORAGE says. */
  s3: S3StorageConfig;
  /**
   * Fault injection for the tests only (STOWAGE_MIGRATE_TEST_PAUSE=rows:N or files:N): the run
   * stops and waits, never finishing, once N rows (inside that batch's open transaction) or N
   * files (copied, before the batch is recorded) are copied, so that a test can kill it there.
   */
  testPause: { stage: 'rows' | 'files'; after: number } | undefined;
}

/** Throws ConfigError listing every invalid variable; `s3` problems only when `wantS3`. */
export function loadMigrateConfig(env: Env, wantS3: boolean): MigrateConfig {
  const problems: string[] = [];
  const { get, bool } = envReaders(env, problems);
  const s3Problems: string[] = [];
  const s3 = readS3Settings(get, bool, s3Problems, 'for migrate --to-storage s3');
  if (wantS3) problems.push(...s3Problems);
  let testPause: MigrateConfig['testPause'];
  const pause = get('STOWAGE_MIGRATE_TEST_PAUSE');
  if (pause !== undefined) {
    const found = /^(rows|files):([1-9]\d{0,8})$/.exec(pause);
    if (found?.[1] === 'rows' || found?.[1] === 'files') {
      testPause = { stage: found[1], after: Number(found[2]) };
    } else {
      problems.push(`STOWAGE_MIGRATE_TEST_PAUSE: must be rows:N or files:N, got ${JSON.stringify(pause)}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { s3, testPause };
}
