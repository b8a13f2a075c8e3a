import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's Chromium, launched the one way the browser tests and the benchmark (figures 13, 13b)
 * both use. No vitest hooks here, so that the benchmark can import it.
 */

/** Debian's Chromium: no browser can be downloaded here, and playwright-core brings none. */
export const CHROMIUM = process.env.STOWAGE_TEST_CHROMIUM ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  // --no-sandbox: CI and the benchmark may run as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}
