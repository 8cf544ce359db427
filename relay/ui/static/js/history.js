// history.js: my batches, newest first (admins may show everyone's), with
// state, counts and timing. A row's id links to its results view
// (#/batches/{id}); its "progress" button reopens the progress dialog,
// which resumes the live view of a running batch.

import { h, replace, fmtTime, fmtDuration } from './dom.js';
import { isFinal } from './progress.js';

/** summarizeChanges renders a batch's changes compactly. */
export function summarizeChanges(ch) {
  if (!ch) return '';
  if (Array.isArray(ch)) return ch.join(' ');
  const parts = [];
  for (const k of ['labels', 'taints']) {
    const v = ch[k];
    if (Array.isArray(v)) parts.push(...v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))));
  }
  return parts.length ? parts.join(' ') : JSON.stringify(ch);
}

/** HistoryView lists batches. */
export class HistoryView {
  /** @param {object} deps {client, session, onOpen(id, row)} */
  constructor(deps) {
    Object.assign(this, deps);
    this.rows = [];
    this.next = '';
    this.state = '';
    this.everyone = false;
    this.error = '';
    this.el = h('section', { class: 'panel history', 'aria-labelledby': 'history-title' });
  }

  params(token) {
    const p = { limit: '50' };
    if (this.state) p.state = this.state;
    if (this.everyone) p.all = 'true';
    if (token) p.page_token = token;
    return p;
  }

  async load(more = false) {
    this.error = '';
    try {
      const r = await this.client.history(this.params(more ? this.next : ''));
      const list = r.batches ?? r.items ?? [];
      this.rows = more ? [...this.rows, ...list] : list;
      this.next = r.next_page_token ?? '';
    } catch (e) {
      this.error = `Could not load history: ${e.message}`;
    }
    this.render();
  }

  render() {
    const admin = this.session.isAdmin;
    const stateSel = h('select', { id: 'history-state', onchange: (e) => { this.state = e.target.value; this.load(); } },
      ['', 'running', 'pending', 'succeeded', 'partially_failed', 'failed', 'cancelled'].map((s) => h('option', { value: s, selected: this.state === s }, s ? s.replace('_', ' ') : 'any state')));
    replace(this.el,
      h('h2', { id: 'history-title' }, admin && this.everyone ? 'All batches' : 'My batches'),
      h('div', { class: 'filters inline' },
        h('div', { class: 'field' }, h('label', { for: 'history-state' }, 'State'), stateSel),
        admin ? h('div', { class: 'field check' }, h('input', { type: 'checkbox', id: 'history-everyone', checked: this.everyone, onchange: (e) => { this.everyone = e.target.checked; this.load(); } }),
          h('label', { for: 'history-everyone' }, "Show everyone's batches")) : '',
        h('button', { type: 'button', id: 'history-refresh', onclick: () => this.load() }, 'Refresh')),
      this.error ? h('p', { class: 'error', role: 'alert' }, this.error) : '',
      h('div', { class: 'table-wrap' }, h('table', { class: 'history-table', id: 'history-table' },
        h('thead', {}, h('tr', {},
          ['Created', 'Batch', ...(admin ? ['Owner'] : []), 'Changes', 'Nodes', 'State', 'Succeeded', 'Failed', 'Duration'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, this.rows.length ? this.rows.map((b) => {
          const id = b.batch_id ?? b.id;
          const c = b.counts ?? {};
          const dur = b.started_at && b.finished_at ? (new Date(b.finished_at) - new Date(b.started_at)) / 1000 : null;
          return h('tr', { 'data-batch': id, 'data-created': b.created_at ?? '' },
            h('td', {}, fmtTime(b.created_at)),
            h('td', {}, h('a', { class: 'batch-link', href: `#/batches/${encodeURIComponent(id)}`, 'aria-label': `Results of batch ${id}` }, h('code', {}, id)),
              b.dry_run ? h('span', { class: 'muted' }, ' (dry run)') : '',
              ' ', h('button', { type: 'button', class: 'link', onclick: () => this.onOpen(id, b), 'aria-label': `Progress of batch ${id}` }, 'progress')),
            admin ? h('td', {}, b.owner ?? '') : '',
            h('td', { class: 'changes' }, h('code', {}, summarizeChanges(b.changes))),
            h('td', { class: 'num' }, b.done !== undefined && !isFinal(b.state) ? `${b.done} / ${b.total}` : String(b.total ?? '')),
            h('td', {}, h('span', { class: `badge state-${b.state}` }, (b.state ?? '').replace('_', ' '))),
            h('td', { class: 'num' }, String(c.succeeded ?? 0)),
            h('td', { class: 'num' }, String(c.failed ?? 0)),
            h('td', { class: 'num' }, dur !== null ? fmtDuration(dur) : (b.timing?.nodes_per_second ? `${b.timing.nodes_per_second.toFixed(1)}/s` : '—')));
        }) : h('tr', {}, h('td', { colspan: admin ? '9' : '8', class: 'empty' }, 'No batches yet.'))))),
      this.next ? h('button', { type: 'button', id: 'history-more', onclick: () => this.load(true) }, 'Load more') : '');
  }
}
