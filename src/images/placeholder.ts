import { rgbaToThumbHash } from 'thumbhash';

/** ThumbHash encodes images of at most 100×100; larger input is refused by the library. */
export const PLACEHOLDER_MAX_SIDE = 100;

/** A ThumbHash (base64) of RGBA pixels at most PLACEHOLDER_MAX_SIDE on each side, not premultiplied. */
export function placeholderOf(width: number, height: number, rgba: Uint8Array): string {
  return Buffer.from(rgbaToThumbHash(width, height, rgba)).toString('base64');
}
