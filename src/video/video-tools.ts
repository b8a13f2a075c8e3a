import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { AppError } from '../errors.ts';
import { ConcurrencyLimiter, LimiterFullError } from '../util/limiter.ts';

const run = promisify(execFile);

const DETECT_TIMEOUT_MS = 5_000;
/** ffprobe's JSON for a file with a handful of streams is a few kilobytes; a flood means a bad file. */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
/**
 * The demuxers ffprobe and ffmpeg may use on an upload, and the one protocol: ffmpeg picks the
 * demuxer from the content, not from our type check, and some (HLS and concat playlists, for
 * instance) open further files or URLs named inside the file, which would let an upload read
 * other files on the server or reach the network. These cover the container types Stowage can
 * accept as video or audio (MP4/QuickTime/M4A, Matroska/WebM, MP3, AAC, Ogg/Opus, WAV, FLAC, AVI,
 * MPEG-TS/PS, FLV, ASF/WMV); `mov` and `matroska` each name a demuxer of several formats.
 */
const INPUT_LIMITS = [
  ...['-protocol_whitelist', 'file'],
  ...['-format_whitelist', 'mov,matroska,mp3,aac,ogg,wav,flac,avi,mpegts,mpeg,flv,asf'],
];
/** The poster is taken about this far in, past fades from black, or from the start of a shorter file. */
const POSTER_AT_MS = 1_000;

/** What a video or audio file holds, as the item's `media` field shows it. */
export interface MediaInfo {
  durationMs: number | null;
  /** As displayed: the container's rotation applied (a 90° turn swaps them). Null without video. */
  width: number | null;
  height: number | null;
  videoCodec: string | null;
  audioCodec: string | null;
  frameRate: number | null;
  /** Bits per second over the whole file. */
  bitrate: number | null;
}

export interface ProbeResult {
  media: MediaInfo;
  /** The container's (or a stream's) creation_time, ms since the epoch, or null. */
  takenAt: number | null;
}

export interface VideoToolsOptions {
  ffprobe: string;
  ffmpeg: string;
  /** Where extracted posters are written; none outlives its call. */
  tempDir: string;
  /** Per run of either tool; past it the process is killed. */
  timeoutMs: number;
  /** Tool runs at once, and calls allowed to wait for a slot (past that: 503), as for images. */
  concurrency: number;
  maxQueue: number;
}

/**
 * ffprobe and ffmpeg (Debian's `ffmpeg` package) as child processes: they read what no library of
 * ours can, and a separate process keeps a demuxer crash, hang or memory blow-up away from the
 * server. Each run is killed at the time limit; runs are bounded like image work.
 */
export class VideoTools {
  readonly ffprobe: string;
  readonly ffmpeg: string;
  readonly #tempDir: string;
  readonly #timeoutMs: number;
  readonly #limiter: ConcurrencyLimiter;

  constructor(options: VideoToolsOptions) {
    this.ffprobe = options.ffprobe;
    this.ffmpeg = options.ffmpeg;
    this.#tempDir = options.tempDir;
    this.#timeoutMs = options.timeoutMs;
    this.#limiter = new ConcurrencyLimiter(options.concurrency, options.maxQueue);
  }

  /** VideoTools when both commands run (`-version`), else null: checked once, at start. */
  static async find(options: VideoToolsOptions): Promise<VideoTools | null> {
    for (const command of [options.ffprobe, options.ffmpeg]) {
      try {
        await run(command, ['-version'], { timeout: DETECT_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES });
      } catch {
        return null;
      }
    }
    return new VideoTools(options);
  }

