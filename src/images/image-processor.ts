import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type Sharp from 'sharp';
import type { Metadata, Sharp as SharpPipeline, SharpOptions } from 'sharp';
import { AppError } from '../errors.ts';
import { ConcurrencyLimiter, LimiterFullError } from '../util/limiter.ts';
import { HEIF_DECODER_COMMANDS, HeifDecoder, type HeifImageInfo } from './heif-decoder.ts';
import { isProcessableImage, loaderFor } from './image-types.ts';
import type { ThumbnailFormat } from './negotiate-format.ts';
import { PLACEHOLDER_MAX_SIDE, placeholderOf } from './placeholder.ts';

/** What a rendition can be encoded as: the thumbnail formats, and PNG for lossless renditions. */
export type RenderFormat = ThumbnailFormat | 'png';

/**
 * A rendition on demand. `inside` fits within width×height and is never enlarged; `contain` fits
 * within and pads to exactly width×height; `cover` fills exactly width×height, cropped at the
 * centre. A missing width or height follows from the image's aspect ratio.
 */
export interface RenderSpec {
  width: number | undefined;
  height: number | undefined;
  fit: 'inside' | 'contain' | 'cover';
  format: RenderFormat;
  /** 1–100; PNG is lossless and ignores it. */
  quality: number;
}

/** Thumbnails keep the qualities they have always had, so stored ones stay what a render gives. */
const THUMBNAIL_QUALITY: Record<ThumbnailFormat, number> = { webp: 80, avif: 50, jpeg: 80 };

export interface ImageSize {
  width: number;
  height: number;
}

/** What probe() learnt; `placeholder` only when asked for (null if the image could not give one). */
export interface ImageProbe extends ImageSize {
  placeholder?: string | null;
}

export interface ImageProcessorOptions {
  /** Largest width × height decoded, checked from the header before any pixel is decoded. */
  maxInputPixels?: number;
  /** Most frames (GIF, WebP) or pages (TIFF, HEIF) a file may hold. */
  maxFrames?: number;
  /** Images decoded at once; each also uses libvips' own worker threads. */
  concurrency?: number;
  /** Calls waiting for a slot; past this, UNAVAILABLE at once instead of an ever longer queue. */
  maxQueue?: number;
  /** Per decode or encode, in sharp and in the HEIF tool alike. */
  timeoutSeconds?: number;
  /** libheif commands tried in order by create(); [] turns HEVC decoding off. */
  heifDecoders?: readonly string[];
  /** Where decoded HEIF intermediates are written (and removed). */
  tempDir?: string;
}

const DEFAULTS = {
  maxInputPixels: 100_000_000,
  // Only the first frame is ever decoded here, so frames cost the server little; the bound is for
  // everyone who views the original, whose browser decodes them all. 1000 frames is 40 s at 25 fps,
  // well past reaction GIFs and screen captures, while a 1000-frame 1000×1000 animation already
  // needs gigabytes to play.
  maxFrames: 1000,
  concurrency: 2,
  maxQueue: 32,
  timeoutSeconds: 30,
} as const;

/**
 * Decoding to a few pixels still reads all the compressed data (JPEG scales in the DCT after
 * entropy decoding), which is what exposes a truncated or corrupt file, without the memory of a
 * full-size output.
 */
const PROBE_SIZE = 8;

let sharpModule: Promise<typeof Sharp> | undefined;

/** libvips is loaded with the first image, not at start: a server may run long before one comes. */
function loadSharp(): Promise<typeof Sharp> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

/**
 * sharp (libvips) for every image type, plus libheif's command-line tool for HEVC-coded HEIF,
 * which prebuilt sharp cannot decode. Inputs are local files the caller has spooled to disk.
 */
export class ImageProcessor {
  readonly #maxInputPixels: number;
  readonly #maxFrames: number;
  readonly #timeoutSeconds: number;
  readonly #limiter: ConcurrencyLimiter;
  readonly #heif: HeifDecoder | null;

  /** Looks for an HEVC-capable libheif tool once, at start. */
  static async create(options: ImageProcessorOptions = {}): Promise<ImageProcessor> {
    const heif = await HeifDecoder.find(options.heifDecoders ?? HEIF_DECODER_COMMANDS, {
      tempDir: options.tempDir ?? tmpdir(),
      timeoutMs: (options.timeoutSeconds ?? DEFAULTS.timeoutSeconds) * 1000,
    });
    return new ImageProcessor(options, heif);
  }

