import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, isAppError, validationFailed } from '../errors.ts';
import type { Ingest, StagedUpload } from '../uploads/ingest.ts';
import { tooLarge } from '../uploads/stream-stages.ts';
import type { MediaRecord, Visibility } from '../media/media-repo.ts';
import { parseTagList } from '../media/tags.ts';

function invalid(path: string, message: string): AppError {
  return validationFailed({ path, message });
}

/**
 * Streams the single `file` part through the ingest pipeline as it arrives; the optional fields
 * may come before or after it. Anything that goes wrong discards the staged file.
 */
export async function receiveMultipart(
  request: FastifyRequest,
  reply: FastifyReply,
  ingest: Ingest,
  owner: string,
): Promise<MediaRecord> {
  if (!request.isMultipart()) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Uploads must be sent as multipart/form-data.');
  }
  let staged: StagedUpload | undefined;
  let visibility: Visibility = 'private';
  let tags: string[] = [];
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file')
          throw invalid(`body.${part.fieldname}`, 'the file part must be named "file"');
        // The parser stops at the upload limit by truncating the file: fail it there instead, so
        // the upload is refused with 413 at once rather than treated as a shorter, complete file.
        part.file.once('limit', () => part.file.destroy(tooLarge(ingest.maxUploadBytes)));
        staged = await ingest.receive({
          stream: part.file,
          owner,
          filename: part.filename,
          via: 'multipart',
          ip: request.ip,
        });
      } else if (part.fieldname === 'visibility') {
        if (part.value !== 'private' && part.value !== 'public')
          throw invalid('body.visibility', 'must be private or public');
        visibility = part.value;
      } else if (part.fieldname === 'tags') {
        tags = parseTagList(String(part.value));
      } else {
        throw invalid(`body.${part.fieldname}`, 'is not a known field');
      }
    }
    if (!staged) throw invalid('body.file', 'a file part named "file" is required');
    return await staged.commit({ visibility, tags });
  } catch (error) {
    await staged?.discard();
    // The client may still be sending a large body: close the connection instead of reading it all.
    void reply.header('Connection', 'close');
    throw fromParser(error);
  }
}

/**
 * The ingest answers only with AppErrors, and @fastify/multipart's own errors carry codes; a bare
 * Error can only come from the body parser (no boundary, garbage, cut-off data): the client's.
 */
function fromParser(error: unknown): unknown {
  if (isAppError(error) || typeof (error as { code?: unknown }).code === 'string') return error;
  return new AppError('BAD_REQUEST', 'The multipart body is malformed.', { cause: error });
}
