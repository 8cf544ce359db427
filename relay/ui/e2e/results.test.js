// Browser test of the results view (#/batches/{id}): a batch over every
// test node with some nodes made to fail (the gate server's /fail makes
// the proxy in front of the patch function refuse their writes with a 422
// whose message starts with "="). The view pages through every node, the
// state filter shows exactly the failed ones, the CSV download has one row
// per node with the formula defused, a fresh page opens the same batch
// from its link, the back button works, and another user's link gets the
// refusal a missing batch gets.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { launch, signIn, shot, apiNodes, baseURL, gate, token } from './browser.js';

const selector = process.env.NODEBATCH_E2E_SELECTOR ?? 'nodebatch.dev/test=e2e';
const nodeCount = Number(process.env.NODEBATCH_E2E_NODES ?? 200);
const timeout = Number(process.env.NODEBATCH_E2E_TIMEOUT_MS ?? 60000);
const runID = `res${Date.now().toString(36)}`;
const shared = {}; // what the first test learnt (node names, the failed ones) for the next

let browser;
before(async () => { browser = await launch(); });
after(async () => {
  await gate('fail?nodes=');
  await browser?.close();
});

async function newPage() {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.request().method()} ${r.url()}: ${r.status()}`); });
  return { page, problems };
}

/** parseCSV reads RFC 4180 CSV (quoted cells, "" escapes, CRLF rows). */
function parseCSV(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; } else if (c === '\r' && text[i + 1] === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; i++; } else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

async function tableNodes(page) {
  return page.locator('#results-table tbody tr[data-node]').evaluateAll((trs) => trs.map((tr) => tr.dataset.node));
}

async function download(page, button) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.locator(button).click()]);
  return readFileSync(await d.path(), 'utf8');
}

test('results view: every node, failures filtered, CSV and JSON downloads, links', async () => {
  const { page, problems } = await newPage();
  const gets = [];
  page.on('request', (r) => { const u = new URL(r.url()); if (r.method() === 'GET' && /^\/v1\/batches\/[^/]+$/.test(u.pathname)) gets.push(u.search); });
  await signIn(page, 'alice');
  await page.locator('#app[data-ready=true]').waitFor();
  const names = (await apiNodes(page, selector)).map((n) => n.name ?? n.metadata?.name).sort();
  assert.equal(names.length, nodeCount);
  const failing = names.filter((_, i) => i % 25 === 3);
  const faults = await gate(`fail?nodes=${failing.join(',')}`) !== null;
  const wantFailed = faults ? failing : [];
  Object.assign(shared, { names, wantFailed });

  // Submitted through the API (the editor's flow has its own tests); the
  // view is opened by its link, as a shared link would.
  const t = await token(page);
  const res = await fetch(`${baseURL()}v1/batches`, {
    method: 'POST', headers: { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ selector, labels: [`nodebatch.dev/e2e-results=${runID}`], confirm: nodeCount, idempotency_key: runID }),
  });
  assert.ok(res.ok, `POST /v1/batches: ${res.status} ${await res.clone().text()}`);
  const id = (await res.json()).batch_id;
  await page.evaluate((h) => { location.hash = h; }, `#/batches/${id}`);
  const finalState = faults ? 'partially_failed' : 'succeeded';
  await page.locator(`#results-batch-state[data-state=${finalState}]`).waitFor();
  const dialog = page.locator('#progress-dialog');
  if (await dialog.isVisible()) await dialog.locator('#btn-close-progress').click(); // it opened while the batch ran
  await page.locator('#results-summary').filter({ hasText: `${nodeCount} shown` }).waitFor();
  assert.ok(gets.some((q) => q.includes('page_token=')), `the view read more than one page of results: ${JSON.stringify(gets)}`);

  // Paging through the table shows every node once.
  const seen = [];
  const pages = Math.ceil(nodeCount / 50);
  for (let p = 1; p <= pages; p++) {
    await page.locator('#results-page').filter({ hasText: `Page ${p} of ${pages}` }).waitFor();
    seen.push(...await tableNodes(page));
    if (p < pages) await page.locator('#results-next').click();
  }
  assert.ok(await page.locator('#results-next').isDisabled());
  assert.deepEqual(seen, names, 'every node once, by name');

  // The state filter shows exactly the failed nodes, with their reason.
  await page.locator('#results-state').selectOption('failed');
  await page.locator('#results-summary').filter({ hasText: `${wantFailed.length} shown of ${nodeCount}` }).waitFor();
  assert.deepEqual(await tableNodes(page), wantFailed);
  if (faults) {
    await page.locator('#results-table td.reason').filter({ hasText: 'refused by the browser test' }).first().waitFor();
    await shot(page, 'results-failed');
  }
  await page.locator('#results-state').selectOption('');
  // The name filter, and sorting by name descending.
  await page.getByLabel('Node name').fill(names[7]);
  await page.locator('#results-summary').filter({ hasText: `1 shown of ${nodeCount}` }).waitFor();
  assert.deepEqual(await tableNodes(page), [names[7]]);
  await page.getByLabel('Node name').fill('');
  await page.locator('#results-summary').filter({ hasText: `${nodeCount} shown` }).waitFor();
  await page.locator('button.sort[data-sort=node]').click();
  await page.locator('th[aria-sort=descending] button[data-sort=node]').waitFor();
  assert.equal((await tableNodes(page))[0], names[names.length - 1]);
  await page.locator('#results-table td.changes .after').filter({ hasText: runID }).first().waitFor();
  await shot(page, 'results');

  // CSV: a header and one row per node, every formula defused.
  const rows = parseCSV(await download(page, '#results-csv'));
  assert.deepEqual(rows[0], ['node', 'state', 'changed', 'before', 'after', 'unknown', 'reason', 'attempt', 'latency_ms', 'started_at', 'finished_at']);
  assert.equal(rows.length, 1 + nodeCount);
  assert.deepEqual(rows.slice(1).map((r) => r[0]), names);
  for (const r of rows) {
    assert.equal(r.length, rows[0].length, `row ${r[0]} has ${r.length} cells`);
    for (const c of r) assert.ok(!/^[=+\-@]/.test(c), `cell ${JSON.stringify(c)} of ${r[0]} is a formula`);
  }
  const byNode = Object.fromEntries(rows.slice(1).map((r) => [r[0], r]));
  for (const n of wantFailed) {
    assert.equal(byNode[n][1], 'failed');
    // The patch function prefixes the API server's message ("patch node
    // … at resourceVersion …: =HYPERLINK…"), so the reason never starts
    // with the formula; the leading-formula escape is unit-tested on
    // toCSV, the function this download calls (results.unit.test.js).
    assert.ok(byNode[n][6].includes('=HYPERLINK("https://example.invalid") refused by the browser test'), `${n}'s reason ${JSON.stringify(byNode[n][6])}`);
  }
  assert.deepEqual(rows.slice(1).filter((r) => r[1] === 'failed').map((r) => r[0]), wantFailed);
  const ok = names.find((n) => !wantFailed.includes(n));
  assert.deepEqual(byNode[ok].slice(1, 5), ['succeeded', 'true', 'label:nodebatch.dev/e2e-results=(absent)', `label:nodebatch.dev/e2e-results=${runID}`]);
  // JSON: the batch with every result.
  const doc = JSON.parse(await download(page, '#results-json'));
  assert.equal(doc.batch_id, id);
  assert.equal(doc.results.length, nodeCount);
  assert.equal(doc.next_page_token, undefined);

  // Narrow: no sideways scroll.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `results view scrolls sideways by ${overflow}px at 390px wide`);
  await shot(page, 'results-narrow');
  assert.deepEqual(problems, []);
  await page.close();

  // The link in a fresh page shows the same batch; back returns to it.
  const fresh = await newPage();
  await signIn(fresh.page, 'alice');
  await fresh.page.goto(`${baseURL()}#/batches/${id}`);
  await fresh.page.reload();
  await fresh.page.locator(`#results-batch-state[data-state=${finalState}]`).waitFor();
  assert.equal(await fresh.page.locator('#results-title code').textContent(), id);
  await fresh.page.locator('#results-summary').filter({ hasText: `${nodeCount} shown` }).waitFor();
  await fresh.page.locator('#tab-history').click();
  await fresh.page.locator(`#history-table a.batch-link[href="#/batches/${id}"]`).waitFor();
  assert.ok(await fresh.page.locator('#view-batch').isHidden());
  await fresh.page.goBack();
  await fresh.page.locator('#view-batch').waitFor();
  assert.equal(await fresh.page.locator('#results-title code').textContent(), id);
  await fresh.page.goForward();
  await fresh.page.locator('#view-history').waitFor();
  // A history row links to the batch.
  await fresh.page.locator(`#history-table a.batch-link[href="#/batches/${id}"]`).click();
  await fresh.page.locator(`#results-batch-state[data-state=${finalState}]`).waitFor();
  assert.deepEqual(fresh.problems, []);
  await fresh.page.close();

  // Someone else's batch: exactly the refusal a missing batch gets.
  const bob = await newPage();
  await signIn(bob.page, 'bob');
  const refusal = async (batch) => {
    await bob.page.goto(`${baseURL()}#/batches/${batch}`);
    await bob.page.reload();
    const err = bob.page.locator('#results-error');
    await err.waitFor();
    return { status: await err.getAttribute('data-status'), text: (await err.textContent()).replaceAll(batch, '<id>') };
  };
  const theirs = await refusal(id);
  const missing = await refusal(`${id.slice(0, -4)}zzzz`);
  assert.equal(theirs.status, '404');
  assert.deepEqual(theirs, missing);
  assert.equal(await bob.page.locator('#results-table').count(), 0, 'nothing of the batch is shown');
  assert.deepEqual(bob.problems, []);
  await bob.page.close();
});

