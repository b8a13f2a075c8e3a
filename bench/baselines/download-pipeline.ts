/**
 * Baseline of figure 4 (and a context row of figure 3): a bare node:http server streaming a file
 * from DIR with stream.pipeline, Content-Length set, nothing else.
 *
 * usage: node download-pipeline.ts PORT DIR
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

const [port, dir] = process.argv.slice(2);

http
  .createServer((req, res) => {
    // Only plain names inside DIR: basename drops any directory part of the request path.
    const name = path.basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (name === '' || name === 'ready') return void res.end('ready');
    const file = path.join(dir!, name);
    fs.stat(file, (error, stat) => {
      if (error) {
        res.writeHead(404);
        return void res.end();
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': stat.size });
      pipeline(fs.createReadStream(file), res).catch(() => res.destroy());
    });
  })
  .listen(Number(port), '127.0.0.1');
