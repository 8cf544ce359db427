// Sessions that last: the ID token is renewed through the development
// issuer (refresh-token grant) before it expires, and when the issuer will
// not renew it, the page asks the user to sign in again in a popup, keeping
// the editor's rows. Needs the Go test's control server
// (NODEBATCH_E2E_GATE_URL) to shorten the issuer's token lifetime.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, signIn, shot, gate, token } from './browser.js';

const selector = process.env.NODEBATCH_E2E_SELECTOR ?? 'nodebatch.dev/test=e2e';
const nodeCount = Number(process.env.NODEBATCH_E2E_NODES ?? 200);
const timeout = Number(process.env.NODEBATCH_E2E_TIMEOUT_MS ?? 60000);
const ttl = 12; // seconds: renewed a third before the end, at 8 s

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

/** rows reads the editor's label and taint rows as the user sees them. */
async function rows(page) {
  return page.evaluate(() => [...document.querySelectorAll('#label-rows .row, #taint-rows .row')].map((r) => [
    r.querySelector('input[name=key]').value, r.querySelector('input[name=value]').value]));
}

async function previewCount(page) {
  await page.locator('#btn-preview').click();
  const preview = page.locator('#preview-dialog');
  await preview.locator('[data-count=would-change]').filter({ hasText: String(nodeCount) }).waitFor();
  await page.keyboard.press('Escape');
  await preview.waitFor({ state: 'hidden' });
}

test('a token that expires mid-session is renewed; a refused renewal asks to sign in again and keeps the rows', async () => {
  if (!(await gate(`token-ttl?d=${ttl}s`))) throw new Error('this test needs the control server NODEBATCH_E2E_GATE_URL (run it through the Go test TestBrowser)');
  const page = await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const unauthorized = [];
  page.on('response', (r) => { if (r.status() === 401) unauthorized.push(r.url()); });
  try {
    await signIn(page, 'alice');
    const first = await token(page);
    const c = claimsOf(first);
    assert.ok(c.exp - c.iat <= ttl, `token lives ${c.exp - c.iat} s, want at most ${ttl} s (the issuer's short lifetime)`);

    // The user is half-way through a change: a label row and a taint row.
    await page.getByLabel('Label selector').fill(selector);
    await page.locator('#apply-selector').click();
    await page.locator('#nodes-summary').filter({ hasText: `${nodeCount} of ${nodeCount} nodes matching` }).waitFor();
    await page.locator('#select-all').click();
    const label = page.locator('#label-rows .row').first();
    await label.getByLabel('Key').fill('nodebatch.dev/session');
    await label.getByLabel('Value').fill('kept');
    await page.locator('#add-taint').click();
    const taint = page.locator('#taint-rows .row').first();
    await taint.getByLabel('Key').fill('nodebatch.dev/session-taint');
    await taint.getByLabel('Value').fill('also-kept');
    const want = [['nodebatch.dev/session', 'kept'], ['nodebatch.dev/session-taint', 'also-kept']];

    // Renewed before it expires, without the user, and the first token's
    // end passes with the page still signed in.
    await page.waitForFunction((t0) => sessionStorage.getItem('nodebatch.token') !== t0, first);
    const second = await token(page);
    assert.equal(claimsOf(second).sub, 'alice');
    assert.ok(claimsOf(second).exp > c.exp, 'the renewed token must outlive the first');
    await page.waitForFunction((exp) => Date.now() > exp * 1000 + 1000, c.exp);
    assert.equal(await page.locator('#session-prompt').isHidden(), true, 'no prompt while renewal works');
    await previewCount(page); // the API takes the renewed token
    assert.deepEqual(await rows(page), want);
    assert.deepEqual(unauthorized, [], 'no request may have gone out with an expired token');

    // The identity provider ends the session: the next renewal is refused
    // and the page asks the user, keeping what they typed.
    await gate('revoke');
    await page.locator('#session-prompt').waitFor({ state: 'visible' });
    assert.match(await page.locator('#session-prompt').innerText(), /Your unsaved changes stay on this page/);
    assert.deepEqual(await rows(page), want);
    await shot(page, 'session-prompt');
    const [popup] = await Promise.all([browser.context.waitForEvent('page'), page.locator('#btn-resignin').click()]);
    await popup.locator('button[data-user="alice"]').click();
    await popup.waitForEvent('close');
    await page.locator('#session-prompt').waitFor({ state: 'hidden' });
    const third = await token(page);
    assert.notEqual(third, second);
    assert.ok(claimsOf(third).exp * 1000 > Date.now(), 'signed in again with a valid token');
    assert.deepEqual(await rows(page), want, 'the rows survive the sign-in');
    await previewCount(page);
    assert.deepEqual(problems, []);
  } finally {
    await gate('token-ttl?d=1h');
    await page.close();
  }
});
