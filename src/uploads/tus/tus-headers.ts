import { AppError, validationFailed } from '../../errors.ts';

/**
 * Parsing of the tus 1.0.0 request headers (https://tus.io/protocols/resumable-upload). A header
 * that is not what the protocol says is a malformed request (400 BAD_REQUEST); a well-formed one
 * asking for what we do not offer (a checksum algorithm, an Upload-Concat we cannot honour) is
 * 400 VALIDATION_FAILED, as the contract names it.
 */

export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = [
  'creation',
  'creation-with-upload',
  'creation-defer-length',
  'termination',
  'expiration',
  'checksum',
  'concatenation',
];
/** Node's names for the digests the checksum extension offers (its names are lower-case IANA). */
export const CHECKSUM_ALGORITHMS = { sha1: 'sha1', sha256: 'sha256', md5: 'md5' } as const;
export type ChecksumAlgorithm = keyof typeof CHECKSUM_ALGORITHMS;

/** What a PATCH or creation-with-upload body must be sent as (tus 1.0.0, "Content-Type"). */
export const OFFSET_STREAM = 'application/offset+octet-stream';

export function isOffsetStream(contentType: string | undefined): boolean {
  return contentType?.split(';')[0]?.trim().toLowerCase() === OFFSET_STREAM;
}

/**
 * tus-js-client's `protocol: 'ietf-draft-05'` (draft-ietf-httpbis-resumable-upload-05, interop
 * version 6) speaks tus's requests with the draft's headers: `Upload-Draft-Interop-Version: 6`
 * instead of `Tus-Resumable`, bodies as `application/partial-upload`, and `Upload-Complete`.
 * It is served by the same handler, with the same checks.
 */
export const IETF_INTEROP_VERSION = '6';
export const PARTIAL_UPLOAD = 'application/partial-upload';

export function isIetfDraft(headers: Record<string, string | string[] | undefined>): boolean {
  return headers['upload-draft-interop-version'] === IETF_INTEROP_VERSION;
}

/** Whether the request's body is upload bytes in the content type its protocol uses. */
export function isUploadBody(headers: Record<string, string | string[] | undefined>): boolean {
  const contentType = headers['content-type'];
  if (typeof contentType !== 'string') return false;
  if (isOffsetStream(contentType)) return true;
  return isIetfDraft(headers) && contentType.split(';')[0]?.trim().toLowerCase() === PARTIAL_UPLOAD;
}

/** The draft's `Upload-Complete: ?0|?1` (an RFC 8941 boolean); the length still comes from Upload-Length. */
export function parseUploadComplete(value: string | string[] | undefined): boolean | undefined {
  const text = single('Upload-Complete', value);
  if (text === undefined) return undefined;
  if (text !== '?0' && text !== '?1') throw malformed('Upload-Complete', 'must be ?0 or ?1');
  return text === '?1';
}

type HeaderValue = string | string[] | undefined;

function single(name: string, value: HeaderValue): string | undefined {
  if (Array.isArray(value)) throw malformed(name, 'must be sent once');
  return value;
}

function malformed(name: string, message: string): AppError {
  return new AppError('BAD_REQUEST', `${name} ${message}.`);
}

/** A non-negative integer header (Upload-Offset, Upload-Length): digits only, no sign, no spaces. */
export function parseSize(name: string, value: HeaderValue): number | undefined {
  const text = single(name, value);
  if (text === undefined) return undefined;
  if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw malformed(name, 'must be a non-negative integer');
  }
  return Number(text);
}

/** `Upload-Defer-Length: 1` is the only value the protocol allows. */
export function parseDeferLength(value: HeaderValue): boolean {
  const text = single('Upload-Defer-Length', value);
  if (text === undefined) return false;
  if (text !== '1') throw malformed('Upload-Defer-Length', 'must be 1');
  return true;
}

/**
 * `Upload-Metadata: key base64,key base64,key` — keys are unique, ASCII without spaces or commas;
 * values are base64 (standard alphabet, padded or not). A key without a value means "".
 */
export function parseMetadata(value: HeaderValue): Record<string, string> {
  const text = single('Upload-Metadata', value);
  const metadata: Record<string, string> = {};
  if (text === undefined || text.trim() === '') return metadata;
  for (const pair of text.split(',')) {
    const parts = pair.trim().split(' ');
    const [key, encoded, ...rest] = parts;
    if (!key || rest.length > 0 || !/^[\x21-\x2b\x2d-\x7e]+$/.test(key) || key in metadata) {
      throw malformed('Upload-Metadata', 'must be unique keys, each with an optional base64 value');
    }
    if (encoded !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) {
      throw malformed('Upload-Metadata', `has a value for ${key} that is not base64`);
    }
    metadata[key] = Buffer.from(encoded ?? '', 'base64').toString('utf8');
  }
  return metadata;
}

export function formatMetadata(metadata: Record<string, string>): string {
  return Object.entries(metadata)
    .map(([key, value]) => (value === '' ? key : `${key} ${Buffer.from(value).toString('base64')}`))
    .join(',');
}

export interface Checksum {
  algorithm: ChecksumAlgorithm;
  digest: Buffer;
}

/** `Upload-Checksum: ALGORITHM BASE64DIGEST`; an algorithm we do not offer is 400 VALIDATION_FAILED. */
export function parseChecksum(value: HeaderValue): Checksum | undefined {
  const text = single('Upload-Checksum', value);
  if (text === undefined) return undefined;
  const [algorithm, encoded, ...rest] = text.trim().split(' ');
  if (!algorithm || !encoded || rest.length > 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) {
    throw malformed('Upload-Checksum', 'must be an algorithm and a base64 digest');
  }
  if (!Object.hasOwn(CHECKSUM_ALGORITHMS, algorithm)) {
    throw validationFailed(
      {
        path: 'headers.upload-checksum',
        message: `algorithm must be one of ${Object.keys(CHECKSUM_ALGORITHMS).join(', ')}`,
      },
      'This checksum algorithm is not supported.',
    );
  }
  return { algorithm: algorithm as ChecksumAlgorithm, digest: Buffer.from(encoded, 'base64') };
}

export type Concat = { kind: 'partial' } | { kind: 'final'; urls: string[] };

/** `Upload-Concat: partial` or `final;URL URL …`; anything else is 400 VALIDATION_FAILED. */
export function parseConcat(value: HeaderValue): Concat | undefined {
  const text = single('Upload-Concat', value)?.trim();
  if (text === undefined) return undefined;
  if (text === 'partial') return { kind: 'partial' };
  if (text.startsWith('final;')) {
    const urls = text.slice('final;'.length).trim().split(/ +/).filter(Boolean);
    if (urls.length > 0 && urls.length <= 1000) return { kind: 'final', urls };
  }
  throw invalidConcat();
}

/** One answer for every bad final: never says which partial was unknown, unfinished or not yours. */
export function invalidConcat(): AppError {
  return validationFailed(
    {
      path: 'headers.upload-concat',
      message: 'must be "partial", or "final;" followed by your own finished partial uploads',
    },
    'Upload-Concat is not valid.',
  );
}
