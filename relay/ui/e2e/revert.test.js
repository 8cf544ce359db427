// Browser test of a revert that skips a node: a batch sets a label on two
// nodes, a later batch changes it on one of them, and the first batch's
// revert (the progress dialog's Revert) restores only the node nobody
// changed since. The revert's results view names the skipped node's key,
// the value it found and the one it expected.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, signIn, shot, apiNodes, apiBatch, token, baseURL } from './browser.js';

const selector = process.env.NODEBATCH_E2E_SELECTOR ?? 'nodebatch.dev/test=e2e';
const timeout = Number(process.env.NODEBATCH_E2E_TIMEOUT_MS ?? 60000);
const runID = `rev${Date.now().toString(36)}`;
const key = 'nodebatch.dev/e2e-revert';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const finals = ['succeeded', 'partially_failed', 'failed', 'cancelled'];

/** submit posts a batch through the API the page uses and waits until it is final. */
async function submit(page, body) {
  const res = await fetch(`${baseURL()}v1/batches`, {
    method: 'POST', headers: { Authorization: `Bearer ${await token(page)}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `POST /v1/batches ${JSON.stringify(body)}: ${res.status} ${await res.clone().text()}`);
  const id = (await res.json()).batch_id;
  const deadline = Date.now() + timeout;
  for (;;) {
    const b = await apiBatch(page, id);
    if (finals.includes(b.state)) return b;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${b.state} after ${timeout} ms`);
    await page.waitForTimeout(200); // polling the API: no page event says a batch made through the API ended
  }
}

const labelOf = (n) => n.labels?.[key] ?? n.metadata?.labels?.[key];

test('a revert skips the node someone changed since and says which key had which value', async () => {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.request().method()} ${r.url()}: ${r.status()}`); });
  await signIn(page, 'alice');
  await page.locator('#app[data-ready=true]').waitFor();
  // The last two nodes: the guard's test uses the first two.
  const [changed, kept] = (await apiNodes(page, selector)).map((n) => n.name ?? n.metadata?.name).sort().slice(-2);
  const set = `a-${runID}`;
  const other = `b-${runID}`;

  const first = await submit(page, { labels: [`${key}=${set}`], nodes: [changed, kept] });
  assert.equal(first.state, 'succeeded');
  // Someone else changes the label on one node afterwards.
  const later = await submit(page, { labels: [`${key}=${other}`], nodes: [changed] });
  assert.equal(later.state, 'succeeded');

  // Revert the first batch from its progress dialog (History → progress).
  await page.locator('#tab-history').click();
  await page.locator(`#history-table tr[data-batch="${first.batch_id}"] button[aria-label="Progress of batch ${first.batch_id}"]`).click();
  const dialog = page.locator('#progress-dialog');
  await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
  assert.equal(await dialog.locator('#progress-title code').textContent(), first.batch_id);
  await dialog.locator('#btn-revert').click();
  // The dialog moves to the revert batch.
  await dialog.locator('#progress-title code').filter({ hasNotText: first.batch_id }).waitFor();
  const revert = await dialog.locator('#progress-title code').textContent();
  await dialog.locator(finals.map((s) => `#batch-state[data-state=${s}]`).join(', ')).waitFor();
  assert.equal(await dialog.locator('[data-count=skipped]').textContent(), '1');
  await dialog.locator('#btn-close-progress').click();

  // Its results view: the changed node skipped with the key, the value
  // found and the one expected; the other reverted.
  await page.evaluate((h) => { location.hash = h; }, `#/batches/${revert}`);
  await page.locator('#results-title code').filter({ hasText: revert }).waitFor();
  const skipped = page.locator(`#results-table tr[data-node="${changed}"][data-state=skipped] td.reason .unexpected[data-key="${key}"]`);
  await skipped.waitFor();
  assert.match(await skipped.textContent(), new RegExp(`^Skipped: label ${key} was ${other}, expected ${set}`));
  assert.equal(await skipped.locator('.found').textContent(), other);
  assert.equal(await skipped.locator('.expected').textContent(), set);
  assert.equal(await page.locator(`#results-table tr[data-node="${kept}"]`).getAttribute('data-state'), 'succeeded');
  await page.locator('#results-state').selectOption('skipped');
  await page.locator('#results-summary').filter({ hasText: '1 shown of 2' }).waitFor();
  await shot(page, 'results-revert-skipped');

  // And the nodes: the changed one keeps its new value, the other lost the label.
  const now = Object.fromEntries((await apiNodes(page, selector)).map((n) => [n.name ?? n.metadata?.name, labelOf(n)]));
  assert.equal(now[changed], other);
  assert.equal(now[kept], undefined);
  assert.deepEqual(problems, []);
  await page.close();
});
