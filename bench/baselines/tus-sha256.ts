/**
 * Baseline of figure 2d: the least a tus server must do for figure 2's client, on node:http. POST
 * creates an upload (Location), each PATCH at the right offset pipes its body through the upload's
 * running SHA-256 into the upload's file, and the PATCH that completes it fsyncs the file (as
 * Stowage does before it answers) and answers with a Media-Id header (the digest), which is what
 * the benchmark's client waits for. No checks, no database, no locks; the file is removed after.
 * It tells the cost of the client and of the protocol's round trips (figure 2e) from Stowage's own.
 *
 * usage: node tus-sha256.ts PORT DIR
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const [port, dir] = process.argv.slice(2);
const uploads = new Map<string, { file: string; size: number; offset: number; hash: crypto.Hash }>();
let created = 0;
const TUS = { 'tus-resumable': '1.0.0' };

async function patch(req: http.IncomingMessage, res: http.ServerResponse, id: string): Promise<void> {
  const upload = uploads.get(id);
  if (!upload) return void res.writeHead(404, TUS).end();
  if (Number(req.headers['upload-offset']) !== upload.offset) {
    return void res.writeHead(409, TUS).end();
  }
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      upload.hash.update(chunk);
      callback(null, chunk);
    },
  });
  const file = fs.createWriteStream(upload.file, { flags: 'r+', start: upload.offset });
  await pipeline(req, tap, file);
  upload.offset += file.bytesWritten;
  const headers: Record<string, string> = { ...TUS, 'upload-offset': String(upload.offset) };
  if (upload.offset === upload.size) {
    const handle = await fs.promises.open(upload.file, 'r+');
    await handle.datasync();
    await handle.close();
    headers['media-id'] = upload.hash.digest('hex');
    uploads.delete(id);
    await fs.promises.rm(upload.file, { force: true });
  }
  res.writeHead(204, headers).end();
}

http
  .createServer((req, res) => {
    if (req.method === 'GET') return void res.end('ready');
    if (req.method === 'POST') {
      const id = `${process.pid}-${created++}`;
      const file = path.join(dir!, `tus-${id}`);
      fs.writeFileSync(file, '');
      uploads.set(id, {
        file,
        size: Number(req.headers['upload-length']),
        offset: 0,
        hash: crypto.createHash('sha256'),
      });
      req.resume();
      return void res.writeHead(201, { ...TUS, location: `/uploads/${id}` }).end();
    }
    const id = path.basename(req.url ?? '');
    if (req.method === 'PATCH') {
      return void patch(req, res, id).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, TUS);
        res.end(String(error));
      });
    }
    const upload = uploads.get(id);
    if (!upload) return void res.writeHead(404, TUS).end();
    res.writeHead(200, {
      ...TUS,
      'upload-offset': String(upload.offset),
      'upload-length': String(upload.size),
    });
    res.end();
  })
  .listen(Number(port), '127.0.0.1');
