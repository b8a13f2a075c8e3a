const MAX_LENGTH = 255;

/**
 * The display name to keep from a client's file name: no directory part, no control characters
 * (C0, DEL, C1), no bidirectional overrides or isolates that could disguise an extension
 * ("photo\u202Egpj.exe"), no leading dots, length capped without splitting a character.
 */
export function sanitizeFilename(raw: string | undefined, fallback = 'upload'): string {
  if (!raw) return fallback;
  let name = raw.normalize('NFC');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  name = name.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, '');
  name = name.trim().replace(/^\.+/, '').trim();
  if (name === '') return fallback;
  const chars = Array.from(name);
  if (chars.length > MAX_LENGTH) {
    const dot = name.lastIndexOf('.');
    const ext = dot > 0 && name.length - dot <= 16 ? Array.from(name.slice(dot)) : [];
    name = chars.slice(0, MAX_LENGTH - ext.length).join('') + ext.join('');
  }
  return name;
}
