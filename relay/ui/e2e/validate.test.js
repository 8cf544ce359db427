// Unit tests of the editor's validation (a port of apimachinery's rules and
// kubectl's syntax) and of the PKCE helper, run under node without a browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isQualifiedName, isValidLabelValue, validateChange, validateChanges, parseLabelSpec, parseTaintSpec,
  parseSpecs, toKubectl, toRequest, protectedKeyError, applyChanges, defaultConcurrency,
} from '../static/js/validate.js';
import { pkceChallenge, base64url, rolesOf } from '../static/js/auth.js';
import { matchesText } from '../static/js/nodes.js';
import { diffRows } from '../static/js/preview.js';

test('isQualifiedName accepts what apimachinery accepts', () => {
  for (const k of ['a', 'team', 'A.b_c-9', 'example.com/team', 'node-role.kubernetes.io/gpu', 'a'.repeat(63), `${'a'.repeat(253)}/x`]) {
    assert.deepEqual(isQualifiedName(k), [], k);
  }
});

test('isQualifiedName refuses what apimachinery refuses', () => {
  const cases = [
    ['', 'name part must be non-empty'],
    ['bad key', 'name part must consist of alphanumeric'],
    ['-team', 'name part must consist of alphanumeric'],
    ['team-', 'name part must consist of alphanumeric'],
    ['a'.repeat(64), 'name part must be no more than 63 characters'],
    ['/team', 'prefix part must be non-empty'],
    ['Example.com/team', 'prefix part a lowercase RFC 1123 subdomain'],
    [`${'a'.repeat(254)}/x`, 'prefix part must be no more than 253 characters'],
    ['a/b/c', 'a qualified name must consist of'],
    ['example.com/', 'name part must be non-empty'],
  ];
  for (const [k, want] of cases) {
    const got = isQualifiedName(k);
    assert.ok(got.length > 0 && got.some((m) => m.startsWith(want)), `isQualifiedName(${JSON.stringify(k)}) = ${JSON.stringify(got)}, want a message starting ${JSON.stringify(want)}`);
  }
});

test('isValidLabelValue', () => {
  for (const v of ['', 'ml', 'v1.2_3-x', 'a'.repeat(63)]) assert.deepEqual(isValidLabelValue(v), [], v);
  for (const v of ['a b', '-x', 'x-', 'a'.repeat(64), 'a/b', 'é']) assert.ok(isValidLabelValue(v).length > 0, v);
});

test('protected key prefixes', () => {
  assert.equal(protectedKeyError('kubernetes.io/hostname'), 'keys under "kubernetes.io/" are protected and may not be changed');
  assert.match(protectedKeyError('topology.kubernetes.io/zone'), /protected/);
  assert.match(protectedKeyError('k8s.io/x'), /protected/);
  assert.equal(protectedKeyError('node-role.kubernetes.io/worker'), '');
  assert.equal(protectedKeyError('notkubernetes.io/x'), '');
  assert.equal(protectedKeyError('team'), '');
  assert.equal(protectedKeyError('corp.example/x', ['corp.example/'], []), 'keys under "corp.example/" are protected and may not be changed');
});

