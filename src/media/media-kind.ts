/** What an item is, from its detected MIME type: the list's `type` filter and the item's `kind`. */
export type MediaKind = 'image' | 'video' | 'audio' | 'document';

export function kindOf(mime: string): MediaKind {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'document';
}
