import { Type } from 'typebox';
import type { MediaRecord } from '../media/media-repo.ts';
import { iso } from './schemas.ts';

export const MediaItem = Type.Object(
  {
    id: Type.String(),
    filename: Type.String(),
    mimeType: Type.String(),
    size: Type.Integer(),
    sha256: Type.String(),
    owner: Type.String(),
    visibility: Type.Union([Type.Literal('private'), Type.Literal('public')]),
    tags: Type.Array(Type.String()),
    image: Type.Union([Type.Object({ width: Type.Integer(), height: Type.Integer() }), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    urls: Type.Object({ content: Type.String(), thumbnail: Type.Union([Type.String(), Type.Null()]) }),
  },
  { $id: 'MediaItem' },
);

export function mediaJson(item: MediaRecord) {
  const isImage = item.kind === 'image';
  return {
    id: item.id,
    filename: item.filename,
    mimeType: item.mimeType,
    size: item.size,
    sha256: item.sha256,
    owner: item.owner,
    visibility: item.visibility,
    tags: item.tags,
    image:
      isImage && item.width !== null && item.height !== null
        ? { width: item.width, height: item.height }
        : null,
    createdAt: iso(item.createdAt),
    updatedAt: iso(item.updatedAt),
    urls: {
      content: `/api/media/${item.id}/content`,
      thumbnail: isImage ? `/api/media/${item.id}/thumbnail` : null,
    },
  };
}
