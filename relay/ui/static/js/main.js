// main.js: boots the page. Loads /config.json, signs the user in, then
// wires the node table, the editor, the preview and progress dialogs and
// the history view together.

import { h, replace } from './dom.js';
import { Client } from './api.js';
import { Session } from './auth.js';
import { Stream } from './stream.js';
import { NodesView } from './nodes.js';
import { Editor } from './editor.js';
import { PreviewDialog } from './preview.js';
import { ProgressDialog, fromBatch } from './progress.js';
import { HistoryView } from './history.js';
import { ResultsView } from './results.js';

const app = document.getElementById('app');
const live = document.getElementById('announcer');
const announce = (text) => { live.textContent = ''; setTimeout(() => { live.textContent = text; }, 30); };

async function loadConfig() {
  const res = await fetch('config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`GET /config.json: ${res.status}`);
  return res.json();
}

function fatal(msg) {
  replace(app, h('section', { class: 'panel signin' }, h('h2', {}, 'nodebatch cannot start'), h('p', { class: 'error', role: 'alert' }, msg)));
}

async function boot() {
  let config;
  try {
    config = await loadConfig();
  } catch (e) {
    fatal(`${e.message}. The relay must serve the page configuration.`);
    return;
  }
  config.features = config.features ?? [];
  const session = new Session(config);
  try {
    await session.finishOIDC();
  } catch (e) {
    announce(e.message);
  }
  if (!session.token) {
    signInScreen(config, session);
    return;
  }
  main(config, session);
}

function signInScreen(config, session, error = '') {
  document.getElementById('user').replaceChildren();
  const users = config.dev_users?.length ? config.dev_users : [{ name: 'alice', role: 'user' }, { name: 'bob', role: 'user' }, { name: 'admin', role: 'admin' }];
  const err = h('p', { class: 'error', role: 'alert' }, error);
  replace(app, h('section', { class: 'panel signin', 'aria-labelledby': 'signin-title' },
    h('h2', { id: 'signin-title' }, 'Sign in'),
    config.dev_issuer ? [
      h('p', {}, 'Local development issuer: pick who you are.'),
      h('div', { class: 'inline users' }, users.map((u) => h('button', { type: 'button', class: 'primary', 'data-user': u.name, onclick: async () => {
        try { await session.signInDev(u); location.reload(); } catch (e) { err.textContent = e.message; }
      } }, `Sign in as ${u.name}`, u.role && u.role !== 'user' ? ` (${u.role})` : ''))),
    ] : [
      h('p', {}, 'Sign in with your organisation account.'),
      h('button', { type: 'button', class: 'primary', id: 'btn-oidc', onclick: () => session.beginOIDC().catch((e) => { err.textContent = e.message; }) }, 'Sign in'),
    ],
    err));
}

async function main(config, session) {
  const client = new Client(config.api_base ?? '', () => session.token, () => { session.signOut(); signInScreen(config, session, 'Your session expired; sign in again.'); });
  const stream = new Stream(Stream.wsURL(config.api_base || location.origin), () => session.token);
  let features = config.features;

  replace(document.getElementById('user'),
    h('span', { class: 'who', id: 'who' }, session.user, session.isAdmin ? h('span', { class: 'badge' }, 'admin') : ''),
    h('button', { type: 'button', id: 'btn-signout', onclick: () => { stream.close(); session.signOut(); location.reload(); } }, 'Sign out'));

  const history = new HistoryView({ client, session, onOpen: (id, row) => progress.open(id, fromBatch(row)) });
  let results; // the results view (#/batches/{id}), built below
  const nodes = new NodesView({ client, announce, onSelection: (t) => editor.setTarget(t) });
  // Batches started in this tab, so a closed dialog can be reopened even
  // where the API has no history list.
  const recentKey = 'nodebatch.recent';
  const recent = JSON.parse(sessionStorage.getItem(recentKey) ?? '[]');
  const recentEl = h('nav', { class: 'recent', id: 'recent', 'aria-label': 'Batches started here' });
  const renderRecent = () => {
    sessionStorage.setItem(recentKey, JSON.stringify(recent));
    replace(recentEl, recent.length ? [h('span', { class: 'muted' }, 'Started here:'),
      recent.map((r) => h('button', { type: 'button', class: 'link', 'data-batch': r.id, onclick: () => progress.open(r.id, { total: r.total }), 'aria-label': `Open batch ${r.id}, ${r.state}` },
        h('code', {}, r.id.slice(-10)), ' ', h('span', { class: `badge state-${r.state}` }, (r.state ?? '').replace('_', ' '))))] : '');
  };
  const remember = (id, m) => {
    const i = recent.findIndex((r) => r.id === id);
    const entry = { id, state: m.state ?? 'pending', total: m.total };
    if (i >= 0) {
      if (recent[i].state === entry.state) return;
      recent[i] = entry;
    } else {
      recent.unshift(entry);
      recent.splice(5);
    }
    renderRecent();
  };
  const progress = new ProgressDialog({
    client, stream, features, announce,
    onUpdate: (id, m) => { if (recent.some((r) => r.id === id)) remember(id, m); },
    onFinal: (id) => { nodes.load(); if (features.includes('history')) history.load(); if (results.id === id && !views.batch.hidden) results.load(); },
    onOpenBatch: (id, r) => progress.open(id, r),
  });
  const editor = new Editor({
    client, config, announce,
    onPreview: (answer) => preview.show(answer),
    onSubmitted: (answer, body) => {
      const d = answer.data;
      const id = d.batch_id ?? d.id;
      announce(`Batch ${id} submitted`);
      if (!body.dry_run) remember(id, { state: d.state ?? 'pending', total: d.total });
      progress.open(id, answer.status === 200 ? fromBatch({ ...d, id }) : { total: d.total, state: d.state ?? 'pending', concurrency: d.concurrency, action: d.action });
      if (answer.status === 200) nodes.load();
    },
  });
  const preview = new PreviewDialog({ client, stream, onApply: () => editor.submit() });

  results = new ResultsView({ client, onProgress: (id, b) => progress.open(id, fromBatch(b)) });
  const tabs = [['nodes', 'Nodes'], ['history', 'History']];
  const views = {
    batch: h('div', { id: 'view-batch', hidden: true }, results.el),
    nodes: h('div', { class: 'layout', id: 'view-nodes', role: 'tabpanel', 'aria-labelledby': 'tab-nodes' }, nodes.el, editor.el),
    history: h('div', { id: 'view-history', role: 'tabpanel', 'aria-labelledby': 'tab-history', hidden: true }, history.el),
  };
  const select = (name) => {
    views.batch.hidden = true;
    for (const [k] of tabs) {
      const tab = document.getElementById(`tab-${k}`);
      tab.setAttribute('aria-selected', String(k === name));
      tab.tabIndex = k === name ? 0 : -1;
      views[k].hidden = k !== name;
    }
    if (name === 'history') history.load();
    location.hash = name;
  };
  const tablist = h('nav', { class: 'tabs', role: 'tablist', 'aria-label': 'Views' }, tabs.map(([k, label], i) => h('button', {
    // History stays hidden until the API is known to list batches.
    type: 'button', role: 'tab', id: `tab-${k}`, 'aria-controls': `view-${k}`, hidden: k === 'history', onclick: () => select(k),
    onkeydown: (e) => {
      if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
      const visible = tabs.filter(([t]) => !document.getElementById(`tab-${t}`).hidden);
      const j = visible.findIndex(([t]) => t === k);
      const next = visible[(j + (e.key === 'ArrowRight' ? 1 : visible.length - 1)) % visible.length][0];
      select(next);
      document.getElementById(`tab-${next}`).focus();
    },
  }, label)));
  replace(app, h('div', { class: 'tabbar' }, tablist, recentEl), views.nodes, views.history, views.batch);
  renderRecent();

  // History exists when the API lists batches; without a capabilities list, probe it.
  if (!features.includes('history')) {
    try {
      await client.history({ limit: '1' });
      features = [...features, 'history'];
      progress.features = features;
    } catch { /* no history endpoint */ }
  }
  document.getElementById('tab-history').hidden = !features.includes('history');
  // #/batches/{id} opens one batch (a link to share; the back button
  // returns to where the user was): its results, and its live progress
  // while it runs.
  const route = () => {
    const m = /^#\/batches\/([^/?#]+)$/.exec(location.hash);
    if (m) {
      const id = decodeURIComponent(m[1]);
      for (const [k] of tabs) {
        document.getElementById(`tab-${k}`).setAttribute('aria-selected', 'false');
        views[k].hidden = true;
      }
      views.batch.hidden = false;
      onBatch = true;
      if (results.id !== id || !results.batch) results.open(id);
      return;
    }
    const name = location.hash === '#history' && features.includes('history') ? 'history' : 'nodes';
    if (onBatch) {
      onBatch = false;
      if (progress.el.open) progress.el.close();
    } else if (!views[name].hidden) {
      return; // select() itself set this hash
    }
    select(name);
  };
  let onBatch = false;
  window.addEventListener('hashchange', route);
  route();
  await nodes.load();
  app.dataset.ready = 'true'; // feature probes done, first table drawn
}

boot();
