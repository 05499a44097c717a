// Calls the codec server from a page in headless Chromium exactly as the Temporal Web UI does, for
// tests/it/browser.rs (issue 4, SECURITY-TESTS 32 in a real browser).
//
// One browser launch serves every call. Reads one JSON call per line on stdin:
//   {"pageUrl", "codecUrl", "namespace", "authorization", "authorizationExtras", "body"}
// opens pageUrl in a fresh browser context, runs the Web UI's fetch from that page and writes one
// JSON line per call on stdout:
//   {"origin", "status", "body"}            the page could read the response
//   {"origin", "error": {"name", "message"}} fetch threw (a request blocked by CORS is a TypeError)
// plus "console": the page's console messages so far (for failure messages only).
// Exits when stdin closes. Never downloads a browser: it runs the system Chromium.

import { createInterface } from 'node:readline';
import { giveUpAfter, launchChromium } from './chromium.mjs';

const CALL_TIMEOUT_MS = 20_000;

giveUpAfter('cors.mjs', 120_000);

/** The request the Web UI makes for one payload array (DESIGN §3). */
async function webUiDecode({ codecUrl, namespace, authorization, authorizationExtras, body }) {
  const headers = { 'Content-Type': 'application/json', 'X-Namespace': namespace };
  if (authorization) headers['Authorization'] = authorization;
  if (authorizationExtras) headers['Authorization-Extras'] = authorizationExtras;
  try {
    const response = await fetch(codecUrl + '/decode?preserveStorageRefs=true', {
      method: 'POST',
      credentials: 'include',
      headers,
      body,
    });
    return { origin: location.origin, status: response.status, body: await response.text() };
  } catch (e) {
    return { origin: location.origin, error: { name: e.name, message: e.message } };
  }
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), CALL_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function run(browser, call) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const messages = [];
    page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`));
    await page.goto(call.pageUrl, { timeout: CALL_TIMEOUT_MS });
    const result = await withTimeout(page.evaluate(webUiDecode, call), 'fetch');
    return { ...result, console: messages };
  } finally {
    await context.close();
  }
}

const browser = await launchChromium();
try {
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    let result;
    try {
      result = await run(browser, JSON.parse(line));
    } catch (e) {
      result = { harnessError: String(e && e.stack ? e.stack : e) };
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  }
} finally {
  await browser.close();
}