test('parseLabelSpec follows kubectl label syntax', () => {
  const cases = [
    ['team=ml', { change: { kind: 'label', op: 'set', key: 'team', value: 'ml', effect: '' } }],
    ['team=', { change: { kind: 'label', op: 'set', key: 'team', value: '', effect: '' } }],
    ['team-', { change: { kind: 'label', op: 'remove', key: 'team', value: '', effect: '' } }],
    ['a=b=c', { error: 'invalid label spec: a=b=c' }],
    ['team', { error: 'unknown label spec: team (use key=value to set, key- to remove)' }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parseLabelSpec(spec), want, spec);
});

test('parseTaintSpec follows kubectl taint syntax', () => {
  const cases = [
    ['gpu=true:NoSchedule', { change: { kind: 'taint', op: 'set', key: 'gpu', value: 'true', effect: 'NoSchedule' } }],
    ['gpu:NoExecute', { change: { kind: 'taint', op: 'set', key: 'gpu', value: '', effect: 'NoExecute' } }],
    ['gpu:NoSchedule-', { change: { kind: 'taint', op: 'remove', key: 'gpu', value: '', effect: 'NoSchedule' } }],
    ['gpu=true:NoSchedule-', { change: { kind: 'taint', op: 'remove', key: 'gpu', value: '', effect: 'NoSchedule' } }],
    ['gpu-', { change: { kind: 'taint', op: 'remove', key: 'gpu', value: '', effect: '' } }],
    ['gpu=true', { error: 'invalid taint spec: gpu=true (use key[=value]:Effect, key:Effect- or key-)' }],
    ['gpu:Sometimes', { error: 'invalid taint spec: gpu:Sometimes, unsupported taint effect "Sometimes"' }],
    ['a=b=c:NoSchedule', { error: 'invalid taint spec: a=b=c:NoSchedule' }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parseTaintSpec(spec), want, spec);
});

test('toKubectl round-trips through the parsers', () => {
  for (const spec of ['team=ml', 'team-', 'x=']) assert.equal(toKubectl(parseLabelSpec(spec).change), spec);
  for (const spec of ['gpu=true:NoSchedule', 'gpu:NoExecute', 'gpu:NoSchedule-', 'gpu-']) assert.equal(toKubectl(parseTaintSpec(spec).change), spec);
});

test('parseSpecs splits on spaces and commas and collects errors', () => {
  const got = parseSpecs('label', 'team=ml, env-  bogus');
  assert.deepEqual(got.changes.map(toKubectl), ['team=ml', 'env-']);
  assert.deepEqual(got.bad, ['bogus']);
  assert.equal(got.errors.length, 1);
});

test('validateChange names the field', () => {
  const cases = [
    [{ kind: 'label', op: 'set', key: 'team', value: 'ml' }, []],
    [{ kind: 'label', op: 'set', key: 'bad key', value: 'ml' }, ['key']],
    [{ kind: 'label', op: 'set', key: 'team', value: 'has space' }, ['value']],
    [{ kind: 'label', op: 'remove', key: 'team', value: 'ignored space' }, []],
    [{ kind: 'taint', op: 'set', key: 'gpu', value: 'true', effect: '' }, ['effect']],
    [{ kind: 'taint', op: 'set', key: 'gpu', value: 'true', effect: 'Never' }, ['effect']],
    [{ kind: 'taint', op: 'remove', key: 'gpu', value: '', effect: '' }, []],
    [{ kind: 'label', op: 'set', key: 'kubernetes.io/hostname', value: 'x' }, ['key']],
  ];
  for (const [c, want] of cases) assert.deepEqual(Object.keys(validateChange(c)).sort(), want, JSON.stringify(c));
});

test('validateChanges mirrors the API on taint keys and effects', () => {
  const t = (op, key, effect) => ({ kind: 'taint', op, key, value: '', effect });
  const cases = [
    [[t('set', 'gpu', 'NoSchedule'), t('set', 'gpu', 'NoExecute')], [[], []]],
    [[t('set', 'gpu', 'NoSchedule'), t('remove', 'gpu', 'NoSchedule')], [[], ['key']]],
    [[t('remove', 'gpu', ''), t('set', 'gpu', 'NoExecute')], [[], ['key']]],
    [[t('set', 'gpu', 'NoExecute'), t('remove', 'gpu', '')], [[], ['key']]],
    [[t('remove', 'gpu', ''), t('remove', 'cpu', '')], [[], []]],
  ];
  for (const [changes, want] of cases) {
    assert.deepEqual(validateChanges(changes).map((e) => Object.keys(e)), want, changes.map(toKubectl).join(' '));
  }
});

test('defaultConcurrency is the API rule: one lane per 20 nodes, 1..max', () => {
  for (const [total, max, want] of [[1, 50, 1], [20, 50, 1], [21, 50, 2], [200, 50, 10], [5000, 50, 50], [0, 50, 1], [100, 3, 3]]) {
    assert.equal(defaultConcurrency(total, max), want, `defaultConcurrency(${total}, ${max})`);
  }
});

test('validateChanges flags duplicates', () => {
  const errs = validateChanges([
    { kind: 'label', op: 'set', key: 'team', value: 'a' },
    { kind: 'label', op: 'remove', key: 'team', value: '' },
    { kind: 'taint', op: 'set', key: 'team', value: '', effect: 'NoSchedule' },
    { kind: 'taint', op: 'set', key: 'team', value: '', effect: 'NoExecute' },
  ]);
  assert.deepEqual(errs.map((e) => Object.keys(e)), [[], ['key'], [], []]);
});

test('toRequest builds the API arrays', () => {
  const got = toRequest([
    { kind: 'label', op: 'set', key: 'team', value: 'ml' },
    { kind: 'taint', op: 'set', key: 'gpu', value: 'true', effect: 'NoSchedule' },
    { kind: 'label', op: 'remove', key: 'old' },
  ]);
  assert.deepEqual(got, { labels: ['team=ml', 'old-'], taints: ['gpu=true:NoSchedule'] });
});

test('applyChanges mirrors kubectl semantics', () => {
  const node = { labels: { a: '1', old: 'x' }, taints: [{ key: 'gpu', value: 'a', effect: 'NoSchedule' }, { key: 'gpu', value: '', effect: 'NoExecute' }, { key: 'z', value: '', effect: 'NoSchedule' }] };
  const got = applyChanges(node, [
    { kind: 'label', op: 'set', key: 'a', value: '2' }, { kind: 'label', op: 'remove', key: 'old' },
    { kind: 'taint', op: 'remove', key: 'gpu', effect: '' }, { kind: 'taint', op: 'set', key: 'z', value: 'v', effect: 'NoSchedule' },
  ]);
  assert.deepEqual(got, { labels: { a: '2' }, taints: [{ key: 'z', value: 'v', effect: 'NoSchedule' }] });
  assert.deepEqual(node.labels, { a: '1', old: 'x' }, 'input must not change');
});

test('pkceChallenge matches RFC 7636 appendix B', async () => {
  assert.equal(await pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
  assert.equal(base64url(new Uint8Array([251, 255])), '-_8');
});

test('rolesOf reads string or array claims', () => {
  assert.deepEqual(rolesOf({ roles: ['admin'] }), ['admin']);
  assert.deepEqual(rolesOf({ role: 'admin' }, 'role'), ['admin']);
  assert.deepEqual(rolesOf({ groups: 'a b' }, 'groups'), ['a', 'b']);
  assert.deepEqual(rolesOf(null), []);
});

test('matchesText needs every word', () => {
  const n = { name: 'node-0001', labels: { pool: 'gpu' }, taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }] };
  assert.ok(matchesText(n, 'pool=gpu 0001'));
  assert.ok(matchesText(n, 'NOSCHEDULE'));
  assert.ok(!matchesText(n, 'pool=cpu'));
  assert.ok(matchesText(n, '  '));
});

test('diffRows handles structured and flat before/after', () => {
  assert.deepEqual(diffRows({ labels: { team: null } }, { labels: { team: 'ml' } }), [{ key: 'label team', before: '(absent)', after: 'ml' }]);
  assert.deepEqual(diffRows({ team: 'a' }, { team: 'b', x: '1' }), [{ key: 'team', before: 'a', after: 'b' }, { key: 'x', before: '(absent)', after: '1' }]);
});
