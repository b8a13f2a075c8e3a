import path from 'node:path';

/**
 * The one owner of where things live in storage. Everything else (the ingest, the routes, the
 * thumbnails, the sweeper, the stores) asks here instead of spelling key shapes out itself:
 *
 *   media/AB/ID            an item's original file (AB = the id's first two characters, so no
 *                          directory or listing page grows with the whole collection)
 *   thumbs/ID/NAME         an item's renditions (one prefix per item: deleted as a whole)
 *   DATA_DIR/uploads/ID    an unfinished tus upload on local disk (and ID.json, its record);
 *                          on S3, @tus/s3-store's own ID, ID.info and ID.part objects
 */
export const ORIGINALS_PREFIX = 'media/';
export const RENDITIONS_PREFIX = 'thumbs/';

export function originalKey(id: string): string {
  return `${ORIGINALS_PREFIX}${id.slice(0, 2)}/${id}`;
}

/** The item id an original's key belongs to, or undefined for a key of another shape. */
export function idOfOriginalKey(key: string): string | undefined {
  const [top, shard, id, ...rest] = key.split('/');
  return `${top}/` === ORIGINALS_PREFIX && shard && id && rest.length === 0 ? id : undefined;
}

export function renditionsPrefix(id: string): string {
  return `${RENDITIONS_PREFIX}${id}/`;
}

export function renditionKey(id: string, name: string): string {
  return `${renditionsPrefix(id)}${name}`;
}

/** The item id a rendition's key belongs to, or undefined for a key of another shape. */
export function idOfRenditionKey(key: string): string | undefined {
  const [top, id] = key.split('/');
  return `${top}/` === RENDITIONS_PREFIX && id ? id : undefined;
}

/** Keys of the blob store's own (originals, renditions), as opposed to tus's objects in a bucket. */
export function isBlobKey(key: string): boolean {
  return key.startsWith(ORIGINALS_PREFIX) || key.startsWith(RENDITIONS_PREFIX);
}

/** Where unfinished tus uploads live on local disk. */
export function uploadsDirectory(dataDir: string): string {
  return path.join(dataDir, 'uploads');
}
