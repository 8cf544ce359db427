// Unit tests of the results view's pure parts: CSV (with formula
// escaping), filtering, sorting, and reading every page.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { csvCell, toCSV, csvColumns, filterResults, sortResults, changesOf, stateOf, loadAll, unexpectedOf } from '../static/js/results.js';

test('csvCell escapes formulas and quotes', () => {
  const cases = [
    ['plain', 'plain'],
    ['=HYPERLINK("x")', `"'=HYPERLINK(""x"")"`],
    ['+1', "'+1"],
    ['-1', "'-1"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['\tx', "'\tx"],
    ['a,b', '"a,b"'],
    ['line\nbreak', '"line\nbreak"'],
    [null, ''],
    [7, '7'],
    ['a=b', 'a=b'],
  ];
  for (const [in_, want] of cases) assert.equal(csvCell(in_), want, `csvCell(${JSON.stringify(in_)})`);
});

const results = [
  { node: 'n-2', state: 'failed', reason: '=cmd|x', attempt: 1, latency_ms: 9 },
  { node: 'n-1', state: 'succeeded', changed: true, before: { 'label:team': null }, after: { 'label:team': 'ml' }, attempt: 1, latency_ms: 30 },
  { node: 'n-3', state: 'succeeded', changed: false, before: { 'label:team': 'ml' }, after: { 'label:team': 'ml' }, attempt: 2, latency_ms: 5 },
  { node: 'm-4', state: 'skipped', changed: true, unknown: ['label:team'], after: { 'label:team': 'ml' }, reason: 'unknown' },
];

test('toCSV has a header and one row per node, formulas escaped', () => {
  const lines = toCSV(results).trimEnd().split('\r\n');
  assert.equal(lines[0], csvColumns.join(','));
  assert.equal(lines.length, 1 + results.length);
  assert.equal(lines[1], "n-2,failed,,,,,'=cmd|x,1,9,,");
  assert.equal(lines[2], 'n-1,succeeded,true,label:team=(absent),label:team=ml,,,1,30,,');
  assert.equal(lines[4], 'm-4,skipped,true,label:team=(unknown),label:team=ml,label:team,unknown,,,,');
});

test('changesOf and stateOf', () => {
  assert.deepEqual(changesOf(results[1]), [{ key: 'label:team', before: '(absent)', after: 'ml' }]);
  assert.deepEqual(results.map(stateOf), ['failed', 'succeeded', 'unchanged', 'skipped']);
});

test('filterResults by state and node name', () => {
  const names = (rs) => rs.map((r) => r.node);
  assert.deepEqual(names(filterResults(results, 'failed')), ['n-2']);
  assert.deepEqual(names(filterResults(results, 'unchanged')), ['n-3']);
  assert.deepEqual(names(filterResults(results, '', 'N-')), ['n-2', 'n-1', 'n-3']);
  assert.deepEqual(names(filterResults(results, 'succeeded', 'n-')), ['n-1']);
  assert.deepEqual(names(filterResults(results)), ['n-2', 'n-1', 'n-3', 'm-4']);
});

test('sortResults by column, ties by node name', () => {
  const names = (rs) => rs.map((r) => r.node);
  assert.deepEqual(names(sortResults(results, 'node')), ['m-4', 'n-1', 'n-2', 'n-3']);
  assert.deepEqual(names(sortResults(results, 'node', true)), ['n-3', 'n-2', 'n-1', 'm-4']);
  assert.deepEqual(names(sortResults(results, 'state')), ['n-1', 'n-3', 'n-2', 'm-4']);
  assert.deepEqual(names(sortResults(results, 'latency', true)), ['n-1', 'n-2', 'n-3', 'm-4']);
  assert.deepEqual(names(results), ['n-2', 'n-1', 'n-3', 'm-4'], 'the input is not sorted in place');
});

test('loadAll follows next_page_token to the end', async () => {
  const calls = [];
  const pages = { '': { state: 'succeeded', results: [{ node: 'a' }], next_page_token: 't1' }, t1: { results: [{ node: 'b' }], next_page_token: 't2' }, t2: { results: [{ node: 'c' }] } };
  const client = { batch: async (id, p) => { calls.push([id, p.page_size, p.page_token ?? '']); return pages[p.page_token ?? '']; } };
  const got = await loadAll(client, 'b1', 1);
  assert.deepEqual(got.results.map((r) => r.node), ['a', 'b', 'c']);
  assert.equal(got.batch.state, 'succeeded');
  assert.deepEqual(calls, [['b1', '1', ''], ['b1', '1', 't1'], ['b1', '1', 't2']]);
});

test('sortNodes by name, status and a label column', async () => {
  const { sortNodes } = await import('../static/js/nodes.js');
  const nodes = [
    { name: 'c', ready: 'True', labels: { pool: 'gpu10' } },
    { name: 'a', ready: 'False', labels: { pool: 'gpu9' } },
    { name: 'b', ready: 'True', unschedulable: true, labels: {} },
    { name: 'd', ready: 'True', labels: { pool: 'cpu' } },
  ];
  const names = (ns) => ns.map((n) => n.name);
  assert.deepEqual(names(sortNodes(nodes)), ['a', 'b', 'c', 'd']);
  assert.deepEqual(names(sortNodes(nodes, 'name', true)), ['d', 'c', 'b', 'a']);
  assert.deepEqual(names(sortNodes(nodes, 'status')), ['c', 'd', 'b', 'a']);
  assert.deepEqual(names(sortNodes(nodes, 'label', false, 'pool')), ['d', 'a', 'c', 'b'], 'numeric-aware, absent last');
  assert.deepEqual(names(nodes), ['c', 'a', 'b', 'd'], 'the input is not sorted in place');
});

test('unexpectedOf reads which key had which value from a skipped revert', () => {
  const cases = [
    [{ state: 'skipped', reason: 'label "team.example.com/owner": expected "ml", found "web"' }, { kind: 'label', key: 'team.example.com/owner', expected: 'ml', found: 'web' }],
    [{ state: 'skipped', reason: 'label "team": expected absent, found "x\\"y"' }, { kind: 'label', key: 'team', expected: null, found: 'x"y' }],
    [{ state: 'skipped', reason: 'taint "gpu:NoSchedule": expected "true", found absent' }, { kind: 'taint', key: 'gpu:NoSchedule', expected: 'true', found: null }],
    [{ state: 'skipped', reason: 'the value of label:team before the batch is unknown' }, null],
    [{ state: 'failed', reason: 'label "team": expected "a", found "b"' }, null],
    [{ state: 'skipped' }, null],
  ];
  for (const [r, want] of cases) assert.deepEqual(unexpectedOf(r), want, `unexpectedOf(${JSON.stringify(r)})`);
});