  constructor(options: ImageProcessorOptions = {}, heifDecoder: HeifDecoder | null = null) {
    this.#maxInputPixels = positive('maxInputPixels', options.maxInputPixels ?? DEFAULTS.maxInputPixels);
    this.#maxFrames = positive('maxFrames', options.maxFrames ?? DEFAULTS.maxFrames);
    this.#timeoutSeconds = positive('timeoutSeconds', options.timeoutSeconds ?? DEFAULTS.timeoutSeconds);
    this.#limiter = new ConcurrencyLimiter(
      options.concurrency ?? DEFAULTS.concurrency,
      options.maxQueue ?? DEFAULTS.maxQueue,
    );
    this.#heif = heifDecoder;
  }

  /** The libheif command HEIC/HEIF photos are decoded with, or null when they get no thumbnails. */
  get heifDecoder(): string | null {
    return this.#heif?.command ?? null;
  }

  /** Whether probe() and thumbnail() handle this detected MIME type at all. */
  supports(mimeType: string): boolean {
    return isProcessableImage(mimeType);
  }

  /**
   * Checks that the whole image decodes within the limits and returns its size as displayed, with
   * the EXIF orientation applied. HEVC-coded HEIF without the libheif tool can only be checked as
   * far as its header, which states the displayed size. With `placeholder`, the check's decode
   * goes to ≤100 px instead of 8 px and also yields an upright ThumbHash: no second decode.
   */
  async probe(path: string, mimeType: string, options: { placeholder?: boolean } = {}): Promise<ImageProbe> {
    const loader = this.#loader(mimeType);
    const wanted = options.placeholder === true;
    return await this.#limited(async () => {
      const header = await this.#header(path, loader);
      if (!needsHeifTool(header)) {
        const placeholder = await this.#decode(path, wanted, true);
        return { ...displayedSize(header), ...(wanted ? { placeholder } : {}) };
      }
      if (!this.#heif) return { ...displayedSize(header), ...(wanted ? { placeholder: null } : {}) };
      return this.#heif.withDecoded(path, heifImageInfo(header), async (decoded) => {
        const { width, height } = await this.#metadata(decoded);
        // libheif has already turned the image upright.
        const placeholder = await this.#decode(decoded, wanted, false);
        return { width, height, ...(wanted ? { placeholder } : {}) };
      });
    });
  }

  /** An upright rendition within size×size, never enlarged, first frame only, without metadata. */
  async thumbnail(path: string, mimeType: string, size: number, format: ThumbnailFormat): Promise<Buffer> {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`invalid thumbnail size ${size}`);
    return this.render(path, mimeType, {
      width: size,
      height: size,
      fit: 'inside',
      format,
      quality: THUMBNAIL_QUALITY[format],
    });
  }

  /** An upright rendition as `spec` says, first frame only, without metadata. */
  async render(path: string, mimeType: string, spec: RenderSpec): Promise<Buffer> {
    for (const side of [spec.width, spec.height]) {
      if (side !== undefined && (!Number.isInteger(side) || side < 1)) {
        throw new RangeError(`invalid rendition size ${side}`);
      }
    }
    if (spec.width === undefined && spec.height === undefined) throw new RangeError('no rendition size');
    const loader = this.#loader(mimeType);
    return await this.#limited(async () => {
      const header = await this.#header(path, loader);
      if (!needsHeifTool(header)) return this.#render(path, spec, true);
      if (!this.#heif) {
        throw new AppError(
          'UNSUPPORTED_MEDIA_TYPE',
          'Thumbnails are not available for HEIC/HEIF images on this server.',
        );
      }
      // libheif has already turned the image upright; its EXIF orientation would turn it again.
      return this.#heif.withDecoded(path, heifImageInfo(header), (decoded) =>
        this.#render(decoded, spec, false),
      );
    });
  }

  #loader(mimeType: string): string {
    const loader = loaderFor(mimeType);
    if (loader === undefined) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'This type of image cannot be processed.');
    }
    return loader;
  }

  async #limited<T>(job: () => Promise<T>): Promise<T> {
    try {
      return await this.#limiter.run(job);
    } catch (error) {
      if (!(error instanceof LimiterFullError)) throw error;
      throw new AppError('UNAVAILABLE', 'Too many images are being processed; try again shortly.', {
        headers: { 'Retry-After': '1' },
      });
    }
  }

  /** Header checks only: nothing here decodes pixels, so a pixel flood is refused in milliseconds. */
  async #header(path: string, loader: string): Promise<Metadata> {
    const header = await this.#metadata(path);
    if (header.format !== loader) {
      throw new AppError('INVALID_FILE', 'The file content does not match its image type.');
    }
    if (header.width * header.height > this.#maxInputPixels) {
      throw new AppError('INVALID_FILE', 'The image has more pixels than this server decodes.', {
        details: { maxPixels: this.#maxInputPixels },
      });
    }
    if ((header.pages ?? 1) > this.#maxFrames) {
      throw new AppError('INVALID_FILE', 'The image has more frames than this server accepts.', {
        details: { maxFrames: this.#maxFrames },
      });
    }
    return header;
  }

  async #metadata(path: string): Promise<Metadata> {
    // A missing input is the caller's bug, not a bad upload: the fs error goes through as a 500.
    await access(path);
    const sharp = await loadSharp();
    // Reading a header allocates no pixels, so no limit here: #header refuses a flood by name.
    return asInvalidFile(() => sharp(path, { ...this.#inputOptions(), limitInputPixels: false }).metadata());
  }

  /** Decodes every pixel to a few; with `placeholder`, to ≤100 px RGBA and returns its ThumbHash. */
  async #decode(path: string, placeholder: boolean, autoOrient: boolean): Promise<string | null> {
    const sharp = await loadSharp();
    const side = placeholder ? PLACEHOLDER_MAX_SIDE : PROBE_SIZE;
    const { data, info } = await asInvalidFile(() =>
      sharp(path, { ...this.#inputOptions(), autoOrient })
        .resize(side, side, { fit: 'inside' })
        // ThumbHash wants 8-bit RGBA whatever the source holds (grey, 16-bit, CMYK, no alpha).
        .toColourspace('srgb')
        .ensureAlpha()
        .timeout({ seconds: this.#timeoutSeconds })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true }),
    );
    return placeholder ? placeholderOf(info.width, info.height, data) : null;
  }

  async #render(path: string, spec: RenderSpec, autoOrient: boolean): Promise<Buffer> {
    const sharp = await loadSharp();
    // sharp writes no EXIF, XMP, IPTC or ICC unless asked to keep them (pixels are converted to sRGB).
    const pipeline = sharp(path, { ...this.#inputOptions(), autoOrient })
      .resize(spec.width, spec.height, {
        fit: spec.fit,
        withoutEnlargement: spec.fit === 'inside',
        position: 'centre',
        // Padding of `contain`: transparent where the format has alpha, white in JPEG (encode()).
        background: { r: 255, g: 255, b: 255, alpha: spec.format === 'jpeg' ? 1 : 0 },
      })
      .timeout({ seconds: this.#timeoutSeconds });
    return asInvalidFile(() => encode(pipeline, spec.format, spec.quality).toBuffer());
  }

  #inputOptions(): SharpOptions {
    return {
      // 'error' refuses truncated and undecodable data but, like browsers, accepts photos whose
      // decoder only warned (stray bytes before a marker), which 'warning' would turn away.
      failOn: 'error',
      limitInputPixels: this.#maxInputPixels,
      sequentialRead: true,
    };
  }
}

function encode(pipeline: SharpPipeline, format: RenderFormat, quality: number): SharpPipeline {
  switch (format) {
    case 'webp':
      return pipeline.webp({ quality, effort: 4 });
    case 'avif':
      // effort 2 instead of the default 4: 0.19 s instead of 1.4 s at 1024 px, for a 5 % larger file.
      return pipeline.avif({ quality, effort: 2 });
    case 'jpeg':
      // JPEG has no alpha: transparent areas become white instead of whatever colour they hide.
      return pipeline.flatten({ background: '#ffffff' }).jpeg({ quality, mozjpeg: true });
    case 'png':
      return pipeline.png({ compressionLevel: 6 });
  }
}

function needsHeifTool(header: Metadata): boolean {
  return header.format === 'heif' && header.compression === 'hevc';
}

function heifImageInfo(header: Metadata): HeifImageInfo {
  return { imageCount: header.pages ?? 1, primaryIndex: header.pagePrimary ?? 0, hasAlpha: header.hasAlpha };
}

function displayedSize(header: Metadata): ImageSize {
  return { width: header.autoOrient.width, height: header.autoOrient.height };
}

async function asInvalidFile<T>(job: () => Promise<T>): Promise<T> {
  try {
    return await job();
  } catch (error) {
    if (error instanceof AppError) throw error;
    const timedOut = error instanceof Error && error.message.startsWith('timeout');
    throw new AppError(
      'INVALID_FILE',
      timedOut ? 'The image took too long to decode.' : 'The image is damaged and cannot be decoded.',
      { cause: error },
    );
  }
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number`);
  return value;
}
