#!/usr/bin/env node
// A scripted browser session (Debian's Chromium) for portcullis' end-to-end tests.
//
//   GATEWAY_URL=http://127.0.0.1:18080 OUTPUT_DIR=./output node session.mjs
//
// Reads one JSON command per line on stdin and answers each with ONE JSON line on
// stdout, in order, all in the same browser context (so cookies, the Keycloak SSO
// session and the gateway's session carry over from one command to the next):
//
//   {"cmd":"goto","path":"/profile?x=1","shot":"name"}   open GATEWAY_URL + path (or "url")
//   {"cmd":"assign","path":"/oauth2/logout"}            navigate from the current page
//                                                        (location.assign: a same-origin
//                                                        navigation when on the gateway)
//   {"cmd":"login","username":"alice","password":"alice","shot":"name"}
//                                                        fill Keycloak's login form on the
//                                                        current page, submit, wait until
//                                                        the browser is back on GATEWAY_URL
//   {"cmd":"form","fields":{"#otp":"123456"},"submit":"#kc-login","shot":"name"}
//                                                        fill any form on the current page
//                                                        (Keycloak's one-time-code form),
//                                                        submit, wait until the browser is
//                                                        back on GATEWAY_URL
//   {"cmd":"click","selector":"button[type=submit]"}     click and wait for the navigation
//   {"cmd":"newtab"}                                     open a new tab in the same context
//                                                        and make it the current one
//   {"cmd":"tab","index":0}                              make tab `index` the current one
//   {"cmd":"wait_text","selector":"#state","contains":"closed","timeout_ms":10000}
//                                                        wait (polling, bounded) until the
//                                                        element's text contains the value;
//                                                        answers {"text","waited_ms"}
//   {"cmd":"cookies"}                                    every cookie of the context, with values
//   {"cmd":"close"}                                      close the browser and exit 0
//
// Page commands answer {"ok":true,"url":...,"status":...,"body":...,"title":...,
// "on_gateway":bool,"login_form":bool,"chain":[{"url","status","location"}...],
// "screenshot":path|null}. "status" and "body" are those of the last main-frame
// navigation response that was not a redirect (the raw response body, so a JSON page is
// exactly what the server sent); "chain" lists every main-frame navigation response of
// the command, redirects included; "login_form" says whether Keycloak's login form
// (#username + #password) is showing. A failed command answers {"ok":false,"error":...}
// plus the page snapshot and an error screenshot, and the session stays usable.
//
// The browser is closed and the process exits when stdin ends (for example because the
// test that started it died), on "close", on SIGTERM/SIGINT, or after E2E_MAX_MS
// (default 300000) in any case. Other settings: E2E_TIMEOUT_MS per step (default 30000),
// CHROMIUM_PATH (default /usr/bin/chromium), E2E_TRACE (log each command and its time on
// stderr). Every answer also has "ms", the time the command took.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const gatewayUrl = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const outputDir = path.resolve(process.env.OUTPUT_DIR || process.env.E2E_OUTPUT_DIR || 'output');
const timeout = Number(process.env.E2E_TIMEOUT_MS || 30000);
const maxMs = Number(process.env.E2E_MAX_MS || 300000);
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

if (!gatewayUrl) {
  out({ ok: false, fatal: true, error: 'GATEWAY_URL is not set' });
  process.exit(2);
}
if (!fs.existsSync(executablePath)) {
  out({ ok: false, fatal: true, error: `no browser at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH` });
  process.exit(1);
}
fs.mkdirSync(outputDir, { recursive: true });

const onGateway = (u) => u === gatewayUrl || u.startsWith(gatewayUrl + '/') || u.startsWith(gatewayUrl + '?');

let browser;
let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  try {
    if (browser) await browser.close();
  } catch {
    // already gone
  }
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(143));
process.on('SIGINT', () => shutdown(130));
setTimeout(() => {
  process.stderr.write(`session.mjs: E2E_MAX_MS (${maxMs} ms) reached, closing the browser\n`);
  shutdown(1);
}, maxMs).unref();

try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    handleSIGINT: false,
    handleSIGTERM: false,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
} catch (e) {
  out({ ok: false, fatal: true, error: `cannot start ${executablePath}: ${e && e.message ? e.message : e}` });
  process.exit(1);
}
const context = await browser.newContext({ ignoreHTTPSErrors: true });

// Main-frame navigation responses of the current command (on the current tab).
let chain = [];
let last = null;
// Every tab of the context; commands act on `page`, the current one.
const pages = [];
async function openTab() {
  const p = await context.newPage();
  p.setDefaultTimeout(timeout);
  p.setDefaultNavigationTimeout(timeout);
  p.on('response', (resp) => {
    const req = resp.request();
    if (p !== page || !req.isNavigationRequest() || req.frame() !== p.mainFrame()) return;
    const status = resp.status();
    const redirect = status >= 300 && status < 400;
    chain.push({ url: resp.url(), status, location: redirect ? (resp.headers().location ?? null) : null });
    if (!redirect) last = resp;
  });
  pages.push(p);
  return p;
}
let page = null;
page = await openTab();

