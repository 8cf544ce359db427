// main.js: boots the page. Loads /config.json, signs the user in, then
// wires the node table, the editor, the preview and progress dialogs and
// the history view together.

import { h, replace } from './dom.js';
import { Client } from './api.js';
import { Session, NeedsUser, PopupBlocked } from './auth.js';
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
  let signInError = '';
  try {
    if (await session.finishOIDC() === 'popup') return; // the sign-in window hands its answer over and closes
  } catch (e) {
    signInError = e.message;
    announce(e.message);
  }
  if (!session.token && session.refreshToken) {
    try { await session.renew(); } catch { /* sign in below */ }
  }
  if (!session.token) {
    signInScreen(config, session, signInError);
    return;
  }
  main(config, session);
}

// draftKey keeps the editor's rows across a sign-in that leaves the page
// (the fallback when the browser blocks the sign-in window).
const draftKey = 'nodebatch.draft';

function signInScreen(config, session, error = '') {
  document.getElementById('user').replaceChildren();
  const err = h('p', { class: 'error', role: 'alert' }, error);
  replace(app, h('section', { class: 'panel signin', 'aria-labelledby': 'signin-title' },
    h('h2', { id: 'signin-title' }, 'Sign in'),
    h('p', {}, config.dev_issuer ? 'Local development issuer: its sign-in page lists the development users.' : 'Sign in with your organisation account.'),
    h('button', { type: 'button', class: 'primary', id: 'btn-oidc', onclick: () => session.beginOIDC().catch((e) => { err.textContent = e.message; }) }, 'Sign in'),
    err));
}

/**
 * SessionPrompt asks the user to sign in again when the issuer will not
 * renew the token. It is not modal and the page stays as it is: the sign-in
 * runs in a popup, so the editor's rows are untouched; if the browser
 * blocks the popup, the rows are saved and restored after a redirect.
 */
class SessionPrompt {
  constructor({ session, editor, announce }) {
    Object.assign(this, { session, editor, announce });
    this.msg = h('p', { class: 'error', id: 'session-error' });
    this.el = h('section', { class: 'session-prompt', id: 'session-prompt', role: 'alertdialog', 'aria-labelledby': 'session-prompt-title', 'aria-describedby': 'session-prompt-text', hidden: true },
      h('h2', { id: 'session-prompt-title' }, 'Your session has ended'),
      h('p', { id: 'session-prompt-text' }, 'Sign in again to go on. Your unsaved changes stay on this page.'),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'btn-resignin', onclick: () => this.signIn() }, 'Sign in again')),
      this.msg);
  }

  show(reason = '') {
    if (!this.el.hidden) return;
    this.msg.textContent = reason;
    this.el.hidden = false;
    this.el.querySelector('#btn-resignin').focus();
    this.announce('Your session has ended. Sign in again to go on; your changes are kept.');
  }

  async signIn() {
    this.msg.textContent = '';
    try {
      await this.session.signInPopup();
      this.el.hidden = true;
      this.announce(`Signed in again as ${this.session.user}`);
    } catch (e) {
      if (e instanceof PopupBlocked) {
        sessionStorage.setItem(draftKey, JSON.stringify(this.editor.draft()));
        await this.session.beginOIDC().catch((e2) => { this.msg.textContent = e2.message; });
        return;
      }
      this.msg.textContent = e.message;
    }
  }
}

async function main(config, session) {
  let prompt; // the "session ended" prompt, built with the editor below
  // A 401 renews the token once and resends; when that needs the user, the
  // prompt asks them (the request fails, what they typed stays).
  const client = new Client(config.api_base ?? '', () => session.token, async () => {
    try {
      await session.renew();
      return true;
    } catch (e) {
      if (e instanceof NeedsUser) prompt?.show();
      return false;
    }
  });
  const stream = new Stream(Stream.wsURL(config.api_base || location.origin), () => session.token);
  session.onChange(() => {
    stream.renewed();
    const who = document.getElementById('who');
    if (who) who.firstChild.textContent = session.user;
  });
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
  prompt = new SessionPrompt({ session, editor, announce });
  session.onNeedUser = () => prompt.show();
  session.schedule();
  const saved = sessionStorage.getItem(draftKey);
  if (saved) {
    sessionStorage.removeItem(draftKey);
    try { editor.restore(JSON.parse(saved)); announce('Your unsaved changes were restored'); } catch { /* a damaged draft is dropped */ }
  }

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
  replace(app, prompt.el, h('div', { class: 'tabbar' }, tablist, recentEl), views.nodes, views.history, views.batch);
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
