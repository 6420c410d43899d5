#!/usr/bin/env node
// Logs a user in through the gateway with a real browser (Debian's Chromium).
//
//   GATEWAY_URL=http://127.0.0.1:18080 node login.mjs [START_PATH] [USERNAME] [PASSWORD] [OUTPUT_DIR] [--then PATH]...
//
// Positional arguments fall back to E2E_START_PATH (default "/"), E2E_USERNAME,
// E2E_PASSWORD and E2E_OUTPUT_DIR (default ./output). Other settings:
//   E2E_NAME        base name of the screenshot (default "login")
//   E2E_TIMEOUT_MS  per step (default 30000)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//
// Opens GATEWAY_URL + START_PATH, fills Keycloak's login form (#username,
// #password, #kc-login) when it appears, waits until the browser is back on
// GATEWAY_URL, saves a screenshot and prints ONE JSON line on stdout:
//   {"ok":true,"url":...,"status":200,"body":"...","screenshot":"...","cookies":[...],"steps":[...]}
// Each `--then PATH` is then opened in the same browser session (e.g.
// /oauth2/userinfo or /oauth2/logout) and reported in "steps" with its final
// url, status and body. Exit status: 0 ok, 1 failed (the JSON line has "error").
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const thenPaths = [];
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--then') thenPaths.push(args[++i]);
  else positional.push(args[i]);
}

const gatewayUrl = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const startPath = positional[0] ?? process.env.E2E_START_PATH ?? '/';
const username = positional[1] ?? process.env.E2E_USERNAME;
const password = positional[2] ?? process.env.E2E_PASSWORD;
const outputDir = path.resolve(positional[3] ?? process.env.E2E_OUTPUT_DIR ?? 'output');
const name = process.env.E2E_NAME || 'login';
const timeout = Number(process.env.E2E_TIMEOUT_MS || 30000);
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function emit(result, code) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = code;
}

if (!gatewayUrl || username === undefined || password === undefined) {
  emit({ ok: false, error: 'usage: GATEWAY_URL=... node login.mjs START_PATH USERNAME PASSWORD [OUTPUT_DIR] [--then PATH]...' }, 2);
  process.exit();
}
if (!fs.existsSync(executablePath)) {
  emit({ ok: false, error: `no browser at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH` }, 1);
  process.exit();
}
fs.mkdirSync(outputDir, { recursive: true });

const onGateway = (u) => u === gatewayUrl || u.startsWith(gatewayUrl + '/') || u.startsWith(gatewayUrl + '?');

// The status of the last top-level navigation response (redirects excluded).
let lastStatus = null;
function track(page) {
  page.on('response', (resp) => {
    const req = resp.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame() && !(resp.status() >= 300 && resp.status() < 400)) {
      lastStatus = resp.status();
    }
  });
}

async function snapshot(page) {
  const body = await page.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => '');
  return { url: page.url(), status: lastStatus, body };
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let result = { ok: false };
let page;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  page = await context.newPage();
  page.setDefaultTimeout(timeout);
  track(page);

  const start = gatewayUrl + (startPath.startsWith('/') ? startPath : '/' + startPath);
  await page.goto(start, { waitUntil: 'domcontentloaded' });

  // Either the gateway sent us to Keycloak's login form, or we are already in.
  const form = page.locator('#username');
  if (!onGateway(page.url()) || (await form.count()) > 0) {
    await form.waitFor({ state: 'visible' });
    await form.fill(username);
    await page.locator('#password').fill(password);
    await Promise.all([
      page.waitForURL((u) => onGateway(u.href) || u.href.includes('login-actions'), { waitUntil: 'domcontentloaded' }),
      page.locator('#kc-login').click(),
    ]);
    if (!onGateway(page.url())) {
      // Still at Keycloak: wrong password, a required action, an error page...
      const err = await page.locator('#input-error, .kc-feedback-text, #kc-error-message, .pf-v5-c-alert__title')
        .first().innerText().catch(() => '');
      throw new Error(`login did not return to the gateway${err ? ': ' + err.trim() : ''}`);
    }
  }
  await page.waitForLoadState('load').catch(() => {});
  const shot = path.join(outputDir, `${name}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  result = { ok: true, ...(await snapshot(page)), screenshot: shot };

  const origin = new URL(gatewayUrl).origin;
  result.cookies = (await context.cookies(origin)).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, size: c.value.length,
  }));

  result.steps = [];
  for (const [i, p] of thenPaths.entries()) {
    lastStatus = null;
    await page.goto(gatewayUrl + (p.startsWith('/') ? p : '/' + p), { waitUntil: 'load' });
    const stepShot = path.join(outputDir, `${name}-then${i + 1}.png`);
    await page.screenshot({ path: stepShot, fullPage: true });
    result.steps.push({ path: p, ...(await snapshot(page)), screenshot: stepShot });
  }
  emit(result, 0);
} catch (e) {
  let extra = {};
  if (page) {
    const shot = path.join(outputDir, `${name}-error.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    extra = { ...(await snapshot(page)), screenshot: shot };
  }
  emit({ ...result, ok: false, error: String(e && e.message ? e.message : e), ...extra }, 1);
} finally {
  await browser.close();
}
