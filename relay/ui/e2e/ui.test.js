// Browser tests of the web UI against a running nodebatch (NODEBATCH_UI_URL):
// real Chromium, real relay, real batch API, real cluster. They need at
// least NODEBATCH_E2E_NODES (default 200; the Go test seeds 300) nodes matching
// NODEBATCH_E2E_SELECTOR (default nodebatch.dev/test=e2e).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, signIn, shot, apiNodes, apiBatch, gate } from './browser.js';

const selector = process.env.NODEBATCH_E2E_SELECTOR ?? 'nodebatch.dev/test=e2e';
const nodeCount = Number(process.env.NODEBATCH_E2E_NODES ?? 200);
const runID = `r${Date.now().toString(36)}`;
const timeout = Number(process.env.NODEBATCH_E2E_TIMEOUT_MS ?? 60000);

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function newPage() {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // Chrome logs every non-2xx fetch as a console error, including the
  // feature probes the page makes on purpose; server errors are checked
  // from the responses instead.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.request().method()} ${r.url()}: ${r.status()}`); });
  return { page, problems };
}

/** selectBySelector applies the label selector and selects every match. */
async function selectBySelector(page) {
  await page.getByLabel('Label selector').fill(selector);
  await page.locator('#apply-selector').click();
  await page.locator('#nodes-summary').filter({ hasText: `${nodeCount} of ${nodeCount} nodes matching` }).waitFor();
  await page.locator('#select-all').click();
  await page.locator('#editor-target').filter({ hasText: `all ${nodeCount} nodes matching ${selector}` }).waitFor();
}

/**
 * confirmCount answers the confirmation guard (a selector over 50 nodes):
 * the button stays disabled until the exact node count is typed.
 */
async function confirmCount(page, n) {
  const guard = page.locator('#guard-panel');
  await guard.waitFor();
  assert.equal(await guard.locator('#btn-confirm').isDisabled(), true);
  await guard.locator('#confirm-count').fill(String(n - 1));
  assert.equal(await guard.locator('#btn-confirm').isDisabled(), true, 'a wrong count must not enable the button');
  await guard.locator('#confirm-count').fill(String(n));
  await guard.locator('#btn-confirm').click();
}

async function setLabelRow(page, key, value) {
  const row = page.locator('#label-rows .row').first();
  await row.getByLabel('Key').fill(key);
  await row.getByLabel('Value').fill(value);
}

test('an invalid key shows a field error and submits nothing', async () => {
  const { page, problems } = await newPage();
  const posts = [];
  page.on('request', (r) => { if (r.method() === 'POST' && new URL(r.url()).pathname.startsWith('/v1/batches')) posts.push(r.url()); });
  await signIn(page, 'alice');
  await selectBySelector(page);
  await setLabelRow(page, 'bad key!', 'ml');
  await page.locator('#label-rows .row').first().getByLabel('Value').focus(); // leave the key field
  const keyErr = page.locator('#label-rows .row').first().locator('.field-error[data-for=key]');
  await keyErr.filter({ hasText: 'name part must consist of alphanumeric characters' }).waitFor();
  await page.locator('#btn-submit').click();
  await page.locator('#editor-errors').filter({ hasText: 'nothing was sent' }).waitFor();
  await page.locator('#btn-preview').click();
  await page.locator('#editor-errors').filter({ hasText: 'nothing was sent' }).waitFor();
  assert.equal(await page.locator('#label-rows .row').first().getByLabel('Key').getAttribute('aria-invalid'), 'true');
  // kubectl syntax with a bad taint effect is refused inline too.
  await page.getByLabel('Taints', { exact: true }).fill('gpu=true:Sometimes');
  await page.locator('#kubectl-taints-add').click();
  await page.locator('.kubectl .field-error').filter({ hasText: 'unsupported taint effect "Sometimes"' }).waitFor();
  assert.equal(await page.getByLabel('Taints', { exact: true }).inputValue(), 'gpu=true:Sometimes', 'the refused spec stays in the box to fix');
  assert.equal(await page.locator('#taint-rows .row').count(), 0, 'a refused spec adds no row');
  await page.locator('#btn-preview').click();
  await page.locator('#editor-errors').filter({ hasText: 'Fix the kubectl syntax; nothing was sent.' }).waitFor();
  await shot(page, 'editor-field-error');
  assert.deepEqual(posts, [], 'no batch request may be sent while a field is invalid');
  assert.deepEqual(problems, []);
  await page.close();
});

