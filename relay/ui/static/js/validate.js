// validate.js: label and taint rules, ported from k8s.io/apimachinery
// (pkg/util/validation) and kubectl's label/taint argument syntax, so the
// editor can show field errors before submit with the API's own wording.
// Pure functions, no DOM: unit-tested under node in relay/ui/e2e.

const qnameCharFmt = '[A-Za-z0-9]';
const qnameExtCharFmt = '[-A-Za-z0-9_.]';
export const qualifiedNameFmt = `(${qnameCharFmt}${qnameExtCharFmt}*)?${qnameCharFmt}`;
export const labelValueFmt = `(${qualifiedNameFmt})?`;
const dns1123LabelFmt = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
export const dns1123SubdomainFmt = `${dns1123LabelFmt}(\\.${dns1123LabelFmt})*`;

const qualifiedNameRe = new RegExp(`^${qualifiedNameFmt}$`);
const labelValueRe = new RegExp(`^${labelValueFmt}$`);
const dns1123SubdomainRe = new RegExp(`^${dns1123SubdomainFmt}$`);

export const qualifiedNameMaxLength = 63;
export const labelValueMaxLength = 63;
export const dns1123SubdomainMaxLength = 253;

/** Taint effects the API server accepts. */
export const taintEffects = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

/** Default protected key domains (the API's default; /config.json may override). */
export const defaultProtected = ['kubernetes.io', 'k8s.io'];
/** Default exceptions to the protected domains. */
export const defaultAllowed = ['node-role.kubernetes.io'];

function maxLenError(n) { return `must be no more than ${n} characters`; }

function regexError(msg, fmt, ...examples) {
  let s = msg + ' (e.g. ';
  s += examples.map((e) => `'${e}'`).join(',  or ');
  return s + `, regex used for validation is '${fmt}')`;
}

/** isDNS1123Subdomain returns apimachinery's error messages for value. */
export function isDNS1123Subdomain(value) {
  const errs = [];
  if (value.length > dns1123SubdomainMaxLength) errs.push(maxLenError(dns1123SubdomainMaxLength));
  if (!dns1123SubdomainRe.test(value)) {
    errs.push(regexError("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
      dns1123SubdomainFmt, 'example.com'));
  }
  return errs;
}

