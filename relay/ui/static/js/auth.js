// auth.js: who the user is. Locally (config.dev_issuer) the user picks a
// development identity and the dev issuer mints its token; elsewhere the
// standard OIDC authorization-code flow with PKCE (RFC 7636) runs against
// config.issuer. The token lives in sessionStorage: gone when the tab closes.

const tokenKey = 'nodebatch.token';
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

/** Session holds the current token and who it names. */
export class Session {
  constructor(config, storage = sessionStorage) {
    this.config = config;
    this.storage = storage;
  }

  get token() {
    const t = this.storage.getItem(tokenKey) ?? '';
    const c = t ? decodeJWT(t) : null;
    if (c?.exp && c.exp * 1000 < Date.now()) {
      this.storage.removeItem(tokenKey);
      return '';
    }
    return t;
  }

  get claims() { return this.token ? decodeJWT(this.token) : null; }
  get user() { const c = this.claims; return c ? (c.preferred_username || c.email || c.name || c.sub) : ''; }
  get roles() { return rolesOf(this.claims, this.config.role_claim); }
  get isAdmin() { return this.roles.includes('admin'); }

  setToken(t) { this.storage.setItem(tokenKey, t); }
  signOut() { this.storage.removeItem(tokenKey); }

  /** signInDev mints a token for a development user from the dev issuer. */
  async signInDev(user) {
    const url = this.config.dev_token_url || `${this.config.issuer.replace(/\/$/, '')}/token`;
    // emulators/oidcdev: form values sub, name, email, roles, aud; answers {id_token}.
    const form = new URLSearchParams({ sub: user.name, name: user.name, email: `${user.name}@example.com` });
    if (user.role && user.role !== 'user') form.set('roles', user.role);
    if (this.config.client_id) form.set('aud', this.config.client_id);
    const res = await fetch(url, { method: 'POST', headers: { Accept: 'application/json' }, body: form });
    const text = await res.text();
    if (!res.ok) throw new Error(`dev sign-in as ${user.name}: ${res.status} ${text}`);
    let token = text.trim();
    try {
      const j = JSON.parse(text);
      token = j.id_token || j.access_token || j.token;
    } catch { /* plain-text token */ }
    if (!token) throw new Error(`dev sign-in as ${user.name}: no token in answer`);
    this.setToken(token);
  }

  /** beginOIDC redirects to the issuer's authorization endpoint. */
  async beginOIDC() {
    const disc = await discover(this.config.issuer);
    const verifier = randomString(48);
    const state = randomString(16);
    const nonce = randomString(16);
    const redirect = location.origin + location.pathname;
    this.storage.setItem(flowKey, JSON.stringify({ verifier, state, nonce, redirect }));
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: this.config.client_id,
      redirect_uri: redirect,
      scope: ['openid', ...(this.config.scopes ?? ['profile', 'email'])].join(' '),
      code_challenge: await pkceChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    location.assign(`${disc.authorization_endpoint}?${q}`);
  }

  /**
   * finishOIDC completes the flow when the page is loaded with ?code=&state=.
   * Returns true if it consumed a callback.
   */
  async finishOIDC() {
    const p = new URLSearchParams(location.search);
    if (!p.has('code') && !p.has('error')) return false;
    const flow = JSON.parse(this.storage.getItem(flowKey) ?? 'null');
    this.storage.removeItem(flowKey);
    history.replaceState(null, '', location.pathname);
    if (p.has('error')) throw new Error(`sign-in refused: ${p.get('error')} ${p.get('error_description') ?? ''}`);
    if (!flow || flow.state !== p.get('state')) throw new Error('sign-in: state mismatch; try again');
    const disc = await discover(this.config.issuer);
    const res = await fetch(disc.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: p.get('code'),
        redirect_uri: flow.redirect,
        client_id: this.config.client_id,
        code_verifier: flow.verifier,
      }),
    });
    const j = await res.json();
    if (!res.ok) throw new Error(`sign-in: token exchange: ${j.error ?? res.status}`);
    const c = decodeJWT(j.id_token ?? '');
    if (!c || c.nonce !== flow.nonce) throw new Error('sign-in: nonce mismatch');
    this.setToken(j.id_token);
    return true;
  }
}

async function discover(issuer) {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`OIDC discovery at ${issuer}: ${res.status}`);
  return res.json();
}
