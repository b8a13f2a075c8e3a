import { isAppError } from '../errors.ts';
import type { ImageProcessor } from '../images/image-processor.ts';
import { readCameraData, type CameraData } from '../images/camera-data.ts';
import type { MediaInfo, VideoTools } from '../video/video-tools.ts';
import { kindOf, type MediaKind } from './media-kind.ts';

/**
 * What a row's metadata was computed with. Rows below it are (re)read by the backfill: rows from
 * before the metadata columns (0), and rows stored while extraction was off or ffmpeg missing.
 * Raise it when a new field needs every item read again.
 */
export const METADATA_VERSION = 1;

/** Everything read from a file's bytes that the item shows. */
export interface ItemMetadata {
  /** Displayed size of images (the item's `image`); null for other kinds. */
  width: number | null;
  height: number | null;
  takenAt: number | null;
  placeholder: string | null;
  media: MediaInfo | null;
  exif: CameraData | null;
  /** METADATA_VERSION when complete; 0 when something was skipped and the backfill should retry. */
  metadataVersion: number;
}

export interface MetadataReaderOptions {
  images: ImageProcessor;
  /** ffprobe/ffmpeg, or null when the machine has none: videos then get media null and no poster. */
  video: VideoTools | null;
  /** Camera data and placeholders (STOWAGE_MEDIA_METADATA); sizes of images are read regardless. */
  enabled: boolean;
}

const NONE = { width: null, height: null, takenAt: null, placeholder: null, media: null, exif: null };

/**
 * Reads an item's metadata from a local copy of its bytes, the same way at upload and in the
 * backfill. A video or audio file that cannot be read is not an error: it is stored with media
 * null. An image that cannot be decoded still is (INVALID_FILE), as before: its checks are the
 * image probe. Overload (UNAVAILABLE) goes through, for the caller to answer 503.
 */
export class MetadataReader {
  readonly #images: ImageProcessor;
  readonly #video: VideoTools | null;
  readonly #enabled: boolean;

  constructor(options: MetadataReaderOptions) {
    this.#images = options.images;
    this.#video = options.video;
    this.#enabled = options.enabled;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  get video(): VideoTools | null {
    return this.#video;
  }

  /** Whether read() needs the file's bytes on local disk for this kind. */
  needsFile(kind: MediaKind): boolean {
    if (kind === 'image') return true;
    if (kind === 'video' || kind === 'audio') return this.#enabled && this.#video !== null;
    return false;
  }

  /** Whether the backfill can complete an item of this kind now. */
  canComplete(kind: MediaKind): boolean {
    if (!this.#enabled) return false;
    return kind === 'video' || kind === 'audio' ? this.#video !== null : true;
  }

  /** `path` is a local copy of the bytes; null only where needsFile() said no file is needed. */
  async read(path: string | null, mimeType: string): Promise<ItemMetadata> {
    const kind = kindOf(mimeType);
    if (kind === 'document') return { ...NONE, metadataVersion: METADATA_VERSION };
    if (path === null) {
      if (this.needsFile(kind)) throw new Error(`a ${kind} file is needed on local disk`);
      return { ...NONE, metadataVersion: 0 };
    }
    return kind === 'image' ? this.#image(path, mimeType) : this.#timed(path, kind);
  }

  async #image(path: string, mimeType: string): Promise<ItemMetadata> {
    if (!this.#enabled) {
      const { width, height } = await this.#images.probe(path, mimeType);
      return { ...NONE, width, height, metadataVersion: 0 };
    }
    const [probe, camera] = await Promise.all([
      this.#images.probe(path, mimeType, { placeholder: true }),
      readCameraData(path),
    ]);
    return {
      ...NONE,
      width: probe.width,
      height: probe.height,
      takenAt: camera.takenAt,
      exif: camera.exif,
      placeholder: probe.placeholder ?? null,
      metadataVersion: METADATA_VERSION,
    };
  }

  async #timed(path: string, kind: 'video' | 'audio'): Promise<ItemMetadata> {
    const video = this.#video;
    if (!this.#enabled || !video) return { ...NONE, metadataVersion: 0 };
    const probe = await video.probe(path).catch(unlessUnreadable);
    if (!probe) return { ...NONE, metadataVersion: METADATA_VERSION };
    let placeholder: string | null = null;
    if (kind === 'video' && probe.media.width !== null) {
      placeholder = await video
        .withPoster(path, probe.media.durationMs, async (poster) => {
          const { placeholder } = await this.#images.probe(poster, 'image/jpeg', { placeholder: true });
          return placeholder ?? null;
        })
        .catch(unlessUnreadable);
    }
    return {
      ...NONE,
      takenAt: probe.takenAt,
      media: probe.media,
      placeholder,
      metadataVersion: METADATA_VERSION,
    };
  }
}

/** A file the tools cannot read yields nothing; anything else (overload, a vanished tool) goes on. */
function unlessUnreadable(error: unknown): null {
  if (isAppError(error) && error.code === 'INVALID_FILE') return null;
  throw error;
}
