import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';

/**
 * The manifest of a backup (DIR/manifest.json): every file the backup holds, with its size and
 * sha256, so that `stowage restore` can tell a complete, untouched backup from anything else before
 * it writes a byte. Paths are relative to the backup folder, with "/" separators.
 */
export const MANIFEST = 'manifest.json';
export const FORMAT = 'stowage-backup';
export const VERSION = 1;

export interface FileEntry {
  path: string;
  size: number;
  sha256: string;
}

export interface ItemEntry extends FileEntry {
  id: string;
  /** The original's key in storage (src/storage/key-layout.ts). */
  key: string;
}

export interface Manifest {
  format: typeof FORMAT;
  version: typeof VERSION;
  createdAt: string;
  database: FileEntry;
  jwtKey: FileEntry | null;
  linkKey: FileEntry | null;
  usersFile: FileEntry | null;
  /** Renditions (thumbnails, previews) are derived from the originals and made again on demand. */
  renditions: string;
  /** Items of the snapshot whose file was deleted before it could be copied: not in the backup. */
  dropped: { id: string; key: string; reason: string }[];
  items: ItemEntry[];
}

/** Where a manifest path lives inside `dir`; refuses one that would leave it. */
export function insideBackup(dir: string, relative: string): string {
  const resolved = path.resolve(dir, ...relative.split('/'));
  if (
    relative === '' ||
    relative.startsWith('/') ||
    relative.split('/').some((s) => s === '' || s === '.' || s === '..') ||
    !resolved.startsWith(path.resolve(dir) + path.sep)
  ) {
    throw new Error(`the manifest names a path outside the backup: ${JSON.stringify(relative)}`);
  }
  return resolved;
}

/** Size and sha256 of a stream's bytes. */
export async function digest(stream: Readable): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    size += bytes.length;
  }
  return { size, sha256: hash.digest('hex') };
}

export function digestFile(file: string): Promise<{ size: number; sha256: string }> {
  return digest(createReadStream(file, { highWaterMark: 1024 * 1024 }));
}
