// progress.js: the progress dialog. It watches one batch over the shared
// Stream and shows the percent bar, done/total, counts by state, nodes in
// flight, rate and ETA, failed nodes with reasons, and the controls the
// API supports (config.features). Closing it only stops watching: the
// batch runs on, and opening it again from History resumes the live view.

import { h, replace, fmtDuration, fmtTime } from './dom.js';
import { impactView } from './preview.js';

const finalStates = new Set(['succeeded', 'partially_failed', 'failed', 'cancelled']);

/** isFinal reports whether a batch state is terminal. */
export function isFinal(state) { return finalStates.has(state); }

/**
 * recordedImpact shows what a NoExecute batch was predicted at submit to
 * evict, as the batch records it (GET /v1/batches/{id}: impact, or
 * impact_error), wherever the batch is opened; '' for any other batch.
 * id names the section (progress-impact, results-impact).
 */
export function recordedImpact(b, id) {
  if (b?.impact_error) {
    return h('div', { class: 'impact-recorded', id }, h('h3', {}, 'Evictions'),
      h('p', { class: 'muted', 'data-impact': 'error' }, `What this NoExecute taint would evict could not be computed when the batch was started: ${b.impact_error}`));
  }
  const im = b?.impact;
  if (!im?.no_execute) return '';
  const extra = [
    im.daemonset_pods ? `${im.daemonset_pods} DaemonSet pod${im.daemonset_pods === 1 ? '' : 's'} (not rescheduled while the taint stays)` : '',
    im.static_pods ? `${im.static_pods} static pod${im.static_pods === 1 ? '' : 's'}` : '',
    im.budgets_truncated ? `first ${im.budgets?.length ?? 0} of ${im.budgets_violated} violated budgets listed` : '',
  ].filter(Boolean);
  return h('div', { class: 'impact-recorded' }, h('h3', {}, 'Evictions'),
    h('p', { class: 'muted' }, `Predicted when the batch was started${im.computed_at ? ` (${fmtTime(im.computed_at)})` : ''}: taint eviction does not wait for disruption budgets.`),
    impactView(im, id),
    extra.length ? h('p', { class: 'muted', 'data-impact': 'extra' }, extra.join(' · ')) : '');
}

/** fromBatch turns a GET /v1/batches/{id} answer into a progress message. */
export function fromBatch(b) {
  const counts = { succeeded: 0, failed: 0, skipped: 0, cancelled: 0, unchanged: 0, ...(b.counts ?? {}) };
  // history rows carry done (live counts live in the lanes until the end).
  const done = b.done ?? counts.succeeded + counts.failed + counts.skipped + counts.cancelled;
  const total = b.total ?? 0;
  const failed = (b.failed_nodes ?? b.failures ?? (b.results ?? []).filter((r) => r.state === 'failed').map((r) => ({ node: r.node, reason: r.reason })));
  return {
    task_id: b.batch_id ?? b.id,
    type: b.state === 'failed' ? 'error' : (isFinal(b.state) ? 'complete' : 'progress'),
    action: b.action,
    current: Math.min(done, total),
    total,
    progress: total ? (Math.min(done, total) * 100) / total : 0,
    state: b.state,
    counts,
    failed_nodes: failed,
    timing: b.timing,
    owner: b.owner,
    message: b.message ?? b.reason ?? '',
    created_at: b.created_at,
    started_at: b.started_at,
    finished_at: b.finished_at,
    changes: b.changes,
    concurrency: b.concurrency,
    dry_run: b.dry_run,
    impact: b.impact,
    impact_error: b.impact_error,
  };
}

/** ProgressDialog shows one batch at a time. */
export class ProgressDialog {
  /**
   * @param {object} deps {client, stream, features, onFinal(batchID), onOpenBatch(batchID), announce(text)}
   */
  constructor(deps) {
    Object.assign(this, deps);
    this.el = h('dialog', { id: 'progress-dialog', class: 'dialog', 'aria-labelledby': 'progress-title' });
    this.el.addEventListener('close', () => this.stopWatching());
    document.body.append(this.el);
    this.msg = null;
    this.unsub = null;
    this.finalSeen = false;
  }

