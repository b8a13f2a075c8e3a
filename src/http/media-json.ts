import { Type, type TSchema } from 'typebox';
import type { MediaRecord } from '../media/media-repo.ts';
import { hasSourceImage } from '../media/image-source.ts';
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
    takenAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description:
        "EXIF DateTimeOriginal with its offset (UTC without one), or the container's creation time",
    }),
    placeholder: Type.Union([Type.String({ description: 'ThumbHash, base64' }), Type.Null()]),
    media: Type.Union([
      Type.Object({
        durationMs: nullable(Type.Integer()),
        width: nullable(Type.Integer()),
        height: nullable(Type.Integer()),
        videoCodec: nullable(Type.String()),
        audioCodec: nullable(Type.String()),
        frameRate: nullable(Type.Number()),
        bitrate: nullable(Type.Integer()),
      }),
      Type.Null(),
    ]),
    exif: Type.Union([
      Type.Object({
        make: nullable(Type.String()),
        model: nullable(Type.String()),
        lens: nullable(Type.String()),
        exposureTime: nullable(Type.Number()),
        fNumber: nullable(Type.Number()),
        iso: nullable(Type.Number()),
        focalLength: nullable(Type.Number()),
        gps: Type.Union([
          Type.Object({
            latitude: Type.Number(),
            longitude: Type.Number(),
            altitude: nullable(Type.Number()),
          }),
          Type.Null(),
        ]),
      }),
      Type.Null(),
    ]),
  },
  { $id: 'MediaItem' },
);

function nullable<T extends TSchema>(schema: T) {
  return Type.Union([schema, Type.Null()]);
}

export function mediaJson(item: MediaRecord) {
  const isImage = item.kind === 'image';
  // A video has a thumbnail (its poster frame) when ffprobe found a picture in it.
  const hasThumbnail = hasSourceImage(item);
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
      thumbnail: hasThumbnail ? `/api/media/${item.id}/thumbnail` : null,
    },
    takenAt: item.takenAt === null ? null : iso(item.takenAt),
    placeholder: item.placeholder,
    media: item.kind === 'video' || item.kind === 'audio' ? item.media : null,
    exif: isImage ? item.exif : null,
  };
}
