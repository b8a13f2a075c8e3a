import type { components, paths } from './api-schema';

export type Item = components['schemas']['MediaItem'];
export type ListQuery = NonNullable<paths['/api/media/list']['get']['parameters']['query']>;

/** Contract fields of the second part ("Media metadata (additions)"), read where the item has them. */
export interface ItemMetadata {
  takenAt?: string | null;
  placeholder?: string | null;
  media?: {
    durationMs: number | null;
    width: number | null;
    height: number | null;
    videoCodec: string | null;
    audioCodec: string | null;
    frameRate: number | null;
    bitrate: number | null;
  } | null;
  exif?: {
    make: string | null;
    model: string | null;
    lens: string | null;
    exposureTime: number | null;
    fNumber: number | null;
    iso: number | null;
    focalLength: number | null;
    gps: { latitude: number; longitude: number; altitude: number | null } | null;
  } | null;
}

export function metadataOf(item: Item): ItemMetadata {
  return item as Item & ItemMetadata;
}

export function kindOf(item: Item): 'image' | 'video' | 'audio' | 'document' {
  const [top] = item.mimeType.split('/');
  return top === 'image' || top === 'video' || top === 'audio' ? top : 'document';
}
