import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { PASSWORDS } from '../helpers/app.ts';
import { pdf, sha256, type MediaItem } from '../media/media-helpers.ts';
import { browserAvailable, consoleSuite, openContext, signIn, VIEWPORTS } from './browser.ts';

/** CONSOLE.md: sessions, paging as one scrolls, resumable uploads, and the keyboard. */
const run = browserAvailable();

const suite = consoleSuite(run);

async function focusRing(page: Page): Promise<string> {
  return page.evaluate<string>(
    '(() => { const s = getComputedStyle(document.activeElement); return s.outlineStyle + " " + s.outlineWidth; })()',
  );
}

describe.skipIf(!run).each(Object.entries(VIEWPORTS))('the console at a %s viewport', (name, viewport) => {
  it('lists the sessions, marks this one, and revokes another for real', async () => {
    const device = `Other device (${name})`;
    const login = await fetch(`${suite.app.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': device },
      body: JSON.stringify({ username: 'bob', password: PASSWORDS.bob }),
    });
    const other = (await login.json()) as { accessToken: string };
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'bob');
    await page.getByRole('navigation').getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    const rows = page.getByRole('table').getByRole('row');
    const current = rows.filter({ hasText: 'This session' });
    await expect.poll(() => current.count()).toBe(1);
    expect(await current.getByRole('button', { name: 'Revoke' }).count()).toBe(0);
    // Every other row (header and this session aside) can be revoked.
    expect(await page.getByRole('button', { name: 'Revoke' }).count()).toBe((await rows.count()) - 2);
    const row = rows.filter({ hasText: device });
    expect(await row.textContent()).toContain('127.0.0.1');
    await row.getByRole('button', { name: 'Revoke' }).click();
    await expect.poll(() => rows.filter({ hasText: device }).count()).toBe(0);
    const me = (token: string) =>
      fetch(`${suite.app.base}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } }).then(
        (r) => r.status,
      );
    expect(await me(other.accessToken)).toBe(401);
    expect(await me(suite.app.tokens.bob)).toBe(200);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('pages through the library with the cursor as the person scrolls', async () => {
    const owner = name === 'phone' ? 'alice' : 'root';
    // A library of 500 on the desktop (ten pages of the API's 50), 120 on the phone.
    const count = name === 'phone' ? 120 : 500;
    for (let i = 0; i < count; i++)
      await suite.app.uploadFile(
        pdf(10, `${name} ${i}`),
        `page-${name}-${String(i).padStart(3, '0')}.pdf`,
        owner,
      );
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    const lists: string[] = [];
    page.on('request', (request) => request.url().includes('/api/media/list') && lists.push(request.url()));
    await signIn(page, owner);
    const links = page.getByRole('list', { name: 'Items' }).getByRole('link');
    await links.first().waitFor();
    expect(await links.count()).toBeLessThan(count);
    // Scrolling to the last item shown makes the next page come, until every item is there.
    await expect
      .poll(
        async () => {
          await links.last().scrollIntoViewIfNeeded();
          return links.count();
        },
        { timeout: 60_000 },
      )
      .toBe(count);
    const names = await Promise.all((await links.all()).map((l) => l.getAttribute('aria-label')));
    expect(new Set(names).size).toBe(count);
    expect(lists.some((u) => u.includes('cursor='))).toBe(true);
    expect(await page.getByRole('navigation').count()).toBe(1);
    expect(problems).toEqual([]);
    await context.close();
  }, 180_000);

  it('resumes an upload after the connection drops instead of starting again', async () => {
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'bob');
    const data = pdf(10 * 1024 * 1024, `resume ${name}`);
    const tus: { method: string; offset: string | undefined }[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/api/media/uploads'))
        tus.push({ method: request.method(), offset: request.headers()['upload-offset'] });
    });
    // The second PATCH (8 MiB in) dies as a dropped connection would; the rest go through.
    let patches = 0;
    await page.route('**/api/media/uploads/**', async (route) => {
      if (route.request().method() === 'PATCH' && ++patches === 2) return route.abort('connectionreset');
      return route.continue();
    });
    await page
      .getByLabel('Upload files')
      .setInputFiles([{ name: `resume-${name}.pdf`, mimeType: 'application/pdf', buffer: data }]);
    await page
      .getByRole('list', { name: 'Items' })
      .getByRole('link', { name: `resume-${name}.pdf` })
      .waitFor({ timeout: 20_000 });
    // One creation; after the drop, a HEAD for the offset and a PATCH that goes on from it.
    expect(tus.filter((r) => r.method === 'POST')).toHaveLength(1);
    const head = tus.findIndex((r) => r.method === 'HEAD');
    expect(head).toBeGreaterThan(0);
    expect(tus.slice(head).find((r) => r.method === 'PATCH')?.offset).toBe(String(8 * 1024 * 1024));
    const items = (await suite.app.api('GET', '/api/media/list?limit=100&q=resume', { as: 'bob' })).json<{
      items: MediaItem[];
    }>();
    expect(items.items.filter((i) => i.filename === `resume-${name}.pdf`).map((i) => i.sha256)).toEqual([
      sha256(data),
    ]);
    expect(problems).toEqual([]);
    await context.close();
  }, 60_000);

  it('uploads files dropped on the page', async () => {
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'bob');
    const data = pdf(1000, `dropped ${name}`);
    const dataTransfer = await page.evaluateHandle(
      `(() => {
        const bytes = Uint8Array.from(atob(${JSON.stringify(data.toString('base64'))}), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], ${JSON.stringify(`dropped-${name}.pdf`)}, { type: 'application/pdf' }));
        return transfer;
      })()`,
    );
    await page.dispatchEvent('main', 'drop', { dataTransfer });
    await page
      .getByRole('list', { name: 'Items' })
      .getByRole('link', { name: `dropped-${name}.pdf` })
      .waitFor();
    const items = (await suite.app.api('GET', '/api/media/list?q=dropped', { as: 'bob' })).json<{
      items: MediaItem[];
    }>();
    expect(items.items.map((i) => i.sha256)).toContain(sha256(data));
    expect(problems).toEqual([]);
    await context.close();
  });

  it('works from the keyboard alone, with a visible focus ring', async () => {
    const { context, page } = await openContext(suite.browser, viewport, suite.app.base);
    await page.goto('/');
    await page.getByLabel('Username').waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.name')).toBe('username');
    expect(await focusRing(page)).not.toMatch(/^none/);
    await page.keyboard.type('alice');
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.name')).toBe('password');
    await page.keyboard.type('alice-password-1');
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.textContent')).toBe('Sign in');
    expect(await focusRing(page)).not.toMatch(/^none/);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Library' }).waitFor();
    // Every control of the library is reached with Tab, each with a ring.
    const reached = new Set<string>();
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      reached.add(
        await page.evaluate<string>(
          '(() => { const e = document.activeElement; return e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].firstChild.textContent.trim()) || e.textContent.trim(); })()',
        ),
      );
      expect(await focusRing(page)).not.toMatch(/^none/);
    }
    for (const control of ['Library', 'Sessions', 'Sign out', 'Upload files', 'Search', 'Type', 'Sort'])
      expect([...reached]).toContain(control);
    await context.close();
  });
});
