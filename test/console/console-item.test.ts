import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, pdf, sha256, type MediaItem } from '../media/media-helpers.ts';
import { ffmpegAvailable, mediaFile } from '../video/media-files.ts';
import { browserAvailable, consoleSuite, openContext, screenshot, signIn, VIEWPORTS } from './browser.ts';

/** CONSOLE.md, "An item": the item view, its actions, sharing and deleting, in Chromium. */
const run = browserAvailable() && ffmpegAvailable();

// Links may live a day here: "7 days" is then refused, which shows an API error in words.
const suite = consoleSuite(run, { STOWAGE_LINK_MAX_TTL: '86400' });

describe.skipIf(!run).each(Object.entries(VIEWPORTS))(
  'an item in the console at a %s viewport',
  (name, viewport) => {
    it('shows the item, downloads it, and saves visibility, tags and a new name', async () => {
      const jpeg = await fs.readFile(path.join(FIXTURES, 'Canon_40D.jpg'));
      const item = await suite.app.uploadFile(jpeg, `photo-${name}.jpg`, 'alice', { tags: 'first' });
      const { context, page, foreign, problems } = await openContext(suite.browser, viewport, suite.app.base);
      await signIn(page, 'alice');
      await page
        .getByRole('list', { name: 'Items' })
        .getByRole('link', { name: `photo-${name}.jpg` })
        .click();
      await page.getByRole('heading', { name: `photo-${name}.jpg` }).waitFor();
      await expect
        .poll(() => page.getByRole('img', { name: `photo-${name}.jpg` }).getAttribute('src'))
        .toMatch(/^blob:/);
      const text = await page.getByRole('main').textContent();
      expect(text).toContain('image/jpeg');
      expect(text).toContain(`${item.image!.width} × ${item.image!.height}`);
      expect(text).toContain('first');
      // The camera data of the photo (a Canon EOS 40D).
      expect(text).toMatch(/Canon EOS 40D/);
      expect(text).toMatch(/ISO \d+/);
      for (const button of ['Download', 'Share', 'Rename', 'Delete'])
        await page.getByRole('button', { name: button, exact: true }).waitFor();
      await screenshot(page, `${name}-item`);

      const download = page.waitForEvent('download');
      await page.getByRole('button', { name: 'Download', exact: true }).click();
      const file = await (await download).path();
      expect(sha256(await fs.readFile(file))).toBe(item.sha256);

      await page.getByLabel('Visibility').selectOption({ label: 'Public' });
      await expect
        .poll(async () => (await suite.app.api('GET', `/api/media/${item.id}`)).json<MediaItem>().visibility)
        .toBe('public');

      await page.getByLabel('Tags').fill('beach, summer');
      await page.getByRole('button', { name: 'Save', exact: true }).click();
      await expect
        .poll(async () => (await suite.app.api('GET', `/api/media/${item.id}`)).json<MediaItem>().tags)
        .toEqual(['beach', 'summer']);

      await page.getByRole('button', { name: 'Rename', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByLabel('File name').fill(`renamed-${name}.jpg`);
      await dialog.getByRole('button', { name: 'Rename' }).click();
      await page.getByRole('heading', { name: `renamed-${name}.jpg` }).waitFor();
      expect((await suite.app.api('GET', `/api/media/${item.id}`)).json<MediaItem>().filename).toBe(
        `renamed-${name}.jpg`,
      );
      expect(foreign).toEqual([]);
      expect(problems).toEqual([]);
      await context.close();
    });

    it('shares a link that works, copies it, shows refusals in words, and revokes it', async () => {
      const doc = pdf(2000, `shared ${name}`);
      const item = await suite.app.uploadFile(doc, `shared-${name}.pdf`, 'alice');
      const { context, page, foreign, problems } = await openContext(suite.browser, viewport, suite.app.base);
      await signIn(page, 'alice');
      await page.goto(`/app/items/${item.id}`);
      await page.getByRole('heading', { name: `shared-${name}.pdf` }).waitFor();
      expect(await page.getByRole('main').textContent()).toMatch(/no preview/i);
      await page.getByRole('button', { name: 'Share', exact: true }).click();

      // Longer than the server allows: the API's message, in words.
      await page.getByLabel('Expires in').selectOption({ label: '7 days' });
      await page.getByRole('button', { name: 'Create link' }).click();
      const alert = page.getByRole('alert');
      await alert.waitFor();
      expect(await alert.textContent()).not.toMatch(/[{}]/);

      await page.getByLabel('Expires in').selectOption({ label: '1 hour' });
      await page.getByRole('button', { name: 'Create link' }).click();
      const field = page.getByLabel('Share link');
      await expect.poll(() => field.inputValue()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/media\/.+token=/);
      expect(await field.getAttribute('readonly')).not.toBeNull();
      const url = await field.inputValue();
      const shared = await fetch(url);
      expect(shared.status).toBe(200);
      expect(sha256(Buffer.from(await shared.arrayBuffer()))).toBe(item.sha256);
      await page.getByRole('button', { name: 'Copy link' }).click();
      await expect.poll(() => page.evaluate<string>('navigator.clipboard.readText()')).toBe(url);
      await screenshot(page, `${name}-share`);

      const revoke = page.getByRole('button', { name: 'Revoke' });
      await expect.poll(() => revoke.count()).toBe(1);
      await revoke.click();
      await expect.poll(() => revoke.count()).toBe(0);
      await expect.poll(async () => (await fetch(url)).status).toBe(401);
      expect(foreign).toEqual([]);
      expect(problems).toEqual([]);
      await context.close();
    });

    it('plays a video and an audio file in place, with their duration and dimensions', async () => {
      const video = await suite.app.uploadFile(
        await fs.readFile(await mediaFile(suite.app.dir, 'clip.mp4')),
        `clip-${name}.mp4`,
        'alice',
      );
      const audio = await suite.app.uploadFile(
        await fs.readFile(await mediaFile(suite.app.dir, 'audio.m4a')),
        `tone-${name}.m4a`,
        'alice',
      );
      const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
      await signIn(page, 'alice');
      await page.goto(`/app/items/${video.id}`);
      await page.getByRole('heading', { name: `clip-${name}.mp4` }).waitFor();
      await expect.poll(() => page.locator('video').getAttribute('src')).toMatch(/^blob:/);
      let text = await page.getByRole('main').textContent();
      expect(text).toContain('320 × 240');
      expect(text).toContain('0:03');
      await page.goto(`/app/items/${audio.id}`);
      await page.getByRole('heading', { name: `tone-${name}.m4a` }).waitFor();
      await expect.poll(() => page.locator('audio').getAttribute('src')).toMatch(/^blob:/);
      text = await page.getByRole('main').textContent();
      expect(text).toContain('0:02');
      expect(problems).toEqual([]);
      await context.close();
    });

    it('asks before deleting, and Cancel keeps the item', async () => {
      const item = await suite.app.uploadFile(pdf(100, `delete ${name}`), `doomed-${name}.pdf`, 'alice');
      const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
      await signIn(page, 'alice');
      await page.goto(`/app/items/${item.id}`);
      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      let dialog = page.getByRole('dialog');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await expect.poll(() => page.getByRole('dialog').count()).toBe(0);
      expect((await suite.app.api('GET', `/api/media/${item.id}`)).status).toBe(200);

      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      dialog = page.getByRole('dialog');
      await dialog.getByRole('button', { name: 'Delete' }).click();
      await page.getByRole('heading', { name: 'Library' }).waitFor();
      expect((await suite.app.api('GET', `/api/media/${item.id}`)).status).toBe(404);
      expect(await page.getByRole('link', { name: `doomed-${name}.pdf` }).count()).toBe(0);
      expect(problems).toEqual([]);
      await context.close();
    });
  },
);
