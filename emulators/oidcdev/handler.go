package oidcdev

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenResponse is the JSON body of POST /token. The grants
// (authorization_code, refresh_token) add the access and refresh tokens and
// the scope; a development mint has none of them.
type TokenResponse struct {
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`              // always "Bearer"
	ExpiresIn    int64  `json:"expires_in"`              // seconds
	AccessToken  string `json:"access_token,omitempty"`  // the ID token again: the API takes ID tokens as bearers
	RefreshToken string `json:"refresh_token,omitempty"` // single use: each refresh answers a new one
	Scope        string `json:"scope,omitempty"`
}

// TokenError is the JSON body of a refused grant (RFC 6749 §5.2).
type TokenError struct {
	Error       string `json:"error"` // invalid_request, invalid_grant, unsupported_grant_type, invalid_client
	Description string `json:"error_description,omitempty"`
}

// Handler serves the issuer under the path of its URL:
//
//	GET  {path}/.well-known/openid-configuration  discovery document
//	GET  {path}/jwks                               public keys
//	GET  {path}/authorize                          sign-in page (authorization-code flow)
//	POST {path}/authorize                          the user picked: redirect with a code
//	POST {path}/token                              grants, or mint a token (development only)
//
// /authorize takes the OAuth 2.0 authorization request with PKCE S256
// (response_type=code, client_id, redirect_uri on a loopback host or a
// configured origin, scope with openid, state, nonce, code_challenge,
// code_challenge_method=S256); its page lists the issuer's users.
//
// POST /token with grant_type=authorization_code (code, redirect_uri,
// client_id, code_verifier) or grant_type=refresh_token (refresh_token,
// client_id) answers ID, access and refresh tokens; refresh tokens rotate,
// and a refused grant answers the OAuth 2.0 error JSON (TokenError).
// Without grant_type it mints: form or query values sub (required), email,
// name, roles, groups and aud (repeated or comma-separated; aud required)
// and ttl (a Go duration, default 1h, at most 24h). Browsers on loopback
// origins (and the configured origins) may call it.
func (i *Issuer) Handler() http.Handler {
	prefix := ""
	if u, err := url.Parse(i.url); err == nil {
		prefix = strings.TrimSuffix(u.Path, "/")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET "+prefix+"/jwks", i.serveJWKS)
	mux.HandleFunc("GET "+prefix+"/authorize", i.serveAuthorize)
	mux.HandleFunc("POST "+prefix+"/authorize", i.serveAuthorize)
	mux.HandleFunc("POST "+prefix+"/token", i.serveToken)
	mux.HandleFunc("OPTIONS "+prefix+"/token", i.serveToken)
	return mux
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.url + "/jwks",
		"authorization_endpoint":                i.url + "/authorize",
		"token_endpoint":                        i.url + "/token",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "email", "email_verified", "name", "roles", "groups"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, i.JWKS())
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		if !i.grants.originAllowed(o) {
			writeJSON(w, http.StatusForbidden, errorBody("origin not allowed: the development issuer only serves loopback origins"))
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		if r.URL.Query().Has("grant_type") || r.PostForm.Has("grant_type") {
			writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: "bad form: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody("bad form: "+err.Error()))
		return
	}
	if r.Form.Has("grant_type") {
		i.serveGrant(w, r)
		return
	}
	c := Claims{
		Subject:  r.Form.Get("sub"),
		Email:    r.Form.Get("email"),
		Name:     r.Form.Get("name"),
		Roles:    list(r.Form["roles"]),
		Groups:   list(r.Form["groups"]),
		Audience: list(r.Form["aud"]),
	}
	if s := r.Form.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("bad ttl: "+err.Error()))
			return
		}
		c.TTL = d
	}
	tok, err := i.Mint(c)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, TokenResponse{IDToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second)})
}

// list flattens repeated and comma-separated values, dropping empties.
func list(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func errorBody(msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": "invalid_request", "message": msg}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
