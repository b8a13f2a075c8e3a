/**
 * The image types Stowage decodes, by detected MIME type, with the libvips loader each must open
 * with. A file whose header libvips reads as another format is refused instead of decoded, so a
 * type outside this list (SVG, PDF, …) never reaches its loader under a borrowed name.
 */
const LOADERS: Readonly<Record<string, string>> = {
  'image/jpeg': 'jpeg',
  'image/png': 'png',
  'image/apng': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/avif': 'heif',
  'image/heic': 'heif',
  'image/heif': 'heif',
  'image/heic-sequence': 'heif',
  'image/heif-sequence': 'heif',
  'image/tiff': 'tiff',
};

export function isProcessableImage(mimeType: string): boolean {
  return Object.hasOwn(LOADERS, mimeType);
}

/** The libvips loader name (sharp's `metadata().format`) for a MIME type, if it is one we decode. */
export function loaderFor(mimeType: string): string | undefined {
  return Object.hasOwn(LOADERS, mimeType) ? LOADERS[mimeType] : undefined;
}
