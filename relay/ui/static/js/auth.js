// auth.js: who the user is. The OIDC authorization-code flow with PKCE
// (RFC 7636) runs against config.issuer, locally too (the development
// issuer's sign-in page lists its users). The ID token is renewed before it
// expires with the refresh-token grant; when the issuer refuses, the page
// asks the user to sign in again in a popup, which keeps what they typed.
// Tokens live in sessionStorage: gone when the tab closes.

const tokenKey = 'nodebatch.token';
const refreshKey = 'nodebatch.refresh';
const flowKey = 'nodebatch.oidc';

/** base64url encodes bytes without padding. */
export function base64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** randomString returns n random bytes, base64url encoded. */
export function randomString(n = 32) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return base64url(b);
}

/** pkceChallenge is BASE64URL(SHA256(verifier)), the S256 method. */
export async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(digest);
}

/** decodeJWT returns a JWT's payload (unverified: display only; the API verifies). */
export function decodeJWT(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** rolesOf lists the roles in claims under roleClaim (string or array). */
export function rolesOf(claims, roleClaim = 'roles') {
  const v = claims?.[roleClaim] ?? claims?.role ?? claims?.roles ?? [];
  return Array.isArray(v) ? v : String(v).split(/[\s,]+/).filter(Boolean);
}

/** NeedsUser is a renewal the issuer refused: only signing in again helps. */
export class NeedsUser extends Error {}

/** popupName names the sign-in popup window, so the page loaded in it knows. */
export const popupName = 'nodebatch-signin';

/**
 * renewLead is how long before expiry a token is renewed: a third of its
 * lifetime, at most a minute (a one-hour token is renewed at 59 minutes, a
 * 30-second one at 20 seconds).
 */
export function renewLead(claims) {
  const life = (claims?.exp ?? 0) - (claims?.iat ?? 0);
  return Math.max(1, Math.min(60, life > 0 ? life / 3 : 60)) * 1000;
}

/** Session holds the current token and who it names, and renews it. */
export class Session {
  constructor(config, storage = sessionStorage) {
    this.config = config;
    this.storage = storage;
    this.renewing = null; // the renewal in flight, shared by its callers
    this.timer = null;
    this.listeners = new Set();
  }

  /** raw is the stored ID token, expired or not. */
  get raw() { return this.storage.getItem(tokenKey) ?? ''; }

  /** token is the ID token while it is valid, else ''. */
  get token() {
    const t = this.raw;
    const c = t ? decodeJWT(t) : null;
    if (c?.exp && c.exp * 1000 < Date.now()) return '';
    return t;
  }

  get claims() { return this.raw ? decodeJWT(this.raw) : null; }
  get user() { const c = this.claims; return c ? (c.preferred_username || c.email || c.name || c.sub) : ''; }
  get roles() { return rolesOf(this.claims, this.config.role_claim); }
  get isAdmin() { return this.roles.includes('admin'); }
  get refreshToken() { return this.storage.getItem(refreshKey) ?? ''; }

  setToken(t) { this.storage.setItem(tokenKey, t); }
  signOut() {
    clearTimeout(this.timer);
    this.storage.removeItem(tokenKey);
    this.storage.removeItem(refreshKey);
  }

  /** onChange calls f after every new token (renewed or signed in again). */
  onChange(f) { this.listeners.add(f); return () => this.listeners.delete(f); }

  store(j) {
    if (!j.id_token) throw new Error('sign-in: the issuer answered no id_token');
    this.setToken(j.id_token);
    if (j.refresh_token) this.storage.setItem(refreshKey, j.refresh_token);
    else this.storage.removeItem(refreshKey);
    for (const f of this.listeners) f();
  }

  /**
   * authorizeURL starts an authorization-code flow with PKCE (S256); it
   * answers the URL to open and the flow's secrets, kept by the caller.
   */
  async authorizeURL() {
    const disc = await discover(this.config.issuer);
    if (!disc.authorization_endpoint) throw new Error(`the issuer ${this.config.issuer} has no authorization_endpoint`);
    const flow = { verifier: randomString(48), state: randomString(16), nonce: randomString(16), redirect: location.origin + location.pathname };
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: this.config.client_id,
      redirect_uri: flow.redirect,
      scope: ['openid', ...(this.config.scopes ?? ['profile', 'email'])].join(' '),
      code_challenge: await pkceChallenge(flow.verifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    const hint = this.claims?.sub;
    if (hint) q.set('login_hint', hint);
    return { url: `${disc.authorization_endpoint}?${q}`, flow };
  }

  /** beginOIDC redirects this tab to the issuer's authorization endpoint. */
  async beginOIDC() {
    const { url, flow } = await this.authorizeURL();
    flow.hash = location.hash; // back to the same view after the redirect
    this.storage.setItem(flowKey, JSON.stringify(flow));
    location.assign(url);
  }

  /**
   * signInPopup runs the flow in a popup, leaving this page (and what the
   * user typed) as it is. It resolves when a new token is stored; it
   * throws PopupBlocked when the browser refused the window.
   */
  async signInPopup() {
    // The window opens first, inside the click, or the browser blocks it.
    const win = window.open('about:blank', popupName, 'popup,width=520,height=680');
    if (!win) throw new PopupBlocked('the browser blocked the sign-in window');
    let url, flow;
    try {
      ({ url, flow } = await this.authorizeURL());
    } catch (e) {
      win.close();
      throw e;
    }
    win.location.href = url;
    const search = await new Promise((resolve, reject) => {
      const done = (f) => { window.removeEventListener('message', onMessage); clearInterval(poll); f(); };
      const onMessage = (e) => {
        if (e.origin !== location.origin || e.source !== win || e.data?.type !== 'nodebatch-oidc') return;
        done(() => resolve(String(e.data.search)));
      };
      const poll = setInterval(() => { if (win.closed) done(() => reject(new Error('the sign-in window was closed'))); }, 500);
      window.addEventListener('message', onMessage);
    });
    await this.complete(new URLSearchParams(search), flow);
  }

  /**
   * finishOIDC completes the flow when the page is loaded with ?code=&state=.
   * In the sign-in popup it hands the answer to the page that opened it and
   * closes ('popup'); in a tab it exchanges the code (true). False: no callback.
   */
  async finishOIDC() {
    const p = new URLSearchParams(location.search);
    if (!p.has('code') && !p.has('error')) return false;
    if (window.name === popupName && window.opener) {
      window.opener.postMessage({ type: 'nodebatch-oidc', search: location.search }, location.origin);
      window.close();
      return 'popup';
    }
    const flow = JSON.parse(this.storage.getItem(flowKey) ?? 'null');
    this.storage.removeItem(flowKey);
    history.replaceState(null, '', location.pathname + (flow?.hash ?? ''));
    await this.complete(p, flow);
    return true;
  }

  async complete(p, flow) {
    if (p.has('error')) throw new Error(`sign-in refused: ${p.get('error')} ${p.get('error_description') ?? ''}`);
    if (!flow || flow.state !== p.get('state')) throw new Error('sign-in: state mismatch; try again');
    const j = await this.tokenRequest({
      grant_type: 'authorization_code',
      code: p.get('code'),
      redirect_uri: flow.redirect,
      client_id: this.config.client_id,
      code_verifier: flow.verifier,
    });
    const c = decodeJWT(j.id_token ?? '');
    if (!c || c.nonce !== flow.nonce) throw new Error('sign-in: nonce mismatch');
    this.store(j);
    this.schedule();
  }

  async tokenRequest(form) {
    const disc = await discover(this.config.issuer);
    const res = await fetch(disc.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams(form),
    });
    let j = {};
    try { j = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const msg = `${form.grant_type}: ${j.error ?? res.status}${j.error_description ? ` (${j.error_description})` : ''}`;
      // RFC 6749 §5.2: invalid_grant means the refresh token is no good.
      throw res.status === 400 || res.status === 401 ? new NeedsUser(msg) : new Error(msg);
    }
    return j;
  }

  /**
   * renew trades the refresh token for a new ID token. It throws NeedsUser
   * when only the user can help (no refresh token, or the issuer refused
   * it); concurrent callers share one request, so a rotated token is never
   * presented twice.
   */
  renew() {
    if (!this.renewing) {
      this.renewing = (async () => {
        const rt = this.refreshToken;
        if (!rt) throw new NeedsUser('no refresh token: sign in again');
        try {
          this.store(await this.tokenRequest({ grant_type: 'refresh_token', refresh_token: rt, client_id: this.config.client_id }));
        } catch (e) {
          if (e instanceof NeedsUser) this.storage.removeItem(refreshKey);
          throw e;
        }
        this.schedule();
      })().finally(() => { this.renewing = null; });
    }
    return this.renewing;
  }

  /**
   * schedule renews the token renewLead before it expires. A renewal that
   * fails for the network is tried again every few seconds; one that needs
   * the user calls onNeedUser (set by the page).
   */
  schedule() {
    clearTimeout(this.timer);
    const c = this.claims;
    if (!c?.exp) return;
    const wait = Math.max(0, c.exp * 1000 - renewLead(c) - Date.now());
    this.timer = setTimeout(() => this.renewSoon(), wait);
  }

  async renewSoon() {
    try {
      await this.renew();
    } catch (e) {
      if (e instanceof NeedsUser) {
        this.onNeedUser?.(e);
        return;
      }
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.renewSoon(), 5000);
    }
  }
}

/** PopupBlocked: the browser refused to open the sign-in window. */
export class PopupBlocked extends Error {}

async function discover(issuer) {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`OIDC discovery at ${issuer}: ${res.status}`);
  return res.json();
}