const target = (c) => {
  if (c.url) return c.url;
  const p = c.path ?? '/';
  return gatewayUrl + (p.startsWith('/') ? p : '/' + p);
};

async function loginFormShowing() {
  const u = page.locator('#username');
  const p = page.locator('#password');
  return (await u.count()) > 0 && (await p.count()) > 0 && (await u.first().isVisible().catch(() => false));
}

async function snapshot(shot) {
  await page.waitForLoadState('load').catch(() => {});
  let body = null;
  if (last) body = await last.text().catch(() => null);
  if (body === null) body = await page.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => '');
  let screenshot = null;
  if (shot) {
    screenshot = path.join(outputDir, `${shot}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  return {
    url: page.url(),
    status: last ? last.status() : null,
    body,
    title: await page.title().catch(() => ''),
    on_gateway: onGateway(page.url()),
    login_form: await loginFormShowing(),
    chain,
    screenshot,
  };
}

// Runs `action`, which starts a navigation, and waits until the resulting page (after
// any redirects) has loaded.
async function navigating(action) {
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    action(),
  ]);
}

async function run(c) {
  chain = [];
  last = null;
  switch (c.cmd) {
    case 'goto':
      await page.goto(target(c), { waitUntil: 'load' });
      return snapshot(c.shot);
    case 'assign': {
      const dest = target(c);
      await navigating(() => page.evaluate((d) => window.location.assign(d), dest).catch(() => {}));
      return snapshot(c.shot);
    }
    case 'login': {
      const form = page.locator('#username');
      await form.waitFor({ state: 'visible' });
      await form.fill(c.username);
      await page.locator('#password').fill(c.password);
      await navigating(() => page.locator('#kc-login').click());
      if (!onGateway(page.url())) {
        const err = await page
          .locator('#input-error, .kc-feedback-text, #kc-error-message, .pf-v5-c-alert__title')
          .first().innerText().catch(() => '');
        throw new Error(`login did not return to the gateway${err ? ': ' + err.trim() : ''}`);
      }
      return snapshot(c.shot);
    }
    case 'form': {
      for (const [selector, value] of Object.entries(c.fields || {})) {
        const field = page.locator(selector).first();
        await field.waitFor({ state: 'visible' });
        await field.fill(String(value));
      }
      await navigating(() => page.locator(c.submit).first().click());
      if (!onGateway(page.url())) {
        const err = await page
          .locator('#input-error, #input-error-otp-code, .kc-feedback-text, #kc-error-message, .pf-v5-c-alert__title')
          .first().innerText().catch(() => '');
        throw new Error(`the form did not return to the gateway${err ? ': ' + err.trim() : ''}`);
      }
      return snapshot(c.shot);
    }
    case 'newtab':
      page = await openTab();
      return { tab: pages.length - 1 };
    case 'tab':
      if (!pages[c.index]) throw new Error(`no tab ${c.index}`);
      page = pages[c.index];
      await page.bringToFront();
      return { tab: c.index, url: page.url() };
    case 'wait_text': {
      const t0 = Date.now();
      const wait = Number(c.timeout_ms || timeout);
      for (;;) {
        const text = await page.locator(c.selector).first().innerText().catch(() => '');
        if (text.includes(c.contains)) return { text, waited_ms: Date.now() - t0 };
        if (Date.now() - t0 > wait) throw new Error(`${c.selector} never showed ${JSON.stringify(c.contains)} within ${wait} ms; it shows ${JSON.stringify(text)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    case 'click':
      await navigating(() => page.locator(c.selector).first().click());
      return snapshot(c.shot);
    case 'cookies':
      return {
        cookies: (await context.cookies()).map((k) => ({
          name: k.name, value: k.value, domain: k.domain, path: k.path, expires: k.expires,
          httpOnly: k.httpOnly, secure: k.secure, sameSite: k.sameSite,
        })),
      };
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

out({ ok: true, ready: true, browser: browser.version() });

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    out({ ok: false, error: `not JSON: ${line}` });
    continue;
  }
  if (c.cmd === 'close') {
    out({ ok: true, closed: true });
    await shutdown(0);
  }
  const t0 = Date.now();
  try {
    const r = await run(c);
    out({ ok: true, ...r, ms: Date.now() - t0 });
  } catch (e) {
    const error = String(e && e.message ? e.message : e);
    const snap = await snapshot(`${c.shot || c.cmd}-error`).catch(() => ({}));
    out({ ok: false, error, ...snap, ms: Date.now() - t0 });
  }
  if (process.env.E2E_TRACE) process.stderr.write(`session.mjs: ${c.cmd} ${c.path ?? c.url ?? ''} ${Date.now() - t0} ms\n`);
}
// stdin ended: the test is done (or gone).
await shutdown(0);