test('select by selector, preview, apply a label batch to every test node, watch it reach 100 %, see the labels', async () => {
  const { page, problems } = await newPage();
  const frames = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => { try { frames.push(JSON.parse(f.payload)); } catch { /* not JSON */ } }));
  await signIn(page, 'alice');
  await page.locator('#node-table tbody tr[data-node]').first().waitFor();
  await shot(page, 'nodes');
  await selectBySelector(page);
  const key = 'nodebatch.dev/e2e-run';
  await setLabelRow(page, key, runID);

  await page.locator('#btn-preview').click();
  const preview = page.locator('#preview-dialog');
  await preview.locator('[data-count=would-change]').filter({ hasText: String(nodeCount) }).waitFor();
  assert.equal(await preview.locator('[data-count=unchanged]').textContent(), '0');
  await preview.locator('#preview-table td.after').filter({ hasText: runID }).first().waitFor();
  await shot(page, 'preview');
  // Dry run changed nothing.
  assert.equal((await apiNodes(page, `${key}=${runID}`)).length, 0);

  await preview.locator('#btn-apply-preview').click();
  await confirmCount(page, nodeCount);
  const dialog = page.locator('#progress-dialog');
  await dialog.waitFor();
  await dialog.locator('#progress-done').filter({ hasText: new RegExp(`/ ${nodeCount}$`) }).waitFor();
  await shot(page, 'progress-running');
  await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
  assert.equal(await dialog.locator('#progress-percent').textContent(), '100 %');
  assert.equal(await dialog.locator('#progress-done').textContent(), `${nodeCount} / ${nodeCount}`);
  assert.equal(await dialog.locator('#progress-bar').getAttribute('aria-valuenow'), '100.0');
  assert.equal(await dialog.locator('[data-count=failed]').textContent(), '0');
  await shot(page, 'progress-done');
  const batchID = await dialog.locator('#progress-title code').textContent();
  // The live view came over the relay's WebSocket, ending with "complete".
  const mine = frames.filter((f) => f.task_id === batchID);
  assert.ok(mine.some((f) => f.type === 'complete' && f.current === nodeCount && f.state === 'succeeded'),
    `WebSocket frames for ${batchID}: ${JSON.stringify(mine.map((f) => [f.type, f.state, f.current]))}, want a complete message at ${nodeCount}`);
  await dialog.locator('#btn-close-progress').click();
  // Closing only stopped watching: the batch can be reopened from this tab.
  await page.locator(`#recent button[data-batch="${batchID}"]`).click();
  await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
  await dialog.locator('#progress-done').filter({ hasText: `${nodeCount} / ${nodeCount}` }).waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });

  // The table refreshed when the batch ended: every node shows the label.
  await page.getByLabel('Filter text').fill(`${key}=${runID}`);
  await page.locator('#nodes-summary').filter({ hasText: `${nodeCount} of ${nodeCount} nodes` }).waitFor();
  await page.locator('#node-table tbody tr[data-node] .chip-label').filter({ hasText: `${key}=${runID}` }).first().waitFor();
  await shot(page, 'nodes-after');
  assert.equal((await apiNodes(page, `${key}=${runID}`)).length, nodeCount);
  assert.deepEqual(problems, []);
  await page.close();
});

