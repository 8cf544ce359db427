// editor.js: the change editor. Label and taint rows (key, value, effect
// picker), a kubectl-syntax box that fills rows, inline field errors
// computed with validate.js before anything is sent, the API's own 422
// field errors after, a dry-run preview, and submit.

import { h, replace, uid } from './dom.js';
import { impactView } from './preview.js';
import { taintEffects, validateChanges, parseSpecs, toRequest, toKubectl, defaultConcurrency } from './validate.js';

const blank = (kind) => ({ kind, op: 'set', key: '', value: '', effect: kind === 'taint' ? 'NoSchedule' : '' });

/** Editor edits the pending changes and submits them for a target. */
export class Editor {
  /** @param {object} deps {client, config, onSubmitted(answer, body), onPreview(body), announce} */
  constructor(deps) {
    Object.assign(this, deps);
    this.changes = [blank('label')];
    this.target = { kind: 'nodes', nodes: [], count: 0 };
    this.touched = new Set();
    this.apiErrors = [];
    this.kubectlErrors = { label: [], taint: [] };
    this.busy = false;
    this.el = h('section', { class: 'panel editor', 'aria-labelledby': 'editor-title' });
    this.build();
  }

  opts() {
    return { protectedDomains: this.config.protected_prefixes ?? undefined, allowedDomains: this.config.allowed_prefixes ?? undefined };
  }

  /** draft is what the user typed and has not applied, kept across a sign-in in this tab. */
  draft() {
    return { changes: this.changes.map((c) => ({ ...c })), concurrency: this.concurrency.value, maxFailures: this.maxFailures.value,
      kubectlLabels: this.kLabels.value, kubectlTaints: this.kTaints.value };
  }

  /** restore puts a draft back (after a sign-in that left the page). */
  restore(d) {
    const rows = (Array.isArray(d?.changes) ? d.changes : []).filter((c) => c && (c.kind === 'label' || c.kind === 'taint'))
      .map((c) => ({ ...blank(c.kind), op: c.op === 'remove' ? 'remove' : 'set', key: String(c.key ?? ''), value: String(c.value ?? ''), effect: String(c.effect ?? blank(c.kind).effect) }));
    if (!rows.length) return;
    this.changes = rows;
    this.concurrency.value = String(d.concurrency ?? '');
    this.maxFailures.value = String(d.maxFailures ?? '');
    this.kLabels.value = String(d.kubectlLabels ?? '');
    this.kTaints.value = String(d.kubectlTaints ?? '');
    this.touched = new Set(rows.map((_, i) => i));
    this.renderRows();
  }

  setTarget(t) {
    this.target = t;
    this.renderTarget();
  }

