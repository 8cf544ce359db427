// preview.js: the dry-run preview. The API computes, per node, what the
// change would do against the live node (nothing is changed); this dialog
// shows before → after for the touched keys and the counts that will
// change or are already in the target state, then offers to apply.

import { h, replace } from './dom.js';
import { isFinal } from './progress.js';

/** resultsOf finds the per-node results in a batch or submit answer. */
export function resultsOf(data) {
  return data.results ?? data.nodes?.filter?.((n) => typeof n === 'object') ?? [];
}

/**
 * rowsOf lists one node's touched keys as {key, before, after}: from the
 * preview's changes list ([{key, before, after}], null = absent) or from a
 * node result's before/after maps.
 */
export function rowsOf(r) {
  if (Array.isArray(r.changes)) {
    return r.changes.map((c) => ({ key: c.key, before: c.before ?? '(absent)', after: c.after ?? '(absent)' }));
  }
  return diffRows(r.before, r.after);
}

/** flatten turns before/after documents into key → display value. */
export function flatten(doc) {
  const out = {};
  if (!doc || typeof doc !== 'object') return out;
  const labels = doc.labels && typeof doc.labels === 'object' ? doc.labels : null;
  const taints = Array.isArray(doc.taints) ? doc.taints : null;
  if (labels || taints) {
    for (const [k, v] of Object.entries(labels ?? {})) out[`label ${k}`] = v === null ? '(absent)' : String(v);
    for (const t of taints ?? []) out[`taint ${t.key}:${t.effect}`] = t.value ?? '';
    for (const [k, v] of Object.entries(doc)) if (k !== 'labels' && k !== 'taints') out[k] = display(v);
    return out;
  }
  for (const [k, v] of Object.entries(doc)) out[k] = display(v);
  return out;
}

function display(v) {
  if (v === null || v === undefined) return '(absent)';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** diffRows lists the keys whose value differs (or all touched keys). */
export function diffRows(before, after) {
  const b = flatten(before);
  const a = flatten(after);
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].sort();
  return keys.map((k) => ({ key: k, before: b[k] ?? '(absent)', after: a[k] ?? '(absent)' }));
}

/**
 * impactView renders the API's impact object: the summary sentence, the
 * budgets the evictions exceed, the first evicted pods by node (DaemonSet
 * and static pods marked), and the notes of taints that evict nothing.
 */
export function impactView(im, id = 'preview-impact') {
  const pods = (im.nodes ?? []).flatMap((n) => (n.pods ?? []).map((p) => ({ node: n.node, ...p })));
  const shown = pods.slice(0, 100);
  const violated = (im.budgets ?? []).filter((b) => b.violated);
  return h('section', { class: `impact${im.evictions ? ' danger' : ''}`, id, 'aria-label': 'What the change would evict' },
    h('p', { class: im.evictions ? 'error' : 'muted', 'data-impact': 'summary' }, im.summary ?? ''),
    h('dl', { class: 'counts' },
      h('div', { class: 'count failed' }, h('dt', {}, 'Pods evicted'), h('dd', { 'data-count': 'evictions' }, String(im.evictions ?? 0))),
      h('div', { class: 'count' }, h('dt', {}, 'On nodes'), h('dd', { 'data-count': 'eviction-nodes' }, String(im.nodes_with_evictions ?? 0))),
      h('div', { class: 'count failed' }, h('dt', {}, 'Budgets violated'), h('dd', { 'data-count': 'budgets-violated' }, String(im.budgets_violated ?? 0)))),
    violated.length ? h('ul', { class: 'budgets' }, violated.map((b) => h('li', { 'data-budget': `${b.namespace}/${b.name}` },
      h('code', {}, `${b.namespace}/${b.name}`), `: ${b.evictions} evicted, ${b.disruptions_allowed} disruption${b.disruptions_allowed === 1 ? '' : 's'} allowed`))) : '',
    shown.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'impact-table' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Pod'), h('th', { scope: 'col' }, 'Evicted'))),
      h('tbody', {}, shown.map((p) => h('tr', { 'data-pod': `${p.namespace}/${p.name}` },
        h('td', {}, p.node), h('td', {}, h('code', {}, `${p.namespace}/${p.name}`), p.daemonset ? h('span', { class: 'badge' }, 'DaemonSet') : '', p.static ? h('span', { class: 'badge' }, 'static') : ''),
        h('td', {}, p.after_seconds ? `after ${p.after_seconds} s` : 'at once')))))) : '',
    pods.length > shown.length || im.truncated ? h('p', { class: 'muted' }, `First ${shown.length} of ${im.evictions} evicted pods shown.`) : '',
    (im.notes ?? []).map((t) => h('p', { class: 'muted' }, t)));
}

/** PreviewDialog shows a dry-run answer. */
export class PreviewDialog {
  /** @param {object} deps {client, stream, onApply()} */
  constructor(deps) {
    Object.assign(this, deps);
    this.el = h('dialog', { id: 'preview-dialog', class: 'dialog wide', 'aria-labelledby': 'preview-title' });
    this.el.addEventListener('close', () => this.unsub?.());
    document.body.append(this.el);
  }