/** isQualifiedName returns apimachinery's error messages for a label or taint key. */
export function isQualifiedName(value) {
  const errs = [];
  const parts = value.split('/');
  let name;
  switch (parts.length) {
    case 1:
      name = parts[0];
      break;
    case 2: {
      const prefix = parts[0];
      name = parts[1];
      if (prefix.length === 0) {
        errs.push('prefix part must be non-empty');
      } else {
        for (const m of isDNS1123Subdomain(prefix)) errs.push('prefix part ' + m);
      }
      break;
    }
    default:
      return [regexError("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        qualifiedNameFmt, 'MyName', 'my.name', '123-abc') +
        " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"];
  }
  if (name.length === 0) {
    errs.push('name part must be non-empty');
  } else if (name.length > qualifiedNameMaxLength) {
    errs.push('name part ' + maxLenError(qualifiedNameMaxLength));
  }
  if (!qualifiedNameRe.test(name)) {
    errs.push('name part ' + regexError("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
      qualifiedNameFmt, 'MyName', 'my.name', '123-abc'));
  }
  return errs;
}

/** isValidLabelValue returns apimachinery's error messages for a label or taint value. */
export function isValidLabelValue(value) {
  const errs = [];
  if (value.length > labelValueMaxLength) errs.push(maxLenError(labelValueMaxLength));
  if (!labelValueRe.test(value)) {
    errs.push(regexError("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
      labelValueFmt, 'MyValue', 'my_value', '12345'));
  }
  return errs;
}

function domainOf(key) {
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

function trimSlash(s) { return s.replace(/\/+$/, ''); }

/**
 * protectedKeyError returns why key may not be changed, or '' if it may:
 * keys whose prefix is a protected domain or one of its subdomains are
 * refused, except allowed domains.
 */
export function protectedKeyError(key, protectedDomains = defaultProtected, allowed = defaultAllowed) {
  const d = domainOf(key);
  // Like the API (shared/change): the domain is everything before the last '/'.
  if (!d) return '';
  if (allowed.map(trimSlash).includes(d)) return '';
  for (const p of protectedDomains.map(trimSlash)) {
    if (d === p || d.endsWith('.' + p)) return `keys under "${p}/" are protected and may not be changed`;
  }
  return '';
}

/**
 * A Change is one row of the editor:
 * {kind: 'label'|'taint', op: 'set'|'remove', key, value, effect}.
 * Removing a taint with effect '' removes every effect of that key.
 */

/** toKubectl renders a change in kubectl syntax, the API's wire form. */
export function toKubectl(c) {
  if (c.kind === 'label') return c.op === 'remove' ? `${c.key}-` : `${c.key}=${c.value ?? ''}`;
  if (c.op === 'remove') return c.effect ? `${c.key}:${c.effect}-` : `${c.key}-`;
  return c.value ? `${c.key}=${c.value}:${c.effect}` : `${c.key}:${c.effect}`;
}

/**
 * validateChange returns field errors for one change:
 * {key?: string, value?: string, effect?: string}; empty object when valid.
 */
export function validateChange(c, opts = {}) {
  const errs = {};
  const keyErrs = isQualifiedName(c.key ?? '');
  if (keyErrs.length) {
    errs.key = keyErrs.join('; ');
  } else {
    const p = protectedKeyError(c.key, opts.protectedDomains, opts.allowedDomains);
    if (p) errs.key = p;
  }
  if (c.op === 'set') {
    const valErrs = isValidLabelValue(c.value ?? '');
    if (valErrs.length) errs.value = valErrs.join('; ');
  }
  if (c.kind === 'taint') {
    if (c.op === 'set' && !c.effect) errs.effect = `effect is required; one of ${taintEffects.join(', ')}`;
    else if (c.effect && !taintEffects.includes(c.effect)) errs.effect = `unsupported value "${c.effect}"; supported values: ${taintEffects.map((e) => `"${e}"`).join(', ')}`;
  }
  return errs;
}

/**
 * validateChanges validates every change and the set as a whole: the same
 * label key, or the same taint key and effect, may appear once only, and
 * removing every effect of a taint key excludes other changes of that key.
 * Returns an array parallel to changes of field-error objects.
 */
export function validateChanges(changes, opts = {}) {
  const out = changes.map((c) => validateChange(c, opts));
  const labels = new Map();
  const byKeyEffect = new Map();
  const allEffects = new Map(); // key → row of a remove-all-effects
  const anyEffect = new Map(); // key → first row touching it
  const dup = (i, what, j) => {
    if (!out[i].key) out[i].key = `duplicate: ${what} is already changed in row ${j + 1}`;
  };
  changes.forEach((c, i) => {
    if (!c.key) return;
    if (c.kind === 'label') {
      if (labels.has(c.key)) dup(i, `label key "${c.key}"`, labels.get(c.key));
      else labels.set(c.key, i);
      return;
    }
    const ke = `${c.key}:${c.effect ?? ''}`;
    const removeAll = c.op === 'remove' && !c.effect;
    if (byKeyEffect.has(ke)) return dup(i, `taint "${ke}"`, byKeyEffect.get(ke));
    if (allEffects.has(c.key)) return dup(i, `taint key "${c.key}"`, allEffects.get(c.key));
    if (removeAll && anyEffect.has(c.key)) return dup(i, `taint key "${c.key}"`, anyEffect.get(c.key));
    byKeyEffect.set(ke, i);
    if (!anyEffect.has(c.key)) anyEffect.set(c.key, i);
    if (removeAll) allEffects.set(c.key, i);
  });
  return out;
}

/**
 * defaultConcurrency is the API's rule when a batch gives no concurrency
 * (shared/request.Concurrency): one lane per 20 nodes, at least 1, at most maxCap.
 */
export function defaultConcurrency(total, maxCap = 50) {
  return Math.max(1, Math.min(Math.ceil(total / 20), maxCap));
}

/** splitSpecs splits kubectl-style text on whitespace and commas. */
export function splitSpecs(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

/**
 * parseLabelSpec parses one kubectl label argument ("k=v" or "k-").
 * Returns {change} or {error}.
 */
export function parseLabelSpec(spec) {
  if (spec.includes('=')) {
    const parts = spec.split('=');
    if (parts.length !== 2) return { error: `invalid label spec: ${spec}` };
    return { change: { kind: 'label', op: 'set', key: parts[0], value: parts[1], effect: '' } };
  }
  if (spec.endsWith('-') && spec.length > 1) {
    return { change: { kind: 'label', op: 'remove', key: spec.slice(0, -1), value: '', effect: '' } };
  }
  return { error: `unknown label spec: ${spec} (use key=value to set, key- to remove)` };
}

/**
 * parseTaintSpec parses one kubectl taint argument: "k=v:Effect",
 * "k:Effect" (add or update), "k:Effect-", "k=v:Effect-" or "k-" (remove).
 * Returns {change} or {error}.
 */
export function parseTaintSpec(spec) {
  if (spec.endsWith('-')) {
    let key = spec.slice(0, -1);
    let effect = '';
    if (key.includes(':')) {
      const parts = key.split(':');
      if (parts.length !== 2) return { error: `invalid taint spec: ${spec}` };
      [key, effect] = parts;
      if (!taintEffects.includes(effect)) return { error: `invalid taint spec: ${spec}, unsupported taint effect "${effect}"` };
    }
    const kv = key.split('=');
    if (kv.length > 2) return { error: `invalid taint spec: ${spec}` };
    return { change: { kind: 'taint', op: 'remove', key: kv[0], value: '', effect } };
  }
  const parts = spec.split(':');
  if (parts.length !== 2) return { error: `invalid taint spec: ${spec} (use key[=value]:Effect, key:Effect- or key-)` };
  const [kvPart, effect] = parts;
  if (!taintEffects.includes(effect)) return { error: `invalid taint spec: ${spec}, unsupported taint effect "${effect}"` };
  const kv = kvPart.split('=');
  if (kv.length > 2) return { error: `invalid taint spec: ${spec}` };
  return { change: { kind: 'taint', op: 'set', key: kv[0], value: kv[1] ?? '', effect } };
}

/**
 * parseSpecs parses kubectl-syntax text of one kind into changes, and
 * returns the specs it could not parse (bad) with why (errors).
 */
export function parseSpecs(kind, text) {
  const changes = [];
  const errors = [];
  const bad = [];
  for (const spec of splitSpecs(text)) {
    const r = kind === 'label' ? parseLabelSpec(spec) : parseTaintSpec(spec);
    if (r.error) { errors.push(r.error); bad.push(spec); } else changes.push(r.change);
  }
  return { changes, errors, bad };
}

/** toRequest turns valid changes into the API's labels/taints arrays. */
export function toRequest(changes) {
  return {
    labels: changes.filter((c) => c.kind === 'label').map(toKubectl),
    taints: changes.filter((c) => c.kind === 'taint').map(toKubectl),
  };
}

/**
 * applyChanges computes a node's labels and taints after changes, as the
 * patch function would: used to label a preview when the API sends none.
 */
export function applyChanges(node, changes) {
  const labels = { ...(node.labels ?? {}) };
  let taints = [...(node.taints ?? [])];
  for (const c of changes) {
    if (c.kind === 'label') {
      if (c.op === 'remove') delete labels[c.key]; else labels[c.key] = c.value ?? '';
    } else if (c.op === 'remove') {
      taints = taints.filter((t) => !(t.key === c.key && (!c.effect || t.effect === c.effect)));
    } else {
      const i = taints.findIndex((t) => t.key === c.key && t.effect === c.effect);
      const t = { key: c.key, value: c.value ?? '', effect: c.effect };
      if (i >= 0) taints[i] = t; else taints.push(t);
    }
  }
  return { labels, taints };
}