test('cancel mid-batch ends cancelled (then retry and revert), or is not offered when the API has no cancel', async () => {
  const { page, problems } = await newPage();
  await signIn(page, 'alice');
  const features = await page.evaluate(async () => (await (await fetch('config.json')).json()).features ?? []);
  await selectBySelector(page);
  await setLabelRow(page, 'nodebatch.dev/e2e-cancel', runID);
  // Mid-batch by construction, not by speed: the gate lets `before` writes
  // through, then holds each lane's next one until the cancel is recorded.
  // Five lanes, not one: the retry and the revert below run the whole
  // batch again at its concurrency, and 600 nodes one after another took
  // over a minute on a loaded two-core machine.
  const lanes = 5;
  await page.getByLabel('Concurrency (nodes patched at once)').fill(String(lanes));
  const before = 10;
  const gated = features.includes('cancel') && (await gate(`close?after=${before}`)) !== null;
  await page.locator('#btn-submit').click();
  await confirmCount(page, nodeCount);
  const dialog = page.locator('#progress-dialog');
  await dialog.waitFor();
  if (!features.includes('cancel')) {
    assert.equal(await dialog.locator('#btn-cancel').count(), 0, 'a Cancel button without API support would be fake');
    await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
    await page.close();
    return;
  }
  if (gated) {
    await gate(`wait?held=${lanes}`);
    const id = await dialog.locator('#progress-title code').textContent();
    await dialog.locator('#btn-cancel').click();
    // The cancel answers only once the held write has finished: open the
    // gate when the cancel is recorded, the batch still running.
    let b = await apiBatch(page, id);
    for (const deadline = Date.now() + timeout; !b.cancel && Date.now() < deadline; b = await apiBatch(page, id)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(b.cancel, `batch ${id}: no cancel recorded after clicking Cancel`);
    assert.equal(b.state, 'running', `batch ${id} when the cancel was recorded`);
    await gate('open');
  } else {
    // No gate (a run against make run): the click races the batch, and the
    // cancelled count below fails loudly if the batch won.
    await dialog.locator('#btn-cancel').click();
  }
  await dialog.locator('#batch-state[data-state=cancelled]').waitFor();
  const cancelled = Number(await dialog.locator('[data-count=cancelled]').textContent());
  const done = Number(await dialog.locator('[data-count=succeeded]').textContent()) + Number(await dialog.locator('[data-count=unchanged]').textContent());
  assert.ok(cancelled > 0, `cancelled count = ${cancelled}, want > 0`);
  if (gated) {
    // The writes let through and the one held per lane succeed; the rest
    // is cancelled.
    assert.equal(done, before + lanes);
    assert.equal(cancelled, nodeCount - before - lanes);
  }
  assert.equal(await dialog.locator('#progress-done').textContent(), `${nodeCount} / ${nodeCount}`);
  assert.equal(await dialog.locator('#btn-cancel').count(), 0);
  await shot(page, 'progress-cancelled');
  assert.equal((await apiNodes(page, `nodebatch.dev/e2e-cancel=${runID}`)).length, done);
  if (features.includes('retry')) {
    // Run the cancelled nodes as the batch's next attempt.
    await dialog.locator('#btn-retry-cancelled').click();
    await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
    assert.equal(await dialog.locator('[data-count=cancelled]').textContent(), '0');
    assert.equal((await apiNodes(page, `nodebatch.dev/e2e-cancel=${runID}`)).length, nodeCount);
  }
  if (features.includes('revert')) {
    // Revert is a new batch that restores what this one replaced.
    const oldID = await dialog.locator('#progress-title code').textContent();
    await dialog.locator('#btn-revert').click();
    await page.waitForFunction((old) => document.querySelector('#progress-title code')?.textContent !== old, oldID);
    await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
    await shot(page, 'progress-revert');
    assert.equal((await apiNodes(page, `nodebatch.dev/e2e-cancel=${runID}`)).length, 0);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('a few nodes picked by hand run inline; the API\'s field errors are shown', async () => {
  const { page, problems } = await newPage();
  await signIn(page, 'alice');
  await page.getByLabel('Label selector').fill(selector);
  await page.locator('#apply-selector').click();
  await page.locator('#nodes-summary').filter({ hasText: `${nodeCount} of ${nodeCount} nodes matching` }).waitFor();
  const rows = page.locator('#node-table tbody tr[data-node]');
  const picked = [];
  for (let i = 0; i < 3; i++) {
    picked.push(await rows.nth(i).getAttribute('data-node'));
    await rows.nth(i).locator('input[type=checkbox]').check();
  }
  await page.locator('#editor-target').filter({ hasText: '3 selected nodes' }).waitFor();
  await page.locator('#add-taint').click();
  const taint = page.locator('#taint-rows .row').last();
  await taint.getByLabel('Key').fill('nodebatch.dev/e2e-inline');
  await taint.getByLabel('Value').fill(runID);
  await taint.getByLabel('Effect').selectOption('PreferNoSchedule');
  // Label row left empty: it is dropped, not sent.
  // An out-of-range concurrency is refused with the field named, and nothing runs.
  await page.getByLabel('Concurrency (nodes patched at once)').fill('100000');
  await page.locator('#btn-submit').click();
  await page.locator('#editor-errors').filter({ hasText: 'concurrency' }).waitFor();
  assert.equal(await page.locator('#progress-dialog[open]').count(), 0);
  assert.equal(await page.getByLabel('Concurrency (nodes patched at once)').getAttribute('aria-invalid'), 'true');
  await shot(page, 'editor-api-error');
  await page.getByLabel('Concurrency (nodes patched at once)').fill('');
  await page.locator('#btn-submit').click();
  const dialog = page.locator('#progress-dialog');
  await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
  assert.equal(await dialog.locator('#progress-done').textContent(), '3 / 3');
  await dialog.locator('#btn-close-progress').click();
  const want = `nodebatch.dev/e2e-inline=${runID}:PreferNoSchedule`;
  for (const name of picked) {
    await page.locator(`#node-table tr[data-node="${name}"] .chip-taint`).filter({ hasText: want }).waitFor();
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('history lists the batches newest first and reopens one', async () => {
  const { page, problems } = await newPage();
  await signIn(page, 'alice');
  await page.locator('#app[data-ready=true]').waitFor();
  const tab = page.locator('#tab-history');
  if (await tab.isHidden()) {
    // No history endpoint yet: the tab is hidden rather than fake.
    assert.equal(await page.evaluate(async () => (await fetch('v1/batches?limit=1', { headers: { Authorization: `Bearer ${sessionStorage.getItem('nodebatch.token')}` } })).ok), false);
    await page.close();
    return;
  }
  await tab.click();
  const rows = page.locator('#history-table tbody tr[data-batch]');
  await rows.first().waitFor();
  assert.ok(await page.locator('#view-nodes').isHidden(), 'the Nodes view must be hidden behind the History tab');
  // Newest first.
  const created = await page.locator('#history-table tbody tr[data-batch]').evaluateAll((trs) => trs.map((tr) => tr.dataset.created));
  assert.deepEqual(created, [...created].sort().reverse());
  await shot(page, 'history');
  await rows.first().locator('button.link').click();
  const dialog = page.locator('#progress-dialog');
  await dialog.locator('#batch-state').waitFor();
  assert.deepEqual(problems, []);
  await page.close();
});

test('narrow screen stays usable', async () => {
  const { page, problems } = await newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page, 'bob');
  await page.locator('#node-table tbody tr[data-node]').first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px at 390px wide`);
  await shot(page, 'nodes-narrow');
  assert.deepEqual(problems, []);
  await page.close();
});
