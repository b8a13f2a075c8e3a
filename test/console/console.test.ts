import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { PASSWORDS } from '../helpers/app.ts';
import { FIXTURES, pdf, sha256, type MediaItem } from '../media/media-helpers.ts';
import { browserAvailable, consoleSuite, openContext, screenshot, signIn, VIEWPORTS } from './browser.ts';

/**
 * The web console in a real Chromium, driven only through roles and accessible names, the way
 * ../shared/CONSOLE.md names them, at a phone and a desktop viewport. Every line of that document
 * has a test here; screenshots of the library, an item and the share dialog go to test-artifacts/.
 */
const run = browserAvailable();

const suite = consoleSuite(run, { STOWAGE_LINK_MAX_TTL: '86400' });

/** The Authorization header the console sends, read off its requests. */
function tokensSeen(page: Page): Set<string> {
  const seen = new Set<string>();
  page.on('request', (request) => {
    const auth = request.headers().authorization;
    if (auth?.startsWith('Bearer ')) seen.add(auth.slice(7));
  });
  return seen;
}

async function statusWith(token: string, url = '/api/auth/me'): Promise<number> {
  return (await fetch(`${suite.app.base}${url}`, { headers: { authorization: `Bearer ${token}` } })).status;
}

describe.skipIf(!run).each(Object.entries(VIEWPORTS))('the console at a %s viewport', (name, viewport) => {
  it('signs in, keeps the session across a reload without localStorage, and signs out for real', async () => {
    const { context, page, foreign, problems } = await openContext(suite.browser, viewport, suite.app.base);
    const tokens = tokensSeen(page);
    await page.goto('/');
    // A wrong password: an alert, the username kept, the password emptied.
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/password|credentials/i);
    expect(await page.getByRole('alert').textContent()).not.toMatch(/^\s*\{/);
    expect(await page.getByLabel('Username').inputValue()).toBe('alice');
    expect(await page.getByLabel('Password').inputValue()).toBe('');

    await page.getByLabel('Password').fill(PASSWORDS.alice);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const nav = page.getByRole('navigation');
    await nav.getByRole('link', { name: 'Library' }).waitFor();
    await expect.poll(() => nav.getByRole('link', { name: 'Sessions' }).count()).toBe(1);
    expect(await nav.getByRole('link', { name: 'Users' }).count()).toBe(0);
    expect(await nav.getByRole('link', { name: 'Audit log' }).count()).toBe(0);
    await page.getByRole('heading', { name: 'Library' }).waitFor();

    // Tokens: in memory, the refresh token in sessionStorage at most; no cookie, no localStorage.
    // (A string: the test's own TypeScript has no DOM types.)
    const storage = await page.evaluate<{ local: string[]; session: string[]; cookie: string }>(
      '({ local: Object.keys(localStorage), session: Object.keys(sessionStorage), cookie: document.cookie })',
    );
    expect(storage.local).toEqual([]);
    expect(storage.cookie).toBe('');
    expect(storage.session.length).toBeLessThanOrEqual(1);
    expect((await context.cookies()).length).toBe(0);

    await page.reload();
    await page.getByRole('heading', { name: 'Library' }).waitFor();
    await nav.getByRole('button', { name: 'Sign out' }).waitFor();

    const used = [...tokens];
    expect(used.length).toBeGreaterThan(0);
    await nav.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    for (const token of used) expect(await statusWith(token)).toBe(401);
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('uploads through tus with progress, names refused files, and lists, searches, filters and sorts', async () => {
    const { context, page, foreign, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'bob');
    const jpeg = await fs.readFile(path.join(FIXTURES, 'Canon_40D.jpg'));
    const doc = pdf(3 * 1024 * 1024, `report ${name}`);
    // Slow the upload so the progress bar can be seen (the throttle is Chromium's own).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 2 * 1024 * 1024,
    });
    await page.getByLabel('Upload files').setInputFiles([
      { name: `camera-${name}.jpg`, mimeType: 'image/jpeg', buffer: jpeg },
      { name: `report-${name}.pdf`, mimeType: 'application/pdf', buffer: doc },
    ]);
    await page.getByRole('progressbar', { name: `report-${name}.pdf` }).waitFor();
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
    const items = page.getByRole('list', { name: 'Items' });
    await items.getByRole('link', { name: `camera-${name}.jpg` }).waitFor();
    await items.getByRole('link', { name: `report-${name}.pdf` }).waitFor();
    // The image shows its thumbnail with the file name as alt; the document a type icon.
    await expect
      .poll(() =>
        items
          .getByRole('link', { name: `camera-${name}.jpg` })
          .getByRole('img', { name: `camera-${name}.jpg` })
          .getAttribute('src'),
      )
      .toMatch(/^data:image\/webp;base64,/);
    const stored = (await suite.app.api('GET', '/api/media/list?limit=100', { as: 'bob' })).json<{
      items: MediaItem[];
    }>();
    const report = stored.items.find((i) => i.filename === `report-${name}.pdf`);
    expect(report?.sha256).toBe(sha256(doc));

    // A refused file: an alert naming it, with the server's words.
    await page.getByLabel('Upload files').setInputFiles([
      {
        name: `tool-${name}.exe`,
        mimeType: 'application/octet-stream',
        buffer: Buffer.from('MZ\x90\x00 not allowed here'),
      },
    ]);
    const refused = page.getByRole('alert').filter({ hasText: `tool-${name}.exe` });
    await refused.waitFor();
    expect(await refused.textContent()).toMatch(/type|allowed/i);

    // Search, type and sort.
    await page.getByLabel('Search').fill(`report-${name}`);
    await expect.poll(() => items.getByRole('link').count()).toBe(1);
    await page.getByLabel('Search').fill('');
    await expect.poll(() => items.getByRole('link').count()).toBeGreaterThanOrEqual(2);
    await page.getByLabel('Type').selectOption({ label: 'Documents' });
    await expect.poll(() => items.getByRole('link', { name: `camera-${name}.jpg` }).count()).toBe(0);
    await items.getByRole('link', { name: `report-${name}.pdf` }).waitFor();
    await page.getByLabel('Type').selectOption({ label: 'All' });
    for (const label of ['Newest', 'Oldest', 'Name', 'Size', 'Taken']) {
      await page.getByLabel('Sort').selectOption({ label });
      await items.getByRole('link', { name: `camera-${name}.jpg` }).waitFor();
    }
    await page.getByLabel('Sort').selectOption({ label: 'Name' });
    // The list is asked for again in the new order; it shows once the answer is in.
    await expect
      .poll(async () => {
        const names = await Promise.all(
          (await items.getByRole('link').all()).map((link) => link.getAttribute('aria-label')),
        );
        return names.length >= 2 && names.join('\n') === [...names].sort().join('\n');
      })
      .toBe(true);
    await screenshot(page, `${name}-library`);
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
    await context.close();
  });
});