test('node table: a label column (kubectl -L) and sorting by it, by status and by name', async () => {
  assert.ok(shared.names, 'needs the results test first');
  const { names, wantFailed } = shared;
  const { page, problems } = await newPage();
  await signIn(page, 'alice');
  await page.getByLabel('Label selector').fill(selector);
  await page.locator('#apply-selector').click();
  await page.locator('#nodes-summary').filter({ hasText: `${nodeCount} of ${nodeCount} nodes matching` }).waitFor();
  const key = 'nodebatch.dev/e2e-results';
  await page.getByLabel('Label column').fill(key);
  await page.locator('#node-table thead button.sort[data-sort=label]').filter({ hasText: key }).waitFor();
  const rows = page.locator('#node-table tbody tr[data-node]');
  const first = async () => rows.first().getAttribute('data-node');
  await page.locator('#node-table button.sort[data-sort=label]').click();
  await page.locator('#node-table th[aria-sort=ascending] button[data-sort=label]').waitFor();
  const labelled = names.filter((n) => !wantFailed.includes(n));
  assert.equal(await first(), labelled[0]);
  assert.equal(await rows.first().locator('td.label-col').textContent(), runID);
  await page.locator('#node-table button.sort[data-sort=label]').click();
  await page.locator('#node-table th[aria-sort=descending] button[data-sort=label]').waitFor();
  // Descending puts the nodes without the label (the failed ones) first;
  // ties stay by name, ascending.
  assert.equal(await first(), wantFailed.length ? wantFailed[0] : labelled[0]);
  if (wantFailed.length) assert.equal(await rows.first().locator('td.label-col').textContent(), '');
  await shot(page, 'nodes-label-column');
  await page.locator('#node-table button.sort[data-sort=name]').click();
  await page.locator('#node-table th[aria-sort=ascending] button[data-sort=name]').waitFor();
  assert.equal(await first(), names[0]);
  await page.locator('#node-table button.sort[data-sort=name]').click();
  await page.locator('#node-table th[aria-sort=descending] button[data-sort=name]').waitFor();
  assert.equal(await first(), names[names.length - 1]);
  await page.locator('#node-table button.sort[data-sort=status]').click();
  await page.locator('#node-table th[aria-sort=ascending] button[data-sort=status]').waitFor();
  // Clearing the column drops it and its sort.
  await page.getByLabel('Label column').fill('');
  await page.locator('#node-table button.sort[data-sort=label]').waitFor({ state: 'detached' });
  assert.deepEqual(problems, []);
  await page.close();
});
