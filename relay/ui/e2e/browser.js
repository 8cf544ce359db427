// browser.js: shared set-up for the browser tests. Debian's Chromium
// (/usr/bin/chromium) driven by playwright-core, headless, with a fresh
// profile per launch. The page under test comes from NODEBATCH_UI_URL.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** screenshotDir is the gitignored folder the tests save screenshots to. */
export const screenshotDir = process.env.NODEBATCH_SCREENSHOTS ?? path.resolve(here, '../../../.nodebatch/screenshots');

/** baseURL is the relay serving the UI; the tests fail loudly without it. */
export function baseURL() {
  const u = process.env.NODEBATCH_UI_URL;
  if (!u) throw new Error('NODEBATCH_UI_URL is not set: run the browser tests against a running nodebatch (make run, or the Go test that starts the whole product)');
  return u.replace(/\/$/, '') + '/';
}

/** launch starts Chromium with a fresh profile; close() removes it. */
export async function launch() {
  const profile = mkdtempSync(path.join(tmpdir(), 'nodebatch-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.NODEBATCH_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-quic', '--disable-sync'],
    viewport: { width: 1366, height: 768 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * signIn opens the UI and signs in as a development user, as a person
 * does: "Sign in" leads to the development issuer's sign-in page
 * (authorization code with PKCE), which lists its users.
 */
export async function signIn(page, user = 'alice') {
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(baseURL());
  try {
    await page.locator('#btn-oidc').click({ timeout: 15000 });
    await page.locator(`button[data-user="${user}"]`).click({ timeout: 15000 });
    await page.locator('#who').waitFor({ timeout: 15000 });
  } catch (e) {
    const text = await page.locator('body').innerText().catch(() => '');
    throw new Error(`sign in as ${user} failed: ${e.message}\npage errors: ${errors.join('; ') || 'none'}\npage text: ${text}`);
  }
}

/** shot saves a full-page screenshot under screenshotDir. */
export async function shot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: false });
}

/** token returns the page's bearer token (to check results through the API). */
export async function token(page) {
  return page.evaluate(() => sessionStorage.getItem('nodebatch.token'));
}

/** apiNodes lists nodes through the same API the page uses. */
export async function apiNodes(page, selector) {
  const t = await token(page);
  const res = await fetch(`${baseURL()}v1/nodes?selector=${encodeURIComponent(selector)}`, { headers: { Authorization: `Bearer ${t}` } });
  if (!res.ok) throw new Error(`GET /v1/nodes?selector=${selector}: ${res.status} ${await res.text()}`);
  return (await res.json()).nodes;
}

/**
 * gate drives the gate in front of the patch function's API traffic when
 * the Go test provides one (NODEBATCH_E2E_GATE_URL): gate('close?after=10')
 * lets 10 more writes through and holds the rest, gate('wait?held=1')
 * resolves once one is held, gate('open') releases them. It returns null
 * when there is no gate (a run against `make run`).
 */
export async function gate(path) {
  const base = process.env.NODEBATCH_E2E_GATE_URL;
  if (!base) return null;
  const res = await fetch(`${base.replace(/\/$/, '')}/${path}`, { method: 'POST' });
  if (!res.ok) throw new Error(`gate ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** apiBatch reads a batch (first page of results) through the same API the page uses. */
export async function apiBatch(page, id) {
  const t = await token(page);
  const res = await fetch(`${baseURL()}v1/batches/${encodeURIComponent(id)}?page_size=1`, { headers: { Authorization: `Bearer ${t}` } });
  if (!res.ok) throw new Error(`GET /v1/batches/${id}: ${res.status} ${await res.text()}`);
  return res.json();
}