  build() {
    this.targetEl = h('p', { class: 'target', id: 'editor-target', 'aria-live': 'polite' });
    this.labelsEl = h('div', { class: 'rows', id: 'label-rows' });
    this.taintsEl = h('div', { class: 'rows', id: 'taint-rows' });
    const klId = uid('kl');
    const ktId = uid('kt');
    this.kLabels = h('input', { id: klId, type: 'text', name: 'kubectl-labels', placeholder: 'team=ml env- ', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${klId}-err`,
      onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); this.addKubectl('label'); } } });
    this.kTaints = h('input', { id: ktId, type: 'text', name: 'kubectl-taints', placeholder: 'gpu=true:NoSchedule gpu:NoExecute- ', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${ktId}-err`,
      onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); this.addKubectl('taint'); } } });
    this.kLabelsErr = h('p', { id: `${klId}-err`, class: 'field-error', 'aria-live': 'polite' });
    this.kTaintsErr = h('p', { id: `${ktId}-err`, class: 'field-error', 'aria-live': 'polite' });
    const ccId = uid('cc');
    const mfId = uid('mf');
    this.concurrency = h('input', { id: ccId, name: 'concurrency', type: 'number', min: '1', step: '1', placeholder: 'auto', inputmode: 'numeric', 'aria-describedby': `${ccId}-hint`,
      oninput: () => { this.apiErrors = this.apiErrors.filter((f) => f.field !== 'concurrency'); this.renderErrors(); } });
    this.ccHint = h('p', { id: `${ccId}-hint`, class: 'hint' });
    this.maxFailures = h('input', { id: mfId, name: 'max_failures', type: 'text', placeholder: 'none (e.g. 10 or 5%)', 'aria-describedby': `${mfId}-err`, autocomplete: 'off', oninput: () => this.renderErrors() });
    this.mfErr = h('p', { id: `${mfId}-err`, class: 'field-error', 'aria-live': 'polite' });
    this.summaryEl = h('div', { class: 'error-summary', id: 'editor-errors', tabindex: '-1', 'aria-live': 'assertive' });
    this.guardEl = h('div', { class: 'guard', id: 'guard-panel', tabindex: '-1', hidden: true });
    this.previewBtn = h('button', { type: 'button', id: 'btn-preview', onclick: () => this.preview() }, 'Preview (dry run)');
    this.submitBtn = h('button', { type: 'submit', class: 'primary', id: 'btn-submit' }, 'Apply to nodes');
    replace(this.el,
      h('h2', { id: 'editor-title' }, 'Change'),
      this.targetEl,
      h('form', { id: 'editor-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.submit(); } },
        h('fieldset', {}, h('legend', {}, 'Labels'), this.labelsEl,
          h('button', { type: 'button', class: 'add', id: 'add-label', onclick: () => this.addRow('label') }, '+ Add label change')),
        h('fieldset', {}, h('legend', {}, 'Taints'), this.taintsEl,
          h('button', { type: 'button', class: 'add', id: 'add-taint', onclick: () => this.addRow('taint') }, '+ Add taint change')),
        h('fieldset', { class: 'kubectl' }, h('legend', {}, 'Or type kubectl syntax'),
          h('div', { class: 'field' }, h('label', { for: klId }, 'Labels'), h('div', { class: 'inline' }, this.kLabels,
            h('button', { type: 'button', id: 'kubectl-labels-add', onclick: () => this.addKubectl('label') }, 'Add')), this.kLabelsErr),
          h('div', { class: 'field' }, h('label', { for: ktId }, 'Taints'), h('div', { class: 'inline' }, this.kTaints,
            h('button', { type: 'button', id: 'kubectl-taints-add', onclick: () => this.addKubectl('taint') }, 'Add')), this.kTaintsErr)),
        h('fieldset', { class: 'options' }, h('legend', {}, 'Options'),
          h('div', { class: 'field' }, h('label', { for: ccId }, 'Concurrency (nodes patched at once)'), this.concurrency, this.ccHint),
          h('div', { class: 'field' }, h('label', { for: mfId }, 'Stop after failures'), this.maxFailures, this.mfErr)),
        this.summaryEl,
        this.guardEl,
        h('div', { class: 'actions' }, this.previewBtn, this.submitBtn)));
    this.renderRows();
    this.renderTarget();
    this.renderConcurrencyHint();
  }

  renderTarget() {
    const t = this.target;
    const what = t.kind === 'selector' ? `all ${t.count} nodes matching ${t.selector}` : t.kind === 'all' ? `all ${t.count} nodes` : `${t.count} selected node${t.count === 1 ? '' : 's'}`;
    replace(this.targetEl, 'Applies to ', h('strong', {}, what), t.count ? '' : ' — select nodes in the table');
    this.renderConcurrencyHint();
  }

  renderConcurrencyHint(apiValue) {
    if (apiValue) this.apiConcurrency = apiValue;
    const maxCap = this.config.max_concurrency || 50;
    const n = this.target?.count ?? 0;
    let text = `Empty = auto: one per 20 nodes, at least 1, at most ${maxCap}`;
    if (n) text += ` — ${defaultConcurrency(n, maxCap)} for these ${n} nodes`;
    if (this.apiConcurrency) text += `. The API used ${this.apiConcurrency} for the last preview or batch`;
    this.ccHint.textContent = `${text}.`;
  }

  addRow(kind) {
    this.changes.push(blank(kind));
    this.renderRows();
    const rows = (kind === 'label' ? this.labelsEl : this.taintsEl).querySelectorAll('.row');
    rows[rows.length - 1]?.querySelector('input[name=key]')?.focus();
  }

  addKubectl(kind) {
    const input = kind === 'label' ? this.kLabels : this.kTaints;
    const { changes, errors, bad } = parseSpecs(kind, input.value);
    // Drop empty placeholder rows of this kind before adding parsed ones.
    this.changes = this.changes.filter((c) => c.kind !== kind || c.key !== '' || c.value !== '');
    for (const c of changes) {
      this.changes.push(c);
      this.touched.add(this.changes.length - 1);
    }
    this.kubectlErrors[kind] = errors;
    input.value = bad.join(' ');
    if (errors.length) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    this.renderRows();
  }

  rowErrors() { return validateChanges(this.changes, this.opts()); }

  maxFailuresError() {
    const v = this.maxFailures.value.trim();
    if (!v) return '';
    return /^(\d+|\d+(\.\d+)?%)$/.test(v) ? '' : 'a whole number of nodes (10) or a percentage (5%)';
  }

  renderRows() {
    const errs = this.rowErrors();
    const row = (c, i) => {
      const id = uid('row');
      const e = this.touched.has(i) || this.showAll ? errs[i] : {};
      const api = this.apiErrorsFor(c, i);
      const keyErr = e.key || api.key;
      const valErr = e.value || api.value;
      const effErr = e.effect || api.effect;
      const set = (f) => (ev) => {
        c[f] = ev.target.value;
        if (f !== 'op') this.touched.add(i);
        this.apiErrors = [];
        if (f === 'op') this.renderRows(); else this.renderErrors();
      };
      const isTaint = c.kind === 'taint';
      return h('div', { class: 'row', 'data-row': String(i), role: 'group', 'aria-label': `${c.kind} change ${i + 1}` },
        h('div', { class: 'field op' }, h('label', { for: `${id}-op` }, 'Action'),
          h('select', { id: `${id}-op`, name: 'op', onchange: set('op') },
            h('option', { value: 'set', selected: c.op === 'set' }, isTaint ? 'Add/update' : 'Set'),
            h('option', { value: 'remove', selected: c.op === 'remove' }, 'Remove'))),
        h('div', { class: 'field key' }, h('label', { for: `${id}-key` }, 'Key'),
          h('input', { id: `${id}-key`, name: 'key', type: 'text', value: c.key, spellcheck: 'false', autocomplete: 'off', 'aria-invalid': keyErr ? 'true' : false, 'aria-describedby': `${id}-key-err`,
            oninput: set('key'), onblur: () => { this.touched.add(i); this.renderErrors(); } })),
        h('div', { class: 'field value' }, h('label', { for: `${id}-val` }, 'Value'),
          h('input', { id: `${id}-val`, name: 'value', type: 'text', value: c.value, spellcheck: 'false', autocomplete: 'off', disabled: c.op === 'remove', 'aria-invalid': valErr ? 'true' : false, 'aria-describedby': `${id}-val-err`,
            oninput: set('value'), onblur: () => { this.touched.add(i); this.renderErrors(); } })),
        isTaint ? h('div', { class: 'field effect' }, h('label', { for: `${id}-eff` }, 'Effect'),
          h('select', { id: `${id}-eff`, name: 'effect', onchange: set('effect'), 'aria-invalid': effErr ? 'true' : false, 'aria-describedby': `${id}-eff-err` },
            c.op === 'remove' ? h('option', { value: '', selected: !c.effect }, 'Any effect') : '',
            taintEffects.map((ef) => h('option', { value: ef, selected: c.effect === ef }, ef)))) : '',
        h('button', { type: 'button', class: 'icon remove-row', 'aria-label': `Remove ${c.kind} change ${i + 1}`,
          onclick: () => { this.changes.splice(i, 1); this.touched = new Set([...this.touched].filter((j) => j !== i).map((j) => (j > i ? j - 1 : j))); this.renderRows(); } }, '×'),
        h('div', { class: 'row-errors' },
          h('p', { class: 'field-error', id: `${id}-key-err`, 'data-for': 'key', 'data-label': 'Key' }, keyErr ?? ''),
          h('p', { class: 'field-error', id: `${id}-val-err`, 'data-for': 'value', 'data-label': 'Value' }, valErr ?? ''),
          isTaint ? h('p', { class: 'field-error', id: `${id}-eff-err`, 'data-for': 'effect', 'data-label': 'Effect' }, effErr ?? '') : ''));
    };
    const byKind = (k) => this.changes.map((c, i) => [c, i]).filter(([c]) => c.kind === k).map(([c, i]) => row(c, i));
    const labels = byKind('label');
    const taints = byKind('taint');
    replace(this.labelsEl, labels.length ? labels : h('p', { class: 'muted' }, 'No label changes.'));
    replace(this.taintsEl, taints.length ? taints : h('p', { class: 'muted' }, 'No taint changes.'));
    this.renderErrors();
  }

  /** apiErrorsFor maps the API's field errors ("labels[0]", "taints[1].key") to a row. */
  apiErrorsFor(c, i) {
    const out = {};
    if (!this.apiErrors.length) return out;
    const kindIndex = this.changes.slice(0, i).filter((x) => x.kind === c.kind).length;
    const base = c.kind === 'label' ? 'labels' : 'taints';
    for (const f of this.apiErrors) {
      const m = /^(?:changes\.)?(labels|taints)\[(\d+)\](?:\.(\w+))?/.exec(f.field ?? '');
      const byValue = !m && f.value && f.value === toKubectl(c) && (f.field ?? '').startsWith(base);
      if ((m && m[1] === base && Number(m[2]) === kindIndex) || byValue) {
        const sub = m?.[3] === 'value' ? 'value' : m?.[3] === 'effect' ? 'effect' : 'key';
        out[sub] = f.reason || f.message;
      }
    }
    return out;
  }

  /** renderErrors refreshes the inline messages without rebuilding inputs (keeps focus). */
  renderErrors() {
    const errs = this.rowErrors();
    for (const rowEl of this.el.querySelectorAll('.row')) {
      const i = Number(rowEl.dataset.row);
      const e = this.touched.has(i) || this.showAll ? errs[i] : {};
      const api = this.apiErrorsFor(this.changes[i], i);
      for (const f of ['key', 'value', 'effect']) {
        const p = rowEl.querySelector(`.field-error[data-for=${f}]`);
        if (!p) continue;
        const msg = e[f] || api[f] || '';
        p.textContent = msg;
        const input = rowEl.querySelector(`[name=${f}]`);
        if (msg) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
      }
    }
    this.kLabelsErr.textContent = this.kubectlErrors.label.join('; ');
    this.kTaintsErr.textContent = this.kubectlErrors.taint.join('; ');
    // The API's errors on the options land on their inputs.
    const apiField = (name) => this.apiErrors.find((f) => f.field === name)?.reason ?? '';
    const mf = this.maxFailuresError() || apiField('max_failures');
    this.mfErr.textContent = mf;
    if (mf) this.maxFailures.setAttribute('aria-invalid', 'true'); else this.maxFailures.removeAttribute('aria-invalid');
    if (apiField('concurrency')) this.concurrency.setAttribute('aria-invalid', 'true'); else this.concurrency.removeAttribute('aria-invalid');
    const unmapped = this.apiErrors.filter((f) => !/^(?:changes\.)?(labels|taints)\[/.test(f.field ?? ''));
    replace(this.summaryEl, this.apiMessage ? h('div', { class: 'error', role: 'alert' },
      h('p', {}, this.apiMessage), unmapped.length ? h('ul', {}, unmapped.map((f) => h('li', {}, h('code', {}, f.field), f.value ? ` "${f.value}"` : '', `: ${f.reason}`))) : '') : '');
  }

  /** body builds the request, or returns null and shows every error. */
  body(dryRun) {
    this.showAll = true;
    this.hideGuard();
    this.apiErrors = [];
    this.apiMessage = '';
    // kubectl text typed but not yet added counts as part of the change.
    if (this.kLabels.value.trim()) this.addKubectl('label'); else this.kubectlErrors.label = [];
    if (this.kTaints.value.trim()) this.addKubectl('taint'); else this.kubectlErrors.taint = [];
    if (this.kubectlErrors.label.length || this.kubectlErrors.taint.length) {
      this.apiMessage = 'Fix the kubectl syntax; nothing was sent.';
      this.renderErrors();
      (this.kubectlErrors.label.length ? this.kLabels : this.kTaints).focus();
      return null;
    }
    const changes = this.changes.filter((c) => c.key !== '' || c.value !== '' || c.op === 'remove');
    this.changes = changes;
    const errs = this.rowErrors();
    const bad = errs.findIndex((e) => Object.keys(e).length > 0);
    this.renderRows();
    if (bad >= 0 || this.maxFailuresError()) {
      this.apiMessage = 'Fix the highlighted fields; nothing was sent.';
      this.renderErrors();
      const first = this.el.querySelector('[aria-invalid=true]');
      first?.focus();
      this.announce?.('Fix the highlighted fields; nothing was sent.');
      return null;
    }
    if (!changes.length) {
      this.apiMessage = 'Add at least one label or taint change.';
      this.renderErrors();
      return null;
    }
    const t = this.target;
    if (!t.count) {
      this.apiMessage = 'Select at least one node in the table.';
      this.renderErrors();
      return null;
    }
    const body = { ...toRequest(changes), dry_run: dryRun };
    if (t.kind === 'selector') body.selector = t.selector;
    else if (t.kind === 'all') body.all = true;
    else body.nodes = t.nodes;
    const cc = this.concurrency.value.trim();
    if (cc) body.concurrency = Number(cc);
    const mf = this.maxFailures.value.trim();
    if (mf) body.max_failures = mf;
    body.idempotency_key = `ui-${crypto.randomUUID?.() ?? Date.now() + '-' + Math.random()}`;
    return body;
  }

  showApiError(e) {
    this.apiErrors = e.fields ?? [];
    this.apiMessage = `The API refused the batch: ${e.message}`;
    this.renderRows();
    this.summaryEl.focus();
  }

  setBusy(b) {
    this.busy = b;
    this.previewBtn.disabled = b;
    this.submitBtn.disabled = b;
  }

  async preview() {
    const body = this.body(true);
    if (!body) return;
    this.setBusy(true);
    try {
      // The preview endpoint computes without recording a batch; an API
      // without it gets a dry-run batch instead.
      const { dry_run: _d, idempotency_key: _k, ...plain } = body;
      let r;
      try {
        r = await this.client.preview(plain);
      } catch (e) {
        if (e.status !== 404 && e.status !== 405) throw e;
        r = await this.client.submit(body);
      }
      if (r.data.concurrency) this.renderConcurrencyHint(r.data.concurrency);
      await this.onPreview?.(r, body, this.changes.map((c) => ({ ...c })));
    } catch (e) {
      this.showApiError(e);
    } finally {
      this.setBusy(false);
    }
  }

  async submit() {
    if (this.busy) return;
    const body = this.body(false);
    if (!body) return;
    this.setBusy(true);
    try {
      const r = await this.client.submit(body);
      if (r.data.concurrency) this.renderConcurrencyHint(r.data.concurrency);
      this.onSubmitted?.(r, body);
    } catch (e) {
      if (e.status === 409 && e.code === 'confirmation_required') {
        this.showGuard(e.detail);
      } else this.showApiError(e);
    } finally {
      this.setBusy(false);
    }
  }

  hideGuard() {
    this.guardEl.hidden = true;
    this.guardEl.replaceChildren();
  }

  /**
   * showGuard answers the API's confirmation guard (409): why the batch is
   * held back, what it would evict, and a box where the user types the
   * node count; only the exact count enables the confirming button, which
   * sends the batch again with "confirm" set.
   */
  showGuard(d) {
    const n = Number(d.nodes);
    const inputId = uid('confirm');
    const input = h('input', { id: 'confirm-count', name: 'confirm', type: 'text', inputmode: 'numeric', autocomplete: 'off', 'aria-describedby': `${inputId}-hint` });
    const btn = h('button', { type: 'button', class: 'primary danger', id: 'btn-confirm', disabled: true }, `Apply to ${n} nodes`);
    input.addEventListener('input', () => { btn.disabled = input.value.trim() !== String(n); });
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); if (!btn.disabled) btn.click(); } });
    btn.addEventListener('click', () => this.submitConfirmed(n));
    const wrongField = (d.fields ?? []).find((f) => f.field === 'max_nodes' || (f.field === 'confirm' && f.value));
    replace(this.guardEl,
      h('h3', {}, 'Confirm this change'),
      h('p', {}, d.message ?? ''),
      d.reasons?.length ? h('ul', { id: 'guard-reasons' }, d.reasons.map((r) => h('li', {}, r))) : '',
      wrongField ? h('p', { class: 'error' }, `${wrongField.field}: ${wrongField.reason}`) : '',
      d.impact ? impactView(d.impact, 'guard-impact') : '',
      d.impact_error ? h('p', { class: 'muted' }, `What it would evict is unknown: ${d.impact_error}`) : '',
      h('div', { class: 'field' }, h('label', { for: 'confirm-count' }, `Type ${n}, the number of nodes, to confirm`), input,
        h('p', { class: 'hint', id: `${inputId}-hint` }, 'The count is checked again when the batch is submitted: if the nodes changed, you are asked again.')),
      h('div', { class: 'actions' }, h('button', { type: 'button', id: 'btn-guard-cancel', onclick: () => this.hideGuard() }, 'Back to editing'), btn));
    this.guardEl.hidden = false;
    this.announce?.(`Confirmation needed: type ${n} to apply`);
    input.focus();
  }

  /** submitConfirmed sends the current change again with confirm = n. */
  async submitConfirmed(n) {
    if (this.busy) return;
    const body = this.body(false);
    if (!body) return;
    body.confirm = n;
    this.setBusy(true);
    try {
      const r = await this.client.submit(body);
      if (r.data.concurrency) this.renderConcurrencyHint(r.data.concurrency);
      this.onSubmitted?.(r, body);
    } catch (e) {
      if (e.status === 409 && e.code === 'confirmation_required') {
        this.showGuard(e.detail);
      } else this.showApiError(e);
    } finally {
      this.setBusy(false);
    }
  }
}
