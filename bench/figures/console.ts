import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from '../../test/helpers/chromium.ts';
import type { Context } from '../lib/context.ts';
import { startBaseline, startStowage, type Server, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figure 13: the web console's first page load (HTML + JS + CSS) in bytes, as served and as
 * gzip would send them. Figure 13b: the longest frame while a person scrolls a library of 500
 * items to its end (the console pages with the API's cursor and fetches thumbnails as they come
 * into view), in Debian's Chromium driven by playwright-core.
 */

const ITEMS = 500;

/** Fills the library: ITEMS small PNGs of distinct colours, uploaded through the API. */
async function fillLibrary(stowage: Stowage, token: string): Promise<void> {
  for (let i = 0; i < ITEMS; i++) {
    const png = await sharp({
      create: {
        width: 64,
        height: 48,
        channels: 3,
        background: { r: i % 256, g: (i * 7) % 256, b: (i * 13) % 256 },
      },
    })
      .png()
      .toBuffer();
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(png)], { type: 'image/png' }), `photo-${i}.png`);
    const res = await fetch(`${stowage.url}/api/media/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: form,
    });
    await res.arrayBuffer();
    if (res.status !== 201) throw new Error(`upload ${i}: ${res.status}`);
  }
}

/** Bytes of the first load of `/` as served, and the same bodies gzip-compressed (level 6). */
async function firstLoad(stowage: Stowage): Promise<{ served: number; gzip: number }> {
  const html = await (await fetch(`${stowage.url}/`)).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/app\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
  if (!assets.some((a) => a.endsWith('.js'))) throw new Error('the console page names no script');
  const bodies = [Buffer.from(html)];
  for (const asset of assets)
    bodies.push(Buffer.from(await (await fetch(`${stowage.url}${asset}`)).arrayBuffer()));
  let served = 0;
  let gzip = 0;
  for (const body of bodies) {
    served += body.length;
    gzip += zlib.gzipSync(body, { level: 6 }).length;
  }
  return { served, gzip };
}

/** A fresh browser context (no cache), signed in through the form, showing the library's first items. */
async function openLibrary(
  browser: Browser,
  stowage: Stowage,
  ctx: Context,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: stowage.url });
  const page = await context.newPage();
  await page.goto('/');
  await page.getByLabel('Username').fill(ctx.user.name);
  await page.getByLabel('Password').fill(ctx.user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('list', { name: 'Items' }).getByRole('link').first().waitFor();
  return { context, page };
}

/**
 * Untimed, once before the rounds: the library's first screen, not scrolled. It takes Chromium's
 * own first-use costs (its first context, image decoders, fonts) out of round 1; the thumbnails
 * below the first screen stay cold for the rounds.
 */
async function warmUp(browser: Browser, stowage: Stowage, ctx: Context): Promise<void> {
  const { context, page } = await openLibrary(browser, stowage, ctx);
  await page.waitForTimeout(1000);
  await context.close();
}

/**
 * Scrolls the page's list of items to its end with the mouse wheel while a requestAnimationFrame
 * loop records the time between frames. Returns the longest and the median frame, in ms.
 */
async function scrollToEnd(page: Page): Promise<{ longest: number; median: number }> {
  // Counted with a CSS selector, not by role: a role query computes the style of all 500 items
  // (their visibility) and so forced a 35–55 ms layout into the frames being measured, every 50 ms.
  const shown = page.locator('ul[aria-label="Items"] > li');
  await startFrameLog(page);
  const deadline = Date.now() + 120_000;
  while ((await shown.count()) < ITEMS) {
    if (Date.now() > deadline) throw new Error('the library did not page to its end within 2 minutes');
    await page.mouse.wheel(0, 800);
    await page.waitForTimeout(50);
  }
  // The last page's thumbnails and rows settle while the wheel keeps going.
  for (let i = 0; i < 20; i++) {
    await page.mouse.wheel(0, 800);
    await page.waitForTimeout(50);
  }
  const frames = await page.evaluate(() => (globalThis as unknown as { __frames: number[] }).__frames);
  if (frames.length < 50) throw new Error(`only ${frames.length} frames were recorded`);
  const sorted = [...frames].sort((x, y) => x - y);
  return { longest: sorted.at(-1)!, median: sorted[Math.floor(sorted.length / 2)]! };
}

/** Signs in through the form, then scrolls the library to its end (scrollToEnd). */
async function scrollLibrary(
  browser: Browser,
  stowage: Stowage,
  ctx: Context,
): Promise<{ longest: number; median: number }> {
  const { context, page } = await openLibrary(browser, stowage, ctx);
  try {
    return await scrollToEnd(page);
  } finally {
    await context.close();
  }
}

/** The baseline: the static gallery page of bench/baselines/static-gallery.ts, scrolled the same way. */
async function scrollGallery(
  browser: Browser,
  gallery: Server,
): Promise<{ longest: number; median: number }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    await page.goto(`${gallery.url}/`, { waitUntil: 'load' });
    return await scrollToEnd(page);
  } finally {
    await context.close();
  }
}

async function startFrameLog(page: Page): Promise<void> {
  await page.evaluate(() => {
    // Runs in the page (the bench's TypeScript has no DOM types).
    const page = globalThis as unknown as {
      __frames: number[];
      requestAnimationFrame(callback: (now: number) => void): number;
    };
    const frames: number[] = [];
    page.__frames = frames;
    let last = 0;
    const tick = (now: number) => {
      frames.push(now - last);
      last = now;
      page.requestAnimationFrame(tick);
    };
    page.requestAnimationFrame((now) => {
      last = now;
      page.requestAnimationFrame(tick);
    });
  });
}

export async function consoleFigures(ctx: Context): Promise<Figure[]> {
  const rounds = ctx.settings.rounds;
  const stowage = await startStowage(ctx, path.join(ctx.tmp, 'stowage-console'));
  ctx.defer(() => stowage.stop());
  await fillLibrary(stowage, await stowage.login());
  // The library as a person finds it once their uploads are in: each image's grid thumbnail was
  // rendered in the background as it was stored (STOWAGE_THUMBNAILS_AHEAD). Without this wait the
  // first round would scroll while the server still renders them on the same two cores.
  await stowage.thumbnailsAhead();
  const browser = await launchChromium();
  ctx.defer(() => browser.close());

  const served: Measure = { label: 'console first load, as served', unit: 'KB', values: [] };
  const gzipped: Measure = { label: 'the same, gzip -6', unit: 'KB', values: [] };
  const longest: Measure = { label: 'longest frame', unit: 'ms', values: [] };
  const bare: Measure = { label: 'static page, longest frame', unit: 'ms', values: [] };
  const gallery = await startBaseline(ctx, 'static-gallery.ts', [String(ITEMS)]);
  ctx.defer(() => gallery.stop());
  await warmUp(browser, stowage, ctx);
  for (let r = 0; r < rounds; r++) {
    const load = await firstLoad(stowage);
    served.values.push(load.served / 1000);
    gzipped.values.push(load.gzip / 1000);
    const [frames, baseline] = await alternate(
      r,
      () => scrollLibrary(browser, stowage, ctx),
      () => scrollGallery(browser, gallery),
    );
    longest.values.push(frames.longest);
    bare.values.push(baseline.longest);
    ctx.log(
      `[13] round ${r + 1}/${rounds}: first load ${(load.served / 1000).toFixed(1)} KB ` +
        `(gzip ${(load.gzip / 1000).toFixed(1)} KB); scrolling ${ITEMS} items: longest frame ` +
        `${frames.longest.toFixed(1)} ms (median ${frames.median.toFixed(1)} ms), static page ` +
        `${baseline.longest.toFixed(1)} ms (median ${baseline.median.toFixed(1)} ms)`,
    );
  }
  return [
    {
      id: '13',
      title: 'web console first page load (HTML + JS + CSS)',
      how:
        'A: the bytes of GET / and of every script and stylesheet it names, as Stowage serves them (it ' +
        'does not compress: a proxy in front may). B: the same bodies gzip-compressed at level 6 (context: ' +
        'what a compressing proxy sends). Target on A itself, which is the larger.',
      a: served,
      b: gzipped,
      target: { on: 'a', op: '<=', value: 150 },
    },
    {
      id: '13b',
      title: `longest frame while scrolling a library of ${ITEMS} items in Chromium`,
      how:
        `A: the longest time between two requestAnimationFrame callbacks while Debian's Chromium ` +
        `(headless, 1280×800, playwright-core) scrolls the signed-in library of ${ITEMS} 64×48 PNGs to ` +
        `its end with the mouse wheel (800 px every 50 ms): pages of 50 fetched with the API's cursor, ` +
        `thumbnails fetched and rendered as they come into view. B: the longest frame of the same scroll of ` +
        `bench/baselines/static-gallery.ts, one static page (no script) listing the same ${ITEMS} thumbnails ` +
        `as <img loading="lazy"> in the console's grid, from a bare node:http server (context: what this ` +
        `machine's Chromium does with the images alone). The server has rendered the grid thumbnails ahead, as uploads ` +
        `were stored (STOWAGE_THUMBNAILS_AHEAD, waited for). A fresh browser context (no cache) each round, after one untimed ` +
        `visit of the library's first screen (Chromium's own first-use costs; the thumbnails below it ` +
        `stay cold for round 1); target on A itself.`,
      a: longest,
      b: bare,
      target: { on: 'a', op: '<=', value: 50 },
    },
  ];
}
