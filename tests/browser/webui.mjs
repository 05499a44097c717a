// Opens one page of the real Temporal Web UI in headless Chromium and reports what it shows, for
// tests/it/webui.rs (issue 10: the UI of `temporal server start-dev` decodes through our server).
//
// Usage: node webui.mjs '<JSON>' with
//   {"url", "waitFor": [texts], "stopOn": [texts], "deadlineMs", "screenshot"?: path}
// Loads `url` in a fresh browser (Playwright gives every launch a new temporary --user-data-dir),
// then polls the page's text, without clicking anything, until it contains every `waitFor` text, or
// any `stopOn` text, or `deadlineMs` has passed since the load started. Then takes the screenshot, if
// asked, and writes one JSON line on stdout:
//   {"allFound": bool, "stoppedOn": text or null, "text": document.body.innerText, "elapsedMs",
//    "codecRequests": ["METHOD url" of every /encode or /decode request], "console": [...]}
// or {"harnessError"} when the browser could not be driven. Never downloads a browser: it runs the
// system Chromium. The caller passes loopback URLs only.

import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const POLL_MS = 250;

// A hung browser must not hang the Rust test.
setTimeout(() => {
  process.stderr.write('webui.mjs: gave up after 90 s\n');
  process.exit(3);
}, 90_000).unref();

async function run(call) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const messages = [];
    const codecRequests = [];
    page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`));
    page.on('request', (r) => {
      if (/\/(en|de)code(\?|$)/.test(r.url())) codecRequests.push(`${r.method()} ${r.url()}`);
    });
    const started = Date.now();
    await page.goto(call.url, { timeout: call.deadlineMs });
    let allFound = false;
    let stoppedOn = null;
    let text = '';
    for (;;) {
      text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
      allFound = call.waitFor.every((t) => text.includes(t));
      stoppedOn = call.stopOn.find((t) => text.includes(t)) ?? null;
      if (allFound || stoppedOn !== null || Date.now() - started >= call.deadlineMs) break;
      await page.waitForTimeout(POLL_MS);
    }
    const elapsedMs = Date.now() - started;
    if (call.screenshot) await page.screenshot({ path: call.screenshot, fullPage: true });
    return { allFound, stoppedOn, text, elapsedMs, codecRequests, console: messages };
  } finally {
    await browser.close();
  }
}

let result;
try {
  result = await run(JSON.parse(process.argv[2]));
} catch (e) {
  result = { harnessError: String(e && e.stack ? e.stack : e) };
}
process.stdout.write(JSON.stringify(result) + '\n');
