import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { AppError } from '../errors.ts';

const run = promisify(execFile);

/** libheif's command-line decoder is `heif-dec` since libheif 1.17 and `heif-convert` before. */
export const HEIF_DECODER_COMMANDS: readonly string[] = ['heif-dec', 'heif-convert'];

const DETECT_TIMEOUT_MS = 5_000;
/** With --quiet the tool only writes warnings; a flood of them means the file is bad anyway. */
const MAX_OUTPUT_BYTES = 1024 * 1024;

export interface HeifDecoderOptions {
  command: string;
  /** Where the decoded intermediate file is written; it never outlives the call. */
  tempDir: string;
  timeoutMs: number;
}

/** From sharp's reading of the header: which top-level image is primary, and whether alpha must survive. */
export interface HeifImageInfo {
  imageCount: number;
  primaryIndex: number;
  hasAlpha: boolean;
}

/**
 * HEVC-coded HEIF (what phones upload as .heic) through libheif's own tool in a child process:
 * prebuilt sharp ships without an HEVC decoder (patents), and a separate process also keeps a
 * decoder crash or memory blow-up away from the server.
 */
export class HeifDecoder {
  readonly command: string;
  readonly #tempDir: string;
  readonly #timeoutMs: number;

  constructor(options: HeifDecoderOptions) {
    this.command = options.command;
    this.#tempDir = options.tempDir;
    this.#timeoutMs = options.timeoutMs;
  }

  /** The first of `commands` that runs and lists an HEVC decoder, or null. */
  static async find(
    commands: readonly string[],
    options: Omit<HeifDecoderOptions, 'command'>,
  ): Promise<HeifDecoder | null> {
    for (const command of commands) {
      try {
        const { stdout } = await run(command, ['--list-decoders'], {
          timeout: DETECT_TIMEOUT_MS,
          maxBuffer: MAX_OUTPUT_BYTES,
        });
        if (listsHevcDecoder(stdout)) return new HeifDecoder({ ...options, command });
      } catch {
        // Not installed or not working: try the next name.
      }
    }
    return null;
  }

  /**
   * Decodes the primary image to a temporary file, already turned upright (libheif applies the
   * HEIF rotation and mirroring), and hands its path to `use`. The file's EXIF orientation tag is
   * stale after that and must not be applied again.
   */
  async withDecoded<T>(
    inputPath: string,
    image: HeifImageInfo,
    use: (path: string) => Promise<T>,
  ): Promise<T> {
    const dir = await mkdtemp(join(this.#tempDir, 'stowage-heif-'));
    try {
      // JPEG at q95 is five times quicker to write than PNG for a 12-megapixel photo and cannot be
      // told apart in a thumbnail; PNG only where there is transparency to keep.
      const extension = image.hasAlpha ? 'png' : 'jpg';
      const quality = image.hasAlpha ? [] : ['-q', '95'];
      const output = join(dir, `decoded.${extension}`);
      // An absolute input path cannot be mistaken for an option; the output path is our own.
      const stderr = await this.#run([...quality, '--quiet', resolve(inputPath), output]);
      // The tool writes decoded-1, decoded-2, … when the file holds several images, numbered in the
      // same top-level order that libvips uses for pages.
      const decoded =
        image.imageCount > 1 ? join(dir, `decoded-${image.primaryIndex + 1}.${extension}`) : output;
      // It can report a failed write and still exit 0, leaving nothing or an empty file.
      const written = await stat(decoded).catch(() => undefined);
      if (!written?.size) {
        throw new AppError('INVALID_FILE', 'The image is damaged and cannot be decoded.', {
          cause: new Error(`${this.command} wrote no image: ${stderr.trim()}`),
        });
      }
      return await use(decoded);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Runs the tool and returns what it wrote to stderr. */
  async #run(args: string[]): Promise<string> {
    try {
      const { stderr } = await run(this.command, args, {
        timeout: this.#timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT_BYTES,
      });
      return stderr;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const overflowed = code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER';
      // Any other string code is a spawn failure (the tool vanished): the server's problem, not the file's.
      if (typeof code === 'string' && !overflowed) throw error;
      const timedOut = !overflowed && (error as { killed?: unknown }).killed === true;
      throw new AppError(
        'INVALID_FILE',
        timedOut ? 'The image took too long to decode.' : 'The image is damaged and cannot be decoded.',
        { cause: error },
      );
    }
  }
}

/** Whether `--list-decoders` output names at least one decoder under "HEIC decoders:". */
export function listsHevcDecoder(output: string): boolean {
  const lines = output.split('\n').map((line) => line.trim());
  const heading = lines.findIndex((line) => /^HEIC decoders:$/i.test(line));
  return heading >= 0 && (lines[heading + 1] ?? '').startsWith('- ');
}
