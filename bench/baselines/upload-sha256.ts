/**
 * Baseline of figures 1, 2 and 4: a bare node:http server that pipes the request body (whatever
 * it is: multipart or raw) through SHA-256 into a file, fsyncs it (as Stowage does before it
 * answers) and answers 201 with the digest. The file is removed after the answer.
 *
 * usage: node upload-sha256.ts PORT DIR
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const [port, dir] = process.argv.slice(2);
let uploads = 0;

http
  .createServer((req, res) => {
    if (req.method === 'GET') return void res.end('ready');
    const file = path.join(dir!, `upload-${process.pid}-${uploads++}`);
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    pipeline(req, tap, fs.createWriteStream(file, { flush: true }))
      .then(() => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
      })
      .catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      })
      .finally(() => fs.rm(file, { force: true }, () => undefined));
  })
  .listen(Number(port), '127.0.0.1');