  /** Duration, displayed size, codecs, frame rate, bitrate and creation time; INVALID_FILE if unreadable. */
  async probe(path: string): Promise<ProbeResult> {
    const stdout = await this.#limited(() =>
      this.#run(this.ffprobe, [
        '-v',
        'error',
        '-print_format',
        'json',
        '-show_format',
        '-show_streams',
        ...INPUT_LIMITS,
        // An absolute path cannot be taken for an option or a protocol ("http:…", "concat:…").
        `file:${resolve(path)}`,
      ]),
    );
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdout.toString('utf8'));
    } catch (error) {
      throw unreadable(error);
    }
    return parseProbe(parsed);
  }

  /**
   * Extracts the poster frame (about one second in, or the first frame of a shorter file) to a
   * temporary JPEG, upright (ffmpeg applies the container's rotation), and hands its path to
   * `use`. The file is removed when `use` settles.
   */
  async withPoster<T>(
    path: string,
    durationMs: number | null,
    use: (poster: string) => Promise<T>,
  ): Promise<T> {
    const dir = await mkdtemp(join(this.#tempDir, 'stowage-poster-'));
    try {
      const output = join(dir, 'poster.jpg');
      const at = durationMs !== null && durationMs > POSTER_AT_MS ? POSTER_AT_MS : 0;
      await this.#limited(() =>
        this.#run(this.ffmpeg, [
          '-nostdin',
          '-v',
          'error',
          // Seeking on the input jumps to the keyframe before and decodes on from there: fast.
          '-ss',
          (at / 1000).toFixed(3),
          ...INPUT_LIMITS,
          '-i',
          `file:${resolve(path)}`,
          '-map',
          '0:v:0',
          '-frames:v',
          '1',
          '-an',
          '-sn',
          '-dn',
          // Near-lossless: the poster is only an intermediate for resizing.
          '-q:v',
          '2',
          '-f',
          'image2',
          '-y',
          output,
        ]),
      );
      // A seek past the last frame (a file shorter than it claims) exits 0 and writes nothing.
      const written = await stat(output).catch(() => undefined);
      if (!written?.size) throw unreadable(new Error(`${this.ffmpeg} wrote no frame`));
      return await use(output);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async #limited<T>(job: () => Promise<T>): Promise<T> {
    try {
      return await this.#limiter.run(job);
    } catch (error) {
      if (!(error instanceof LimiterFullError)) throw error;
      throw new AppError('UNAVAILABLE', 'Too many media files are being processed; try again shortly.', {
        headers: { 'Retry-After': '1' },
      });
    }
  }

  async #run(command: string, args: string[]): Promise<Buffer> {
    try {
      const { stdout } = await run(command, args, {
        timeout: this.#timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT_BYTES,
        encoding: 'buffer',
      });
      return stdout;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const overflowed = code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER';
      // Any other string code is a spawn failure (the tool vanished): the server's problem, not the file's.
      if (typeof code === 'string' && !overflowed) throw error;
      const timedOut = !overflowed && (error as { killed?: unknown }).killed === true;
      throw new AppError(
        'INVALID_FILE',
        timedOut ? 'The media file took too long to read.' : 'The media file is damaged and cannot be read.',
        { cause: error },
      );
    }
  }
}

function unreadable(cause: unknown): AppError {
  return new AppError('INVALID_FILE', 'The media file is damaged and cannot be read.', { cause });
}

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: { rotation?: number | string }[];
}

interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { duration?: string; bit_rate?: string; tags?: Record<string, string> };
}

/** ffprobe's `-show_format -show_streams` JSON → what the item shows; exported for its own tests. */
export function parseProbe(output: unknown): ProbeResult {
  const { streams = [], format = {} } = (output ?? {}) as FfprobeOutput;
  // Cover art in an audio file is a one-frame "video" stream marked as an attached picture.
  const video = streams.find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
  const audio = streams.find((s) => s.codec_type === 'audio');
  if (!video && !audio) throw unreadable(new Error('no audio or video stream'));
  const quarterTurns = video ? Math.round(rotationOf(video) / 90) : 0;
  const sideways = Math.abs(quarterTurns) % 2 === 1;
  const width = positiveInt(video?.width);
  const height = positiveInt(video?.height);
  const creation =
    format.tags?.creation_time ?? video?.tags?.creation_time ?? audio?.tags?.creation_time ?? undefined;
  const takenAt = creation === undefined ? null : Date.parse(creation);
  return {
    media: {
      durationMs: msOf(format.duration),
      width: sideways ? height : width,
      height: sideways ? width : height,
      videoCodec: video?.codec_name ?? null,
      audioCodec: audio?.codec_name ?? null,
      frameRate: video ? (rate(video.avg_frame_rate) ?? rate(video.r_frame_rate)) : null,
      bitrate: positiveInt(Number(format.bit_rate)),
    },
    // Files written without a clock say 1970 (or 1904, QuickTime's epoch): no time at all.
    takenAt: Number.isFinite(takenAt) && (takenAt as number) > 0 ? takenAt : null,
  };
}

/** The display matrix's rotation (newer ffprobe) or the legacy `rotate` tag, in degrees. */
function rotationOf(stream: FfprobeStream): number {
  for (const side of stream.side_data_list ?? []) {
    const degrees = Number(side.rotation);
    if (side.rotation !== undefined && Number.isFinite(degrees)) return degrees;
  }
  const tag = Number(stream.tags?.rotate);
  return Number.isFinite(tag) ? tag : 0;
}

function msOf(seconds: string | undefined): number | null {
  const value = Number(seconds);
  return seconds !== undefined && Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null;
}

/** "30000/1001" → 29.97 (two decimals); "0/0" (unknown) → null. */
function rate(fraction: string | undefined): number | null {
  const [num, den] = (fraction ?? '').split('/').map(Number);
  if (!num || !den || !Number.isFinite(num / den)) return null;
  return Math.round((num / den) * 100) / 100;
}

function positiveInt(value: number | undefined): number | null {
  return value !== undefined && Number.isInteger(value) && value > 0 ? value : null;
}
