// dom.js: a tiny element builder so views stay declarative without a
// framework: h('button', {class: 'x', onclick: f}, 'Label').

/** h creates an element with attributes/properties and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'indeterminate' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** replace swaps el's children for the given ones. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idSeq = 0;
/** uid returns a page-unique id for label/aria wiring. */
export function uid(prefix = 'id') {
  idSeq += 1;
  return `${prefix}-${idSeq}`;
}

/** chip renders a label or taint as a compact tag. */
export function labelChip(key, value, cls = '') {
  return h('span', { class: `chip chip-label ${cls}`, title: `${key}=${value}` }, h('span', { class: 'chip-k' }, key), value !== '' ? ['=', h('span', { class: 'chip-v' }, value)] : '');
}

/** taintChip renders a taint as key=value:Effect. */
export function taintChip(t, cls = '') {
  const text = `${t.key}${t.value ? '=' + t.value : ''}:${t.effect}`;
  return h('span', { class: `chip chip-taint effect-${t.effect} ${cls}`, title: text }, text);
}

/** fmtDuration renders seconds as "1m 05s". */
export function fmtDuration(s) {
  if (s === undefined || s === null || !isFinite(s)) return '—';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** fmtTime renders an RFC 3339 time in the user's locale, or '—'. */
export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  // Go's zero time (0001-01-01) means 'not yet'.
  return isNaN(d) || d.getFullYear() < 2000 ? '—' : d.toLocaleString();
}