  /** open shows batch id, live. initial may be the submit answer or a history row. */
  async open(id, initial = null) {
    this.stopWatching();
    this.id = id;
    this.msg = initial ? { task_id: id, ...initial } : { task_id: id, state: 'pending', current: 0, total: 0, counts: {} };
    this.finalSeen = false;
    this.busy = '';
    this.error = '';
    this.render();
    if (!this.el.open) this.el.showModal();
    this.unsub = this.stream.subscribe(id, (m) => this.onMessage(m));
    this.statusUnsub = this.stream.onStatus((s) => { this.connStatus = s; this.renderStatus(); });
    // Without a live stream (relay unreachable, reconnecting) fall back to
    // reading the batch every 2 s until the stream is back or the batch ends.
    this.poller = setInterval(() => {
      if (isFinal(this.msg?.state) || this.connStatus === 'live') return;
      this.client.batch(id).then((b) => this.onMessage({ ...fromBatch(b), fromGet: true })).catch(() => {});
    }, 2000);
    try {
      const b = await this.client.batch(id);
      // The stream may have moved on while GET was in flight: keep the newer.
      if (this.id === id && (!this.msg.current || (fromBatch(b).current >= this.msg.current) || isFinal(b.state))) {
        this.onMessage({ ...fromBatch(b), fromGet: true });
      }
    } catch (e) {
      if (this.id === id && !this.msg.state) { this.error = e.message; this.render(); }
    }
  }

  stopWatching() {
    clearInterval(this.poller);
    this.unsub?.();
    this.statusUnsub?.();
    this.unsub = null;
    this.statusUnsub = null;
  }

  onMessage(m) {
    if (m.task_id !== this.id) return;
    if (m.type === 'error' && !m.state) {
      // A refused subscription or a relay-side problem, not the batch's end.
      this.error = m.message;
      this.render();
      return;
    }
    const prev = this.msg ?? {};
    // current never goes backwards within an attempt.
    if (!isFinal(m.state) && (m.attempt ?? 0) === (prev.attempt ?? 0) && (m.current ?? 0) < (prev.current ?? 0)) return;
    this.msg = { ...prev, ...m, counts: { ...(prev.counts ?? {}), ...(m.counts ?? {}) } };
    if (!m.fromGet) this.msg.lastLive = Date.now();
    this.render();
    this.onUpdate?.(this.id, this.msg);
    if (isFinal(this.msg.state) && !this.finalSeen) {
      this.finalSeen = true;
      this.announce?.(`Batch ${this.id} ${this.msg.state.replace('_', ' ')}`);
      this.onFinal?.(this.id);
      if (!m.fromGet && !(this.msg.failed_nodes?.length) && (this.msg.counts?.failed ?? 0) > 0) {
        this.client.batch(this.id).then((b) => this.onMessage({ ...fromBatch(b), fromGet: true })).catch(() => {});
      }
    }
  }

  has(f) { return this.features.includes(f); }

  async control(verb, body = {}) {
    this.busy = verb;
    this.error = '';
    this.render();
    try {
      const r = await this.client.control(this.id, verb, body);
      this.busy = '';
      const next = r.batch_id ?? r.id;
      if (verb === 'revert' && next && next !== this.id) {
        this.onOpenBatch?.(next, r);
        return;
      }
      if (verb === 'retry') {
        this.finalSeen = false;
        this.msg = { ...this.msg, state: r.state ?? 'running', attempt: r.attempt ?? (this.msg.attempt ?? 1) + 1 };
      }
      if (verb === 'cancel') this.msg = { ...this.msg, cancelRequested: true };
      this.render();
    } catch (e) {
      this.busy = '';
      this.error = `${verb}: ${e.message}`;
      this.render();
    }
  }

