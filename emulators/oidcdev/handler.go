package oidcdev

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenResponse is the JSON body of POST /token.
type TokenResponse struct {
	IDToken   string `json:"id_token"`
	TokenType string `json:"token_type"` // always "Bearer"
	ExpiresIn int64  `json:"expires_in"` // seconds
}

// Handler serves the issuer under the path of its URL:
//
//	GET  {path}/.well-known/openid-configuration  discovery document
//	GET  {path}/jwks                               public keys
//	POST {path}/token                              mint a token (development only)
//
// POST /token takes form or query values sub (required), email, name,
// roles, groups and aud (repeated or comma-separated; aud required) and ttl (a Go
// duration, default 1h, at most 24h). Browsers on loopback origins may call
// it (the UI's development sign-in).
func (i *Issuer) Handler() http.Handler {
	prefix := ""
	if u, err := url.Parse(i.url); err == nil {
		prefix = strings.TrimSuffix(u.Path, "/")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET "+prefix+"/jwks", i.serveJWKS)
	mux.HandleFunc("POST "+prefix+"/token", i.serveToken)
	mux.HandleFunc("OPTIONS "+prefix+"/token", i.serveToken)
	return mux
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.url + "/jwks",
		"token_endpoint":                        i.url + "/token",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "email", "email_verified", "name", "roles", "groups"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, i.JWKS())
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		if !loopbackOrigin(o) {
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
		writeJSON(w, http.StatusBadRequest, errorBody("bad form: "+err.Error()))
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
