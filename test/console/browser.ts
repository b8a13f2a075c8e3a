import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { CHROMIUM, launchChromium } from '../helpers/chromium.ts';
import { startMediaApp, type MediaApp } from '../media/media-helpers.ts';
import { PASSWORDS } from '../helpers/app.ts';
import { required } from '../helpers/requirements.ts';

export const CONSOLE_DIST = path.resolve(import.meta.dirname, '../../console/dist/index.html');
/** Screenshots for a person to look at (git-ignored). */
export const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts/console');

export function browserAvailable(): boolean {
  return (
    required(fs.existsSync(CHROMIUM), 'Chromium', 'apt-get install chromium (.ci/run does)') &&
    required(
      fs.existsSync(CONSOLE_DIST),
      'the built web console',
      'node scripts/build-console.ts (npm test and npm start build it)',
    )
  );
}

export const VIEWPORTS = {
  phone: { width: 390, height: 844 },
  desktop: { width: 1280, height: 800 },
} as const;

/**
 * A fresh browser profile at a viewport, recording every request's origin and every CSP
 * violation or page error, so a test can assert that none happened.
 */
export async function openContext(
  browser: Browser,
  viewport: { width: number; height: number },
  base: string,
): Promise<{ context: BrowserContext; page: Page; foreign: string[]; problems: string[] }> {
  const context = await browser.newContext({ viewport, baseURL: base, acceptDownloads: true });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  const foreign: string[] = [];
  const problems: string[] = [];
  const origin = new URL(base).origin;
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin) foreign.push(request.url());
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text()))
      problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return { context, page, foreign, problems };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Signs in through the form, as a person would, and waits for the signed-in navigation. */
export async function signIn(page: Page, user: keyof typeof PASSWORDS): Promise<void> {
  await page.goto('/');
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(PASSWORDS[user]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation').getByRole('button', { name: 'Sign out' }).waitFor();
}

/**
 * The server and the browser a console test file drives, started once for the file (when `run`)
 * and stopped after it.
 */
export function consoleSuite(
  run: boolean,
  env: Record<string, string> = {},
): { app: MediaApp; browser: Browser } {
  const suite = {} as { app: MediaApp; browser: Browser };
  beforeAll(async () => {
    if (!run) return;
    suite.app = await startMediaApp(env);
    suite.browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await suite.browser?.close();
    await suite.app?.close();
  });
  return suite;
}
