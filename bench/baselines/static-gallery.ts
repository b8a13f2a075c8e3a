/**
 * Baseline of figure 13b: the browser alone showing the same 500 thumbnails in a scrolled grid. A
 * bare node:http server sends one static page (no script) listing 500 `<img loading="lazy">` in
 * the console's grid, and the WebP thumbnails Stowage makes of figure 13b's 64×48 PNGs, from
 * memory, `no-store` (a fresh context fetches each once, as the console does).
 *
 * usage: node static-gallery.ts PORT ITEMS
 */
import http from 'node:http';
import sharp from 'sharp';

const [port, count] = process.argv.slice(2);
const items = Number(count);

const thumbnails: Buffer[] = [];
for (let i = 0; i < items; i++) {
  // The colours of bench/figures/console.ts's fillLibrary; never enlarged, as Stowage's thumbnails.
  const background = { r: i % 256, g: (i * 7) % 256, b: (i * 13) % 256 };
  thumbnails.push(
    await sharp({ create: { width: 64, height: 48, channels: 3, background } })
      .webp()
      .toBuffer(),
  );
}

const style = `
main { padding: 1rem; max-width: 72rem; margin: 0 auto; font-family: system-ui, sans-serif; }
ul { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: 0.75rem; }
img { display: block; width: 100%; aspect-ratio: 1; object-fit: cover; background: #e5e5e5; }
span { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-size: 0.85rem; }`;
const list = thumbnails
  .map(
    (_, i) =>
      `<li><img loading="lazy" src="/t/${i}.webp" alt="photo-${i}.png"><span>photo-${i}.png</span></li>`,
  )
  .join('');
const page = `<!doctype html><meta charset="utf-8"><title>gallery</title><style>${style}</style><main><ul aria-label="Items">${list}</ul></main>`;

http
  .createServer((req, res) => {
    const thumbnail = /^\/t\/(\d+)\.webp$/.exec(req.url ?? '');
    const body = thumbnail ? thumbnails[Number(thumbnail[1])] : req.url === '/' ? page : undefined;
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': thumbnail ? 'image/webp' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
    });
    res.end(body);
  })
  .listen(Number(port), '127.0.0.1');
