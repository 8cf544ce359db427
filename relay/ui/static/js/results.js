// results.js: the results view of one batch (#/batches/{id}): every
// node's result from GET /v1/batches/{id}, read page by page (all pages),
// shown 50 rows at a time, filtered by state and node name and sorted in
// the browser, and downloadable as CSV or JSON. While the batch runs the
// view shows its progress (the progress dialog, live) and reloads the
// results when it ends.

import { h, replace, fmtTime } from './dom.js';
import { isFinal, recordedImpact } from './progress.js';

/** apiPageSize is how many results one GET asks for (the API's default). */
export const apiPageSize = 100;

/** rowsPerPage is how many results the table shows at a time. */
export const rowsPerPage = 50;

/** states are the node states a result can have, in display order. */
export const states = ['succeeded', 'unchanged', 'failed', 'skipped', 'cancelled', 'pending'];

/** stateOf is a result's state for filtering: "unchanged" is a succeeded node that was already set. */
export function stateOf(r) {
  if (r.state === 'succeeded' && r.changed === false) return 'unchanged';
  return r.state ?? 'pending';
}

const show = (v) => (v === null || v === undefined ? '(absent)' : String(v));

// A skipped node's reason from the patch function names the first key whose
// value was not the one expected (a revert expects what its batch set):
// label "team": expected "ml", found "web" (Go %q quoting, or absent).
const quoted = String.raw`"(?:[^"\\]|\\.)*"`;
const unexpectedRE = new RegExp(String.raw`(label|taint) (${quoted}): expected (absent|${quoted}), found (absent|${quoted})`);

function unquote(s) {
  if (s === 'absent') return null;
  try { return JSON.parse(s); } catch { return s.slice(1, -1); }
}

/**
 * unexpectedOf reads which key had which unexpected value from a skipped
 * result's reason: {kind, key, expected, found} (null: absent), or null.
 */
export function unexpectedOf(r) {
  if (r?.state !== 'skipped' || typeof r.reason !== 'string') return null;
  const m = unexpectedRE.exec(r.reason);
  if (!m) return null;
  return { kind: m[1], key: unquote(m[2]), expected: unquote(m[3]), found: unquote(m[4]) };
}

/** changesOf lists a result's touched keys as {key, before, after} (before "(unknown)" for unknown keys). */
export function changesOf(r) {
  const unknown = new Set(r.unknown ?? []);
  const keys = [...new Set([...Object.keys(r.before ?? {}), ...Object.keys(r.after ?? {}), ...unknown])].sort();
  return keys.map((k) => ({
    key: k,
    before: unknown.has(k) ? '(unknown)' : show(r.before?.[k]),
    after: show(r.after?.[k]),
  }));
}

/** filterResults keeps the results in state (''= any) whose node name contains text. */
export function filterResults(results, state = '', text = '') {
  const t = text.trim().toLowerCase();
  return results.filter((r) => (!state || stateOf(r) === state) && (!t || (r.node ?? '').toLowerCase().includes(t)));
}

const sorters = {
  node: (a, b) => (a.node ?? '').localeCompare(b.node ?? ''),
  state: (a, b) => states.indexOf(stateOf(a)) - states.indexOf(stateOf(b)),
  attempt: (a, b) => (a.attempt ?? 0) - (b.attempt ?? 0),
  latency: (a, b) => (a.latency_ms ?? -1) - (b.latency_ms ?? -1),
};

/** sortResults sorts a copy by column (node, state, attempt, latency), ties by node name. */
export function sortResults(results, column = 'node', descending = false) {
  const by = sorters[column] ?? sorters.node;
  const dir = descending ? -1 : 1;
  return [...results].sort((a, b) => dir * by(a, b) || sorters.node(a, b));
}

/**
 * csvCell quotes one CSV cell (RFC 4180) and defuses spreadsheet formulas:
 * a cell starting with =, +, -, @, tab or carriage return gets a leading
 * apostrophe, so a spreadsheet shows it as text instead of running it.
 */
