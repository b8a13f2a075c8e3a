import type { components, paths } from './api-schema';

export type Item = components['schemas']['MediaItem'];
export type ListQuery = NonNullable<paths['/api/media/list']['get']['parameters']['query']>;

/** The metadata of the contract's second part ("Media metadata (additions)"), as the API types it. */
export type ItemMetadata = Pick<Item, 'takenAt' | 'placeholder' | 'media' | 'exif'>;

export function metadataOf(item: Item): ItemMetadata {
  return item;
}

export function kindOf(item: Item): 'image' | 'video' | 'audio' | 'document' {
  const [top] = item.mimeType.split('/');
  return top === 'image' || top === 'video' || top === 'audio' ? top : 'document';
}
