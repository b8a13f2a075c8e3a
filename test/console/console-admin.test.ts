import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, pdf } from '../media/media-helpers.ts';
import { browserAvailable, consoleSuite, openContext, signIn, VIEWPORTS } from './browser.ts';

/** CONSOLE.md, "Admins", and the ThumbHash placeholders of the library. */
const run = browserAvailable();

const suite = consoleSuite(run);

describe.skipIf(!run).each(Object.entries(VIEWPORTS))('the console at a %s viewport', (name, viewport) => {
  it('shows admins the users with usage and sessions, and ends a user’s sessions', async () => {
    await suite.app.uploadFile(pdf(5000, `bob ${name}`), `bob-${name}.pdf`, 'bob');
    const bob = await suite.app.login('bob');
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'root');
    const nav = page.getByRole('navigation');
    await nav.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    const row = page.getByRole('table').getByRole('row').filter({ hasText: 'bob' });
    await row.waitFor();
    const usage = (await suite.app.api('GET', '/api/users/me', { as: 'bob' })).json<{
      usage: { files: number };
    }>();
    const cells = await row.getByRole('cell').allTextContents();
    expect(cells[0]).toBe('bob');
    expect(cells[1]).toBe('user');
    expect(cells[2]).toBe(String(usage.usage.files));
    expect(Number(cells[4])).toBeGreaterThanOrEqual(1);
    await row.getByRole('button', { name: 'End sessions' }).click();
    await page.getByRole('status').filter({ hasText: 'bob' }).waitFor();
    const me = await fetch(`${suite.app.base}/api/auth/me`, {
      headers: { authorization: `Bearer ${bob.accessToken}` },
    });
    expect(me.status).toBe(401);
    await expect.poll(async () => (await row.getByRole('cell').allTextContents())[4]).toBe('0');
    // Log back in for the tests that follow (the app's own token for bob was ended too).
    suite.app.tokens.bob = (await suite.app.login('bob')).accessToken;
    expect(problems).toEqual([]);
    await context.close();
  });

  it('shows admins the audit log, filtered by user and action', async () => {
    await suite.app.login('alice');
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'root');
    await page.getByRole('navigation').getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    const rows = page.getByRole('table').getByRole('row');
    await expect.poll(() => rows.count()).toBeGreaterThan(2);
    await page.getByLabel('User').fill('alice');
    await page.getByLabel('Action').selectOption({ label: 'login' });
    await expect
      .poll(async () => {
        const body = await page.getByRole('table').locator('tbody').getByRole('row').all();
        const texts = await Promise.all(body.map((r) => r.getByRole('cell').allTextContents()));
        return texts.length > 0 && texts.every((cells) => cells[1] === 'alice' && cells[2] === 'login');
      })
      .toBe(true);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('keeps the admin views from other users', async () => {
    const { context, page } = await openContext(suite.browser, viewport, suite.app.base);
    await signIn(page, 'alice');
    expect(await page.getByRole('link', { name: 'Users' }).count()).toBe(0);
    await page.goto('/app/users');
    await page.getByRole('heading', { name: 'Library' }).waitFor();
    await context.close();
  });

  it('shows the ThumbHash placeholder while a thumbnail loads', async () => {
    const jpeg = await fs.readFile(path.join(FIXTURES, 'Canon_40D.jpg'));
    const item = await suite.app.uploadFile(jpeg, `placeholder-${name}.jpg`, 'alice');
    expect(typeof (item as { placeholder?: unknown }).placeholder).toBe('string');
    const { context, page, problems } = await openContext(suite.browser, viewport, suite.app.base);
    // Thumbnails wait until the test has seen the placeholder.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await page.route('**/thumbnail**', async (route) => {
      await held;
      await route.continue();
    });
    await signIn(page, 'alice');
    const img = page
      .getByRole('list', { name: 'Items' })
      .getByRole('link', { name: `placeholder-${name}.jpg` })
      .getByRole('img', { name: `placeholder-${name}.jpg` });
    await expect.poll(() => img.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
    release();
    // The thumbnail itself (WebP), in the placeholder's place.
    await expect.poll(() => img.getAttribute('src')).toMatch(/^data:image\/webp;base64,/);
    expect(problems).toEqual([]);
    await context.close();
  });
});
