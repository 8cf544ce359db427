// Browser test of the impact preview and the confirmation guard: a
// NoExecute taint on two nodes running one seeded pod of each kind
// (NODEBATCH_E2E_POD_NODES, see relay/ui/guard_test.go) shows what it would
// evict before anything runs, and runs only once the user types the node
// count; the finished batch shows what it was predicted to evict, also
// in a fresh page opened by its link.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, signIn, shot, apiNodes, baseURL } from './browser.js';

const podNodes = (process.env.NODEBATCH_E2E_POD_NODES ?? '').split(',').filter(Boolean);
const selector = process.env.NODEBATCH_E2E_SELECTOR ?? 'nodebatch.dev/test=e2e';
const timeout = Number(process.env.NODEBATCH_E2E_TIMEOUT_MS ?? 60000);

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a NoExecute taint shows the pods it evicts and the budget it breaks, and runs only with the typed node count', async () => {
  assert.equal(podNodes.length, 2, 'NODEBATCH_E2E_POD_NODES must name the two nodes with seeded pods');
  const page = await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.request().method()} ${r.url()}: ${r.status()}`); });
  const refused = [];
  page.on('response', (r) => { if (r.status() === 409 && new URL(r.url()).pathname === '/v1/batches') refused.push(r.url()); });
  await signIn(page, 'alice');
  await page.getByLabel('Label selector').fill(selector);
  await page.locator('#apply-selector').click();
  for (const n of podNodes) await page.locator(`#node-table tr[data-node="${n}"] input[type=checkbox]`).check();
  await page.locator('#editor-target').filter({ hasText: '2 selected nodes' }).waitFor();
  await page.locator('#add-taint').click();
  const taint = page.locator('#taint-rows .row').last();
  await taint.getByLabel('Key').fill('nodebatch.dev/drain');
  await taint.getByLabel('Value').fill('now');
  await taint.getByLabel('Effect').selectOption('NoExecute');
  // The label row stays empty: dropped, not sent.

  // Preview: per node, agent (DaemonSet), web, slow (after 300 s), db and
  // noschedule are evicted; exact, exists and system tolerate the taint.
  await page.locator('#btn-preview').click();
  const impact = page.locator('#preview-dialog #preview-impact');
  await impact.locator('[data-impact=summary]').filter({ hasText: 'would evict 10 pods on 2 nodes (8 at once, 2 after their tolerationSeconds); 1 budget would be violated' }).waitFor();
  assert.equal(await impact.locator('[data-count=evictions]').textContent(), '10');
  assert.equal(await impact.locator('[data-count=budgets-violated]').textContent(), '1');
  assert.equal(await impact.locator('li[data-budget$="/web"]').count(), 1);
  const pods = await impact.locator('tr[data-pod]').evaluateAll((trs) => trs.map((tr) => tr.dataset.pod.split('/')[1]).sort());
  const want = podNodes.flatMap((n) => ['agent-00', 'web-01', 'slow-04', 'db-06', 'noschedule-07'].map((p) => `${n}-${p}`)).sort();
  assert.deepEqual(pods, want);
  assert.equal(await impact.locator('tr[data-pod$="-agent-00"] .badge').first().textContent(), 'DaemonSet');
  await shot(page, 'preview-impact');

  // Apply: the API holds it back until the count is typed.
  await page.locator('#preview-dialog #btn-apply-preview').click();
  const guard = page.locator('#guard-panel');
  await guard.locator('#guard-impact [data-count=evictions]').filter({ hasText: '10' }).waitFor();
  assert.equal(refused.length, 1, 'the first apply must be refused with 409');
  assert.equal((await apiNodes(page, selector)).filter((n) => (n.taints ?? []).some((t) => t.key === 'nodebatch.dev/drain')).length, 0, 'nothing may change before the count is typed');
  assert.equal(await guard.locator('#btn-confirm').isDisabled(), true);
  await guard.locator('#confirm-count').fill('3');
  assert.equal(await guard.locator('#btn-confirm').isDisabled(), true, 'a wrong count must not enable the button');
  await guard.locator('#confirm-count').fill('2');
  await shot(page, 'guard-confirm');
  await guard.locator('#btn-confirm').click();
  const dialog = page.locator('#progress-dialog');
  await dialog.locator('#batch-state[data-state=succeeded]').waitFor();
  assert.equal(await dialog.locator('#progress-done').textContent(), '2 / 2');
  // The finished dialog shows the evictions the batch recorded at submit.
  await seesRecordedImpact(dialog.locator('#progress-impact'));
  await shot(page, 'progress-evictions');
  const id = await dialog.locator('#progress-title code').textContent();
  assert.equal(refused.length, 1);
  assert.deepEqual(problems, []);
  await page.close();

  // Opened anywhere else (a fresh tab with nothing kept from the submit,
  // by its link), the batch shows the same: the progress dialog from
  // History and the results view both read it from GET /v1/batches/{id}.
  const fresh = await browser.context.newPage();
  fresh.setDefaultTimeout(timeout);
  const freshProblems = [];
  fresh.on('pageerror', (e) => freshProblems.push(`page error: ${e.message}`));
  await signIn(fresh, 'alice');
  await fresh.goto(`${baseURL()}#/batches/${id}`);
  await fresh.reload();
  await fresh.locator('#results-batch-state[data-state=succeeded]').waitFor();
  await seesRecordedImpact(fresh.locator('#results #results-impact'));
  await shot(fresh, 'results-evictions');
  await fresh.locator('#tab-history').click();
  await fresh.locator(`#history-table tr[data-batch="${id}"] button[aria-label="Progress of batch ${id}"]`).click();
  await seesRecordedImpact(fresh.locator('#progress-dialog #progress-impact'));
  assert.deepEqual(freshProblems, []);
  await fresh.close();
});

/** seesRecordedImpact waits for the recorded impact of the two seeded nodes: 10 evictions, the web budget violated. */
async function seesRecordedImpact(ev) {
  await ev.locator('[data-impact=summary]').filter({ hasText: 'would evict 10 pods on 2 nodes (8 at once, 2 after their tolerationSeconds); 1 budget would be violated' }).waitFor();
  assert.equal(await ev.locator('[data-count=evictions]').textContent(), '10');
  assert.equal(await ev.locator('[data-count=eviction-nodes]').textContent(), '2');
  assert.equal(await ev.locator('[data-count=budgets-violated]').textContent(), '1');
  assert.equal(await ev.locator('li[data-budget$="/web"]').count(), 1);
  assert.match(await ev.locator('li[data-budget$="/web"]').textContent(), /2 evicted, 1 disruption allowed/);
}
