import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { AppError } from '../../errors.ts';

/**
 * The console's page may load only its own files: scripts and styles from this origin (no
 * 'unsafe-inline', no 'unsafe-eval'), images and media from this origin or from blob: URLs (the
 * thumbnails and previews it fetches with the access token) and data: URLs (ThumbHash
 * placeholders), requests to this origin only. It cannot be framed.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export interface ConsoleDeps {
  /** The built console (console/dist): index.html and assets/ with hashed names. */
  dir: string;
  warn(message: string): void;
}

/**
 * `GET /` and every path under `/app/` answer with the console's page (its router shows the
 * right view); `/app/assets/` serves the build's files. Hashed names never change content, so
 * they are cached for a year; the page itself is revalidated on every load (`no-cache` with an
 * ETag), so a new build reaches people at their next visit.
 */
export async function consoleRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  const html = await fs.readFile(path.join(deps.dir, 'index.html')).catch(() => null);
  if (!html) deps.warn(`the web console is not built (${deps.dir}): run node scripts/build-console.ts`);
  const etag = html ? `"${crypto.createHash('sha256').update(html).digest('base64url').slice(0, 27)}"` : '';

  const page = async (request: { headers: { 'if-none-match'?: string } }, reply: FastifyReply) => {
    if (!html) throw new AppError('UNAVAILABLE', 'The web console has not been built on this server.');
    void reply.headers({
      'Content-Security-Policy': CONSOLE_CSP,
      'Cache-Control': 'no-cache',
      'Content-Type': 'text/html; charset=utf-8',
      ETag: etag,
    });
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.send(html);
  };
  app.get('/', { schema: { hide: true } }, page);
  app.get('/app', { schema: { hide: true } }, (_request, reply) => reply.redirect('/app/library'));
  app.get('/app/*', { schema: { hide: true } }, page);
  if (!html) return;
  await app.register(fastifyStatic, {
    root: path.join(deps.dir, 'assets'),
    prefix: '/app/assets/',
    decorateReply: false,
    index: false,
    immutable: true,
    maxAge: '365d',
    // Only files of the build, never a directory listing or a dotfile.
    dotfiles: 'deny',
    list: false,
  });
}
