// nodes.js: the node table. Filter by label selector (resolved by the
// server) and by free text (in the page); a chosen label key as a column
// (like kubectl get nodes -L key); sort by name, status or that column;
// select one, many, or all that match. Rows are paged so a 10,000-node cluster stays responsive.

import { h, replace, labelChip, taintChip, uid } from './dom.js';

const pageSize = 50;
const maxChips = 6;

/** isSystemKey reports keys Kubernetes itself manages, shown after the user's own. */
export function isSystemKey(k) {
  const d = k.includes('/') ? k.slice(0, k.indexOf('/')) : '';
  return d === 'kubernetes.io' || d.endsWith('.kubernetes.io') || d === 'k8s.io' || d.endsWith('.k8s.io');
}

/** matchesText reports whether node n matches every word of the free-text filter. */
export function matchesText(n, text) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const hay = [n.name, ...Object.entries(n.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(n.taints ?? []).map((t) => `${t.key}=${t.value ?? ''}:${t.effect}`)].join(' ').toLowerCase();
  return words.every((w) => hay.includes(w));
}

/** readyRank orders node status for sorting: Ready, then cordoned, NotReady, unknown. */
function readyRank(n) {
  return (n.ready === 'True' ? 0 : n.ready === 'False' ? 2 : 3) + (n.unschedulable ? 1 : 0);
}

/**
 * sortNodes sorts a copy by 'name', 'status' or 'label' (the value of
 * label key labelKey, nodes without it last), ties by name.
 */
export function sortNodes(nodes, column = 'name', descending = false, labelKey = '') {
  const byName = (a, b) => a.name.localeCompare(b.name);
  const by = {
    name: byName,
    status: (a, b) => readyRank(a) - readyRank(b),
    label: (a, b) => {
      const va = a.labels?.[labelKey];
      const vb = b.labels?.[labelKey];
      if (va === undefined || vb === undefined) return (va === undefined) - (vb === undefined);
      return va.localeCompare(vb, undefined, { numeric: true });
    },
  }[column] ?? byName;
  const dir = descending ? -1 : 1;
  return [...nodes].sort((a, b) => dir * by(a, b) || byName(a, b));
}

/** NodesView renders the filter bar, the table and the selection. */
export class NodesView {
  /** @param {object} deps {client, onSelection(target), announce(text)} */
  constructor(deps) {
    Object.assign(this, deps);
    this.nodes = [];
    this.selector = '';
    this.appliedSelector = '';
    this.text = '';
    this.selected = new Set();
    this.allMatching = false;
    this.page = 0;
    this.loading = false;
    this.error = '';
    this.fieldError = '';
    this.expanded = new Set();
    this.labelKey = ''; // the label shown as a column, like kubectl get nodes -L key
    this.sort = 'name';
    this.desc = false;
    this.el = h('section', { class: 'panel nodes', 'aria-labelledby': 'nodes-title' });
    this.build();
  }