  /** show opens the dialog for a dry-run submit answer {status, data}. */
  async show(answer) {
    this.unsub?.();
    // A dry run may carry the API's in-process preview (first page) inline.
    const d = answer.data.preview ? { ...answer.data, ...answer.data.preview } : answer.data;
    const id = d.batch_id ?? d.id;
    if (answer.status === 202 && !resultsOf(d).length) {
      this.render({ waiting: true, id, total: d.total });
      if (!this.el.open) this.el.showModal();
      await new Promise((resolve) => {
        this.unsub = this.stream.subscribe(id, (m) => {
          this.render({ waiting: true, id, total: m.total, current: m.current });
          if (isFinal(m.state)) resolve();
        });
        this.client.batch(id).then((b) => { if (isFinal(b.state)) resolve(); }).catch(() => {});
      });
      this.unsub?.();
      this.render({ data: await this.client.batch(id, { page_size: '1000' }), id });
    } else {
      this.render({ data: d, id });
      if (!this.el.open) this.el.showModal();
    }
  }

  render(s) {
    const close = h('button', { type: 'button', class: 'icon close', 'aria-label': 'Close preview', onclick: () => this.el.close() }, '×');
    if (s.waiting) {
      replace(this.el, h('header', { class: 'dialog-head' }, h('h2', { id: 'preview-title' }, 'Preview'), close),
        h('p', { 'aria-live': 'polite' }, `Computing the dry run on ${s.total ?? '…'} nodes… ${s.current ?? 0} done`));
      return;
    }
    const d = s.data;
    const results = resultsOf(d);
    const changed = results.filter((r) => r.changed === true);
    const failed = results.filter((r) => r.state === 'failed' || r.state === 'skipped' || r.skip_reason);
    // Counts come from the API (GET /v1/batches/{id}: succeeded includes unchanged).
    const c = d.counts;
    const wouldChange = d.would_change ?? (c ? c.succeeded - c.unchanged : changed.length);
    const unchanged = d.already_in_target ?? (c ? c.unchanged : results.length - changed.length - failed.length);
    const wouldFail = d.would_change !== undefined ? (d.skipped ?? 0) : (c ? c.failed + c.skipped : failed.length);
    const checks = d.server_dry_run ?? [];
    const total = d.total ?? results.length;
    const shown = results.slice(0, 500);
    replace(this.el,
      h('header', { class: 'dialog-head' }, h('h2', { id: 'preview-title' }, 'Preview (dry run — nothing changed)'), close),
      d.impact && (d.impact.no_execute || d.impact.notes?.length) ? impactView(d.impact) : '',
      d.impact_error ? h('p', { class: 'muted', id: 'preview-impact-error' }, `What it would evict is unknown: ${d.impact_error}`) : '',
      h('dl', { class: 'counts', id: 'preview-counts' },
        h('div', { class: 'count succeeded' }, h('dt', {}, 'Will change'), h('dd', { 'data-count': 'would-change' }, String(wouldChange))),
        h('div', { class: 'count unchanged' }, h('dt', {}, 'Already set'), h('dd', { 'data-count': 'unchanged' }, String(unchanged))),
        wouldFail ? h('div', { class: 'count failed' }, h('dt', {}, 'Would be skipped or fail'), h('dd', { 'data-count': 'failed' }, String(wouldFail))) : '',
        h('div', { class: 'count' }, h('dt', {}, 'Nodes'), h('dd', { 'data-count': 'total' }, String(total))),
        d.concurrency ? h('div', { class: 'count' }, h('dt', {}, 'Concurrency'), h('dd', { 'data-count': 'concurrency' }, String(d.concurrency))) : ''),
      results.length ? h('div', { class: 'table-wrap preview-wrap' }, h('table', { class: 'preview-table', id: 'preview-table' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, ''), h('th', { scope: 'col' }, 'After'))),
        h('tbody', {}, shown.flatMap((r) => {
          const rows = rowsOf(r);
          if (r.state === 'failed' || r.state === 'skipped' || r.skip_reason) {
            return [h('tr', { class: 'failed' }, h('th', { scope: 'row' }, r.node), h('td', { colspan: '4' }, `${r.state ?? 'skipped'}: ${r.reason ?? r.skip_reason ?? ''}`))];
          }
          if (!rows.length || r.changed === false) return [h('tr', { class: 'same' }, h('th', { scope: 'row' }, r.node), h('td', { colspan: '4', class: 'muted' }, 'already in target state'))];
          return rows.map((x, j) => h('tr', { class: x.before === x.after ? 'same' : 'diff' },
            j === 0 ? h('th', { scope: 'row', rowspan: String(rows.length) }, r.node) : '',
            h('td', {}, h('code', {}, x.key)), h('td', { class: 'before' }, x.before), h('td', { 'aria-hidden': 'true' }, '→'), h('td', { class: 'after' }, x.after)));
        })))) : h('p', { class: 'muted' }, 'The API returned no per-node results for this dry run.'),
      checks.length ? h('p', { class: checks.every((x) => x.ok) ? 'muted' : 'error', id: 'preview-server-check' },
        `Server-side dry run on ${checks.length} node${checks.length === 1 ? '' : 's'}: `,
        checks.every((x) => x.ok) ? 'the API server accepts the change.' : checks.filter((x) => !x.ok).map((x) => `${x.node}: ${x.error}`).join('; ')) : '',
      total > shown.length ? h("p", { class: "muted" }, `First ${shown.length} of ${total} nodes shown.`) : '',
      h('footer', { class: 'dialog-foot' },
        h('button', { type: 'button', onclick: () => this.el.close() }, 'Back to editing'),
        h('button', { type: 'button', class: 'primary', id: 'btn-apply-preview', onclick: () => { this.el.close(); this.onApply?.(); } }, 'Apply for real')));
  }
}
