// The system Chromium (Debian's /usr/bin/chromium) as every browser test here launches it: headless,
// with the flags DESIGN §11 lists so it makes no connection of its own. Never downloads a browser.

import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Launches a fresh browser (Playwright gives each launch a new temporary --user-data-dir). */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 });
}

/** Exits with status 3 after `ms` so a hung browser never hangs the Rust test that drives it. */
export function giveUpAfter(script, ms) {
  setTimeout(() => {
    process.stderr.write(`${script}: gave up after ${ms / 1000} s\n`);
    process.exit(3);
  }, ms).unref();
}
