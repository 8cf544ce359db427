// Unit tests of the pure parts of the views: how API answers become what
// the progress dialog and history show.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBatch, isFinal } from '../static/js/progress.js';
import { summarizeChanges } from '../static/js/history.js';
import { resultsOf, rowsOf } from '../static/js/preview.js';

test('fromBatch turns GET /v1/batches/{id} into a progress message', () => {
  const got = fromBatch({
    batch_id: 'b1', state: 'partially_failed', total: 10, action: 'batch_label',
    counts: { succeeded: 7, failed: 2, cancelled: 1, unchanged: 3 },
    failures: [{ node: 'n-3', reason: 'node not found' }], reason: '', timing: { nodes_per_second: 4 },
  });
  assert.equal(got.task_id, 'b1');
  assert.equal(got.type, 'complete');
  assert.equal(got.current, 10);
  assert.equal(got.progress, 100);
  assert.deepEqual(got.counts, { succeeded: 7, failed: 2, skipped: 0, cancelled: 1, unchanged: 3 });
  assert.deepEqual(got.failed_nodes, [{ node: 'n-3', reason: 'node not found' }]);
});

test('fromBatch of a running batch and of a failed one', () => {
  const running = fromBatch({ batch_id: 'b2', state: 'running', total: 4, counts: { succeeded: 1 } });
  assert.deepEqual([running.type, running.current, running.progress], ['progress', 1, 25]);
  const failed = fromBatch({ batch_id: 'b3', state: 'failed', total: 2, counts: { failed: 2 }, reason: 'max_failures crossed' });
  assert.deepEqual([failed.type, failed.message], ['error', 'max_failures crossed']);
  const fromResults = fromBatch({ batch_id: 'b4', state: 'failed', total: 1, counts: { failed: 1 }, results: [{ node: 'x', state: 'failed', reason: 'forbidden' }] });
  assert.deepEqual(fromResults.failed_nodes, [{ node: 'x', reason: 'forbidden' }]);
});

test('isFinal knows the terminal states', () => {
  assert.deepEqual(['pending', 'running', 'succeeded', 'partially_failed', 'failed', 'cancelled', undefined].map(isFinal),
    [false, false, true, true, true, true, false]);
});

test('summarizeChanges shows the kubectl specs', () => {
  assert.equal(summarizeChanges({ labels: ['team=ml', 'old-'], taints: ['gpu:NoSchedule-'] }), 'team=ml old- gpu:NoSchedule-');
  assert.equal(summarizeChanges(undefined), '');
});

test('resultsOf finds per-node results', () => {
  assert.deepEqual(resultsOf({ results: [{ node: 'a' }] }), [{ node: 'a' }]);
  assert.deepEqual(resultsOf({ nodes: ['a', 'b'] }), []);
  assert.deepEqual(resultsOf({}), []);
});

test('rowsOf reads the preview changes list and node results', () => {
  assert.deepEqual(rowsOf({ node: 'a', changes: [{ key: 'label:team', before: null, after: 'ml' }, { key: 'taint:gpu:NoSchedule', before: '', after: null }] }),
    [{ key: 'label:team', before: '(absent)', after: 'ml' }, { key: 'taint:gpu:NoSchedule', before: '', after: '(absent)' }]);
  assert.deepEqual(rowsOf({ node: 'a', before: { 'label:team': 'a' }, after: { 'label:team': 'b' } }), [{ key: 'label:team', before: 'a', after: 'b' }]);
});