  renderStatus() {
    const s = this.el.querySelector('.conn');
    if (!s) return;
    const final = isFinal(this.msg?.state);
    s.textContent = final ? 'finished' : ({ live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', idle: '' }[this.connStatus] ?? '');
    s.dataset.status = final ? 'final' : this.connStatus;
  }

  /** renderImpact shows a NoExecute batch's evictions as the batch recorded them at submit. */
  renderImpact() {
    const m = this.msg ?? {};
    const key = JSON.stringify([this.id, m.impact ?? null, m.impact_error ?? '']);
    if (key === this.impactShown) return;
    this.impactShown = key;
    replace(this.parts.impact, recordedImpact(m, 'progress-impact'));
  }

  /** skeleton builds the dialog's parts once per open; render updates them in place, so focus and clicks survive a stream of messages. */
  skeleton() {
    const p = {};
    p.title = h('h2', { id: 'progress-title' });
    p.state = h('span', { class: 'badge', id: 'batch-state' });
    p.owner = h('p', { class: 'muted' });
    p.link = h('a', { id: 'progress-results', onclick: () => this.el.close() }, 'Every node\'s result');
    p.fill = h('div', { class: 'bar-fill' });
    p.bar = h('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Batch progress', 'aria-valuemin': '0', 'aria-valuemax': '100', id: 'progress-bar' }, p.fill);
    p.percent = h('strong', { id: 'progress-percent' });
    p.done = h('span', { id: 'progress-done' });
    p.counts = {};
    const item = (name, cls) => {
      p.counts[cls] = h('dd', { 'data-count': cls });
      return h('div', { class: `count ${cls}` }, h('dt', {}, name), p.counts[cls]);
    };
    p.stats = h('div', { class: 'stats' });
    p.inflight = h('div', { class: 'inflight' });
    p.message = h('p', { class: 'message', id: 'progress-message' });
    p.failures = h('div', { class: 'failures-wrap' });
    p.impact = h('div', { class: 'impact-wrap', id: 'progress-evictions' });
    p.error = h('p', { class: 'error', role: 'alert' });
    p.foot = h('footer', { class: 'dialog-foot' });
    replace(this.el,
      h('header', { class: 'dialog-head' }, p.title, p.state, h('span', { class: 'conn', 'aria-live': 'off' }),
        h('button', { type: 'button', class: 'icon close', 'aria-label': 'Close dialog', onclick: () => this.el.close() }, '×')),
      p.owner, h('p', {}, p.link), p.bar,
      h('p', { class: 'bar-text', 'aria-live': 'polite', 'aria-atomic': 'true' }, p.percent, ' · ', p.done, ' nodes done'),
      h('dl', { class: 'counts' }, item('Succeeded', 'succeeded'), item('Already set', 'unchanged'), item('Failed', 'failed'),
        item('Skipped', 'skipped'), item('Cancelled', 'cancelled'), item('Pending', 'pending')),
      p.stats, p.inflight, p.message, p.failures, p.impact, p.error, p.foot);
    this.parts = p;
    this.impactShown = '';
    this.footKey = '';
    this.failKey = '';
  }

  render() {
    if (!this.parts || !this.el.contains(this.parts.title)) this.skeleton();
    const p = this.parts;
    const m = this.msg ?? {};
    const c = { succeeded: 0, failed: 0, skipped: 0, cancelled: 0, unchanged: 0, ...(m.counts ?? {}) };
    const total = m.total ?? 0;
    const done = m.current ?? (c.succeeded + c.failed + c.skipped + c.cancelled);
    const final = isFinal(m.state);
    const pct = total ? (done * 100) / total : (final ? 100 : 0);
    const inFlight = Object.values(m.in_flight ?? {}).filter(Boolean);
    const state = m.state || 'pending';

    replace(p.title, m.dry_run ? 'Dry run ' : 'Batch ', h('code', {}, this.id));
    p.state.textContent = state.replace('_', ' ');
    p.state.className = `badge state-${state}`;
    p.state.dataset.state = state;
    p.owner.textContent = m.owner ? `Owner: ${m.owner}` : '';
    p.owner.hidden = !m.owner;
    p.link.href = `#/batches/${encodeURIComponent(this.id)}`;
    p.fill.className = `bar-fill state-${state}`;
    p.fill.style.width = `${pct.toFixed(2)}%`;
    p.bar.setAttribute('aria-valuenow', pct.toFixed(1));
    p.percent.textContent = `${pct.toFixed(pct === 100 || pct === 0 ? 0 : 1)} %`;
    p.done.textContent = `${done} / ${total}`;
    const shown = { succeeded: c.succeeded - c.unchanged, unchanged: c.unchanged, failed: c.failed, skipped: c.skipped, cancelled: c.cancelled, pending: Math.max(0, total - done) };
    for (const [k, v] of Object.entries(shown)) p.counts[k].textContent = String(v);

    const timing = m.timing;
    const rate = m.rate || timing?.nodes_per_second;
    replace(p.stats,
      h('span', {}, 'Rate: ', h('strong', {}, rate ? `${rate.toFixed(1)} nodes/s` : '—')),
      !final ? h('span', {}, 'ETA: ', h('strong', {}, m.eta_seconds ? fmtDuration(m.eta_seconds) : '—')) : '',
      timing ? h('span', {}, 'Latency p50/p95/max: ', h('strong', {}, `${Math.round(timing.p50_ms ?? 0)} / ${Math.round(timing.p95_ms ?? 0)} / ${Math.round(timing.max_ms ?? 0)} ms`)) : '',
      timing?.retries ? h('span', {}, 'Retries: ', h('strong', {}, String(timing.retries))) : '',
      m.attempt > 1 ? h('span', {}, 'Attempt: ', h('strong', {}, String(m.attempt))) : '',
      m.finished_at ? h('span', {}, 'Finished: ', h('strong', {}, fmtTime(m.finished_at))) : '');
    const flying = inFlight.length ? inFlight : (m.current_node ? [m.current_node] : []);
    replace(p.inflight, !final && flying.length ? [h('h3', {}, `In flight (${flying.length})`),
      h('div', { class: 'chips' }, flying.slice(0, 40).map((n) => h('code', { class: 'chip' }, n)))] : '');
    p.message.textContent = m.message ?? '';
    p.message.hidden = !m.message;
    const failKey = JSON.stringify([c.failed, m.failed_nodes ?? []]);
    if (failKey !== this.failKey) {
      this.failKey = failKey;
      replace(p.failures, m.failed_nodes?.length ? h('details', { class: 'failures', open: true },
        h('summary', {}, `Failed nodes (${c.failed}${m.failed_nodes.length < c.failed ? `, first ${m.failed_nodes.length} shown` : ''})`),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Reason'))),
          h('tbody', {}, m.failed_nodes.map((f) => h('tr', {}, h('td', {}, h('code', {}, f.node)), h('td', {}, f.reason)))))) : '');
    }
    p.error.textContent = this.error ?? '';
    p.error.hidden = !this.error;
    this.renderImpact();

    // Buttons are rebuilt only when the set changes, so a click or focus is never lost.
    const want = [];
    if (!final && this.has('cancel')) want.push(m.cancelRequested ? 'cancelling' : 'cancel');
    if (final && this.has('retry') && c.failed > 0) want.push('retry');
    if (final && this.has('retry') && c.cancelled > 0) want.push('retry-cancelled');
    if (final && this.has('revert') && c.succeeded - c.unchanged > 0 && !m.dry_run) want.push('revert');
    want.push(final ? 'close' : 'close-running');
    const key = want.join(',') + (this.busy ? `:${this.busy}` : '');
    if (key !== this.footKey) {
      const hadFocus = p.foot.contains(document.activeElement) ? document.activeElement.id : '';
      this.footKey = key;
      const btn = {
        cancel: () => h('button', { type: 'button', class: 'danger', id: 'btn-cancel', disabled: !!this.busy, onclick: () => this.control('cancel') }, 'Cancel batch'),
        cancelling: () => h('button', { type: 'button', class: 'danger', id: 'btn-cancel', disabled: true }, 'Cancelling…'),
        retry: () => h('button', { type: 'button', id: 'btn-retry', disabled: !!this.busy, onclick: () => this.control('retry') }, 'Retry failed'),
        'retry-cancelled': () => h('button', { type: 'button', id: 'btn-retry-cancelled', disabled: !!this.busy, onclick: () => this.control('retry', { include_cancelled: true }) },
          c.failed > 0 ? 'Retry failed and cancelled' : 'Run the cancelled nodes'),
        revert: () => h('button', { type: 'button', id: 'btn-revert', disabled: !!this.busy, onclick: () => this.control('revert') }, 'Revert'),
        close: () => h('button', { type: 'button', class: 'primary', id: 'btn-close-progress', onclick: () => this.el.close() }, 'Close'),
        'close-running': () => h('button', { type: 'button', class: 'primary', id: 'btn-close-progress', onclick: () => this.el.close() }, 'Close (batch keeps running)'),
      };
      replace(p.foot, want.map((w) => btn[w]()));
      if (hadFocus) (document.getElementById(hadFocus) ?? p.foot.querySelector('#btn-close-progress'))?.focus();
    }
    this.renderStatus();
  }
}
