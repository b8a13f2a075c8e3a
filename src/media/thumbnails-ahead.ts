import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import type { MediaRecord } from './media-repo.ts';
import type { Thumbnails } from './thumbnails.ts';

export interface ThumbnailsAheadDeps {
  thumbnails: Pick<Thumbnails, 'get'>;
  /** The size the thumbnail route serves when none is asked for (what lists and grids show). */
  size: number;
  logger: Logger;
  metrics: Pick<Metrics, 'thumbnailsAhead'>;
  /** Items waiting past this are left to be rendered on their first request. */
  maxPending?: number;
}

/**
 * Renders each newly stored image's default thumbnail (WebP, the route's default format) in the
 * background, one at a time, so that the first person to open a library of fresh uploads is not
 * the one who waits for hundreds of renders (Immich and Nextcloud make their previews as files
 * arrive, for the same reason). It only warms what the thumbnail route would render anyway, through
 * the same single-flight path: a request arriving mid-render waits for that render rather than
 * starting another, and an item whose render fails here simply renders (or fails with its error)
 * when first asked for. Videos are left to their first request: their poster needs ffmpeg to seek
 * into a file that may be gigabytes, which is not worth paying for every video uploaded.
 *
 * One render at a time leaves the image processor's other slots to requests, and the queue is
 * bounded, so a burst of uploads cannot hold memory or delay anything a person is waiting for.
 */
export class ThumbnailsAhead {
  readonly #deps: ThumbnailsAheadDeps;
  readonly #maxPending: number;
  readonly #queue: MediaRecord[] = [];
  #running: Promise<void> | null = null;
  #rendering = false;
  #closed = false;

  constructor(deps: ThumbnailsAheadDeps) {
    this.#deps = deps;
    this.#maxPending = deps.maxPending ?? 10_000;
  }

  /** Items accepted and not rendered yet, the one rendering now included. */
  get pending(): number {
    return this.#queue.length + (this.#rendering ? 1 : 0);
  }

  /** Called once an item is stored; returns at once. */
  stored(item: MediaRecord): void {
    if (this.#closed || item.kind !== 'image' || this.#queue.length >= this.#maxPending) return;
    this.#queue.push(item);
    this.#counted();
    this.#running ??= this.#drain();
  }

  /** A deleted item is not rendered: its thumbnail would outlive it. */
  forget(id: string): void {
    const index = this.#queue.findIndex((item) => item.id === id);
    if (index >= 0) this.#queue.splice(index, 1);
    this.#counted();
  }

  async #drain(): Promise<void> {
    // A turn of the event loop first, so that the upload's response is on its way before this runs.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (let item = this.#queue.shift(); item && !this.#closed; item = this.#queue.shift()) {
      // Taken off the queue and now rendering: the count stays the same.
      this.#rendering = true;
      try {
        await this.#deps.thumbnails.get(item, this.#deps.size, 'webp');
      } catch (error) {
        // Not a fault of the server's: the first request renders it again and answers the error.
        this.#deps.logger.debug({ err: error, id: item.id }, 'thumbnail ahead of time not rendered');
      } finally {
        this.#rendering = false;
        this.#counted();
      }
    }
    this.#running = null;
  }

  #counted(): void {
    this.#deps.metrics.thumbnailsAhead.set(this.pending);
  }

  /** Drops what is waiting and lets the render under way finish. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.length = 0;
    this.#counted();
    await this.#running;
  }
}
