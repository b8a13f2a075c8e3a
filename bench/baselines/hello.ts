/**
 * Baseline of figure 5: a bare node:http server answering every request with a small JSON body.
 *
 * usage: node hello.ts PORT
 */
import http from 'node:http';

const [port] = process.argv.slice(2);
const body = JSON.stringify({ hello: 'world' });

http
  .createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
    res.end(body);
  })
  .listen(Number(port), '127.0.0.1');