export function csvCell(v) {
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** csvColumns are the CSV download's columns, one row per node. */
export const csvColumns = ['node', 'state', 'changed', 'before', 'after', 'unknown', 'reason', 'attempt', 'latency_ms', 'started_at', 'finished_at'];

/** toCSV renders results as CSV with a header row, one row per node. */
export function toCSV(results) {
  const pairs = (r, side) => changesOf(r).map((c) => `${c.key}=${c[side]}`).join('; ');
  const lines = [csvColumns.join(',')];
  for (const r of results) {
    lines.push([r.node, r.state, r.changed === undefined ? '' : String(r.changed), pairs(r, 'before'), pairs(r, 'after'),
      (r.unknown ?? []).join('; '), r.reason ?? '', r.attempt ?? '', r.latency_ms ?? '', r.started_at ?? '', r.finished_at ?? ''].map(csvCell).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

/** loadAll reads a batch and every page of its results. */
export async function loadAll(client, id, pageSize = apiPageSize) {
  let batch = null;
  const results = [];
  let token = '';
  let pages = 0;
  do {
    const p = { page_size: String(pageSize) };
    if (token) p.page_token = token;
    const b = await client.batch(id, p);
    batch ??= b;
    results.push(...(b.results ?? []));
    token = b.next_page_token ?? '';
    pages += 1;
  } while (token);
  return { batch, results, pages };
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** ResultsView shows one batch's results. */
export class ResultsView {
  /** @param {object} deps {client, onProgress(id, batch) opens the live progress} */
  constructor(deps) {
    Object.assign(this, deps);
    this.el = h('section', { class: 'panel results', id: 'results', 'aria-labelledby': 'results-title' });
    this.reset('');
  }

  reset(id) {
    this.id = id;
    this.batch = null;
    this.results = [];
    this.error = '';
    this.state = '';
    this.text = '';
    this.sort = 'node';
    this.desc = false;
    this.page = 0;
    this.loading = false;
  }

  /** open shows batch id; a running batch also opens its live progress. */
  async open(id) {
    this.reset(id);
    this.loading = true;
    this.render();
    await this.load();
    if (this.id === id && this.batch && !isFinal(this.batch.state)) this.onProgress?.(id, this.batch);
  }

  /** load (re)reads every page of the batch's results. */
  async load() {
    const id = this.id;
    this.loading = true;
    try {
      const { batch, results } = await loadAll(this.client, id);
      if (this.id !== id) return;
      this.batch = batch;
      this.results = results;
      this.error = '';
    } catch (e) {
      if (this.id !== id) return;
      this.batch = null;
      this.results = [];
      this.error = e.message;
      this.errorStatus = e.status;
    }
    this.loading = false;
    this.render();
  }

  shown() { return sortResults(filterResults(this.results, this.state, this.text), this.sort, this.desc); }

  render() {
    const b = this.batch;
    if (!b) {
      replace(this.el, h('h2', { id: 'results-title' }, 'Batch ', h('code', {}, this.id)),
        this.loading ? h('p', { class: 'muted', id: 'results-loading' }, 'Loading…') : '',
        this.error ? h('p', { class: 'error', role: 'alert', id: 'results-error', 'data-status': String(this.errorStatus ?? '') }, this.error) : '');
      return;
    }
    const list = this.shown();
    const pages = Math.max(1, Math.ceil(list.length / rowsPerPage));
    this.page = Math.min(this.page, pages - 1);
    const slice = list.slice(this.page * rowsPerPage, (this.page + 1) * rowsPerPage);
    const counts = Object.fromEntries(states.map((s) => [s, 0]));
    for (const r of this.results) counts[stateOf(r)] = (counts[stateOf(r)] ?? 0) + 1;
    const final = isFinal(b.state);
    const th = (col, label) => {
      if (!col) return h('th', { scope: 'col' }, label);
      const on = this.sort === col;
      return h('th', { scope: 'col', 'aria-sort': on ? (this.desc ? 'descending' : 'ascending') : 'none' },
        h('button', { type: 'button', class: 'sort', 'data-sort': col, onclick: () => { this.desc = on ? !this.desc : false; this.sort = col; this.page = 0; this.render(); } },
          label, on ? (this.desc ? ' ▼' : ' ▲') : ''));
    };
    const stateSel = h('select', { id: 'results-state', onchange: (e) => { this.state = e.target.value; this.page = 0; this.render(); } },
      h('option', { value: '', selected: !this.state }, `any state (${this.results.length})`),
      states.map((s) => h('option', { value: s, selected: this.state === s }, `${s === 'unchanged' ? 'already set' : s} (${counts[s] ?? 0})`)));
    const textIn = h('input', { type: 'search', id: 'results-node', value: this.text, placeholder: 'part of a node name', autocomplete: 'off',
      oninput: (e) => { this.text = e.target.value; this.page = 0; this.renderKeepFocus('results-node'); } });
    replace(this.el,
      h('header', { class: 'results-head' },
        h('h2', { id: 'results-title' }, b.dry_run ? 'Dry run ' : 'Batch ', h('code', {}, this.id)),
        h('span', { class: `badge state-${b.state}`, id: 'results-batch-state', 'data-state': b.state }, (b.state ?? '').replace('_', ' ')),
        !final ? h('button', { type: 'button', id: 'results-progress', onclick: () => this.onProgress?.(this.id, b) }, 'Show progress') : '',
        h('button', { type: 'button', id: 'results-refresh', onclick: () => this.load() }, 'Refresh')),
      h('p', { class: 'muted' }, [b.owner ? `Owner: ${b.owner}` : '', `Created ${fmtTime(b.created_at)}`, `${this.results.length} of ${b.total ?? this.results.length} node results`,
        !final ? 'still running: results so far' : ''].filter(Boolean).join(' · ')),
      recordedImpact(b, 'results-impact'),
      h('div', { class: 'filters inline' },
        h('div', { class: 'field' }, h('label', { for: 'results-state' }, 'State'), stateSel),
        h('div', { class: 'field' }, h('label', { for: 'results-node' }, 'Node name'), textIn),
        h('button', { type: 'button', id: 'results-csv', onclick: () => download(`${this.id}.csv`, 'text/csv', toCSV(this.shownAll())) }, `Download CSV (all ${this.results.length})`),
        h('button', { type: 'button', id: 'results-json', onclick: () => download(`${this.id}.json`, 'application/json', JSON.stringify({ ...b, results: this.shownAll(), next_page_token: undefined }, null, 2)) }, `Download JSON (all ${this.results.length})`)),
      h('p', { class: 'muted', id: 'results-summary', 'aria-live': 'polite' }, `${list.length} shown${this.state || this.text ? ` of ${this.results.length}` : ''}`),
      h('div', { class: 'table-wrap' }, h('table', { class: 'results-table', id: 'results-table' },
        h('thead', {}, h('tr', {}, th('node', 'Node'), th('state', 'State'), th('', 'Before → after'), th('', 'Reason'), th('attempt', 'Attempt'), th('latency', 'Latency'))),
        h('tbody', {}, slice.length ? slice.map((r) => h('tr', { 'data-node': r.node, 'data-state': stateOf(r) },
          h('td', { 'data-label': 'Node' }, h('code', {}, r.node)),
          h('td', { 'data-label': 'State' }, h('span', { class: `badge state-${r.state}` }, stateOf(r) === 'unchanged' ? 'already set' : (r.state ?? '')),
            r.state === 'succeeded' && r.changed ? h('span', { class: 'muted' }, ' changed') : ''),
          h('td', { class: 'changes', 'data-label': 'Before → after' }, changesOf(r).map((c) => h('div', {}, h('code', {}, c.key), ': ', h('span', { class: 'before' }, c.before), ' → ', h('span', { class: 'after' }, c.after)))),
          h('td', { class: 'reason', 'data-label': 'Reason' }, unexpectedView(r) ?? r.reason ?? '', r.unknown?.length ? h('div', { class: 'muted' }, `unknown before: ${r.unknown.join(', ')}`) : ''),
          h('td', { class: 'num', 'data-label': 'Attempt' }, String(r.attempt ?? '')),
          h('td', { class: 'num', 'data-label': 'Latency' }, r.latency_ms !== undefined ? `${r.latency_ms} ms` : '—')))
          : h('tr', {}, h('td', { colspan: '6', class: 'empty' }, this.results.length ? 'No result matches.' : 'No results yet.'))))),
      h('nav', { class: 'pager inline', 'aria-label': 'Result pages' },
        h('button', { type: 'button', id: 'results-prev', disabled: this.page === 0, onclick: () => { this.page -= 1; this.render(); } }, 'Previous'),
        h('span', { id: 'results-page' }, `Page ${this.page + 1} of ${pages}`),
        h('button', { type: 'button', id: 'results-next', disabled: this.page >= pages - 1, onclick: () => { this.page += 1; this.render(); } }, 'Next')));
  }

  /** shownAll is every result of every page, by node name, whatever the filters (what the downloads hold). */
  shownAll() { return sortResults(this.results, 'node'); }

  renderKeepFocus(id) {
    const el = document.getElementById(id);
    const pos = el?.selectionStart;
    this.render();
    const again = document.getElementById(id);
    again?.focus();
    if (pos !== undefined && again) again.setSelectionRange(pos, pos);
  }
}

/** unexpectedView shows a skipped node's unexpected value: the key, what was expected, what was found. */
function unexpectedView(r) {
  const u = unexpectedOf(r);
  if (!u) return null;
  const v = (x) => (x === null ? h('em', {}, 'absent') : h('code', {}, x));
  return h('div', { class: 'unexpected', 'data-key': u.key },
    'Skipped: ', u.kind, ' ', h('code', {}, u.key), ' was ', h('strong', { class: 'found' }, v(u.found)), ', expected ', h('span', { class: 'expected' }, v(u.expected)),
    h('div', { class: 'muted' }, 'changed by someone else since; left as it is'));
}
