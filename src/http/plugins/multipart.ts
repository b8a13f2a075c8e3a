import type { FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';

/**
 * Explicit limits on everything a multipart body can multiply: one file (of at most the upload
 * limit: busboy stops at the first byte past it), few and small fields, bounded headers.
 */
export async function registerMultipart(app: FastifyInstance, maxUploadBytes: number): Promise<void> {
  await app.register(multipart, {
    limits: {
      fileSize: maxUploadBytes,
      files: 1,
      fields: 8,
      fieldNameSize: 64,
      fieldSize: 8 * 1024,
      parts: 10,
      headerPairs: 32,
    },
    throwFileSizeLimit: true,
  });
}