  build() {
    const selId = uid('sel');
    const txtId = uid('txt');
    const colId = uid('col');
    this.colInput = h('input', { id: colId, name: 'label-column', type: 'text', placeholder: 'label key, like kubectl -L', autocomplete: 'off', spellcheck: 'false',
      oninput: () => {
        this.labelKey = this.colInput.value.trim();
        if (!this.labelKey && this.sort === 'label') this.sort = 'name';
        this.renderTable();
      } });
    this.selInput = h('input', { id: selId, name: 'selector', type: 'text', placeholder: 'e.g. pool=gpu,zone!=c', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${selId}-err` });
    this.selErr = h('p', { id: `${selId}-err`, class: 'field-error', 'aria-live': 'polite' });
    this.txtInput = h('input', { id: txtId, name: 'filter', type: 'search', placeholder: 'name, label or taint text', autocomplete: 'off',
      oninput: () => { this.text = this.txtInput.value; this.page = 0; this.allMatching = false; this.renderTable(); this.emit(); } });
    this.summary = h('p', { class: 'summary', id: 'nodes-summary', 'aria-live': 'polite' });
    this.table = h('div', { class: 'table-wrap' });
    this.pager = h('nav', { class: 'pager', 'aria-label': 'Node table pages' });
    replace(this.el,
      h('h2', { id: 'nodes-title' }, 'Nodes'),
      h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); this.applySelector(); } },
        h('div', { class: 'field' }, h('label', { for: selId }, 'Label selector'),
          h('div', { class: 'inline' }, this.selInput, h('button', { type: 'submit', id: 'apply-selector' }, 'Apply')), this.selErr),
        h('div', { class: 'field' }, h('label', { for: txtId }, 'Filter text'), this.txtInput),
        h('div', { class: 'field' }, h('label', { for: colId }, 'Label column'), this.colInput)),
      h('div', { class: 'selection-bar' }, this.summary,
        h('div', { class: 'inline' },
          h('button', { type: 'button', id: 'select-all', onclick: () => this.selectAllMatching() }, 'Select all matching'),
          h('button', { type: 'button', id: 'clear-selection', onclick: () => this.clearSelection() }, 'Clear selection'),
          h('button', { type: 'button', id: 'refresh-nodes', onclick: () => this.load(), 'aria-label': 'Reload nodes' }, 'Reload'))),
      this.table, this.pager);
  }

  get filtered() { return sortNodes(this.nodes.filter((n) => matchesText(n, this.text)), this.sort, this.desc, this.labelKey); }

  /** target describes what a batch would run on, for the editor. */
  target() {
    if (this.allMatching && !this.text.trim()) {
      return this.appliedSelector
        ? { kind: 'selector', selector: this.appliedSelector, count: this.nodes.length, names: this.nodes.map((n) => n.name) }
        : { kind: 'all', count: this.nodes.length, names: this.nodes.map((n) => n.name) };
    }
    const names = this.nodes.filter((n) => this.selected.has(n.name)).map((n) => n.name);
    return { kind: 'nodes', nodes: names, count: names.length, names };
  }

  nodeByName(name) { return this.nodes.find((n) => n.name === name); }

  emit() { this.onSelection?.(this.target()); }

  async applySelector() {
    this.selector = this.selInput.value.trim();
    await this.load();
  }

  async load() {
    this.loading = true;
    this.error = '';
    this.selErr.textContent = '';
    this.selInput.removeAttribute('aria-invalid');
    this.renderTable();
    try {
      const r = await this.client.nodes(this.selector);
      this.nodes = r.nodes ?? [];
      this.appliedSelector = this.selector;
      const names = new Set(this.nodes.map((n) => n.name));
      for (const s of [...this.selected]) if (!names.has(s)) this.selected.delete(s);
      if (this.allMatching) this.selected = new Set(names);
    } catch (e) {
      const f = e.fields?.find((x) => x.field === 'selector');
      if (f || e.status === 400 || e.status === 422) {
        this.selErr.textContent = f ? `${f.reason}` : e.message;
        this.selInput.setAttribute('aria-invalid', 'true');
      } else {
        this.error = `Could not load nodes: ${e.message}`;
      }
    }
    this.loading = false;
    this.page = Math.min(this.page, Math.max(0, Math.ceil(this.filtered.length / pageSize) - 1));
    this.renderTable();
    this.emit();
  }

  selectAllMatching() {
    for (const n of this.filtered) this.selected.add(n.name);
    this.allMatching = true;
    this.renderTable();
    this.emit();
    this.announce?.(`${this.filtered.length} nodes selected`);
  }

  clearSelection() {
    this.selected.clear();
    this.allMatching = false;
    this.renderTable();
    this.emit();
  }

  toggle(name, on) {
    if (on) this.selected.add(name); else this.selected.delete(name);
    this.allMatching = false;
    this.renderSummary();
    this.emit();
  }

  togglePage(rows, on) {
    for (const n of rows) if (on) this.selected.add(n.name); else this.selected.delete(n.name);
    this.allMatching = false;
    this.renderTable();
    this.emit();
  }

  renderSummary() {
    const f = this.filtered.length;
    const sel = this.target().count;
    const scope = this.appliedSelector ? ` matching ${this.appliedSelector}` : '';
    this.summary.textContent = this.loading ? 'Loading nodes…'
      : `${f} of ${this.nodes.length} nodes${scope}${this.text ? ' and the text filter' : ''} · ${sel} selected${this.allMatching && !this.text.trim() ? ' (all matching)' : ''}`;
  }

  chips(n) {
    const entries = Object.entries(n.labels ?? {}).sort(([a], [b]) => (isSystemKey(a) - isSystemKey(b)) || a.localeCompare(b));
    const open = this.expanded.has(n.name);
    const shown = open ? entries : entries.slice(0, maxChips);
    const more = entries.length - shown.length;
    return h('div', { class: 'chips' }, shown.map(([k, v]) => labelChip(k, v, isSystemKey(k) ? 'system' : '')),
      more > 0 || open ? h('button', { type: 'button', class: 'link', 'aria-expanded': String(open),
        onclick: () => { if (open) this.expanded.delete(n.name); else this.expanded.add(n.name); this.renderTable(); } },
      open ? 'fewer' : `+${more} more`) : '');
  }

  renderTable() {
    this.renderSummary();
    if (this.error) {
      replace(this.table, h('p', { class: 'error', role: 'alert' }, this.error));
      replace(this.pager);
      return;
    }
    const rows = this.filtered;
    const pages = Math.max(1, Math.ceil(rows.length / pageSize));
    this.page = Math.min(this.page, pages - 1);
    const pageRows = rows.slice(this.page * pageSize, (this.page + 1) * pageSize);
    const allOnPage = pageRows.length > 0 && pageRows.every((n) => this.selected.has(n.name));
    const someOnPage = pageRows.some((n) => this.selected.has(n.name));
    const key = this.labelKey;
    const th = (col, label) => {
      const on = this.sort === col;
      return h('th', { scope: 'col', 'aria-sort': on ? (this.desc ? 'descending' : 'ascending') : 'none' },
        h('button', { type: 'button', class: 'sort', 'data-sort': col, onclick: () => { this.desc = on ? !this.desc : false; this.sort = col; this.page = 0; this.renderTable(); } },
          label, on ? (this.desc ? ' ▼' : ' ▲') : ''));
    };
    replace(this.table, h('table', { class: 'node-table', id: 'node-table' },
      h('caption', { class: 'sr-only' }, 'Nodes with labels and taints'),
      h('colgroup', {}, ['check', 'name', 'ready', ...(key ? ['labelcol'] : []), 'labels', 'taints'].map((c) => h('col', { class: `c-${c}` }))),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'check' }, h('input', { type: 'checkbox', 'aria-label': 'Select every node on this page', checked: allOnPage, indeterminate: !allOnPage && someOnPage,
          onchange: (e) => this.togglePage(pageRows, e.target.checked) })),
        th('name', 'Name'), th('status', 'Ready'), key ? th('label', key) : '', h('th', { scope: 'col' }, 'Labels'), h('th', { scope: 'col' }, 'Taints'))),
      h('tbody', {}, pageRows.length ? pageRows.map((n) => h('tr', { 'data-node': n.name, class: this.selected.has(n.name) ? 'selected' : '' },
        h('td', { class: 'check' }, h('input', { type: 'checkbox', 'aria-label': `Select ${n.name}`, checked: this.selected.has(n.name),
          onchange: (e) => { e.target.closest('tr').classList.toggle('selected', e.target.checked); this.toggle(n.name, e.target.checked); } })),
        h('th', { scope: 'row', class: 'name' }, n.name),
        h('td', {}, h('span', { class: `ready ready-${n.ready}` }, n.ready === 'True' ? 'Ready' : (n.ready === 'False' ? 'NotReady' : n.ready)), n.unschedulable ? h('span', { class: 'muted' }, ' · cordoned') : ''),
        key ? h('td', { class: 'label-col', 'data-key': key }, n.labels?.[key] ?? '') : '',
        h('td', { class: 'labels' }, this.chips(n)),
        h('td', { class: 'taints' }, h('div', { class: 'chips' }, (n.taints ?? []).map((t) => taintChip(t))))))
        : h('tr', {}, h('td', { colspan: key ? '6' : '5', class: 'empty' }, this.loading ? 'Loading…' : 'No nodes match.')))));
    replace(this.pager, pages > 1 ? [
      h('button', { type: 'button', disabled: this.page === 0, onclick: () => { this.page -= 1; this.renderTable(); }, 'aria-label': 'Previous page' }, '‹ Prev'),
      h('span', {}, `Page ${this.page + 1} of ${pages}`),
      h('button', { type: 'button', disabled: this.page >= pages - 1, onclick: () => { this.page += 1; this.renderTable(); }, 'aria-label': 'Next page' }, 'Next ›'),
    ] : []);
  }
}
