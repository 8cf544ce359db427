package oidcdev

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// authRequest is a parsed authorization request (RFC 6749 §4.1.1 with
// PKCE, RFC 7636).
type authRequest struct {
	ClientID    string
	RedirectURI string
	Scope       string
	State       string
	Nonce       string
	Challenge   string
	LoginHint   string
}

// authError is a refused authorization request. Redirect says whether the
// error may go back to the client (its redirect URI was checked first);
// otherwise the user sees it (RFC 6749 §4.1.2.1).
type authError struct {
	code, description string
	redirect          bool
}

func (e *authError) Error() string { return e.code + ": " + e.description }

// parseAuthRequest checks an authorization request. The client id and
// redirect URI are checked before anything else, so an error about them is
// never sent to an unchecked address.
func (g *grants) parseAuthRequest(v url.Values) (authRequest, *authError) {
	user := func(format string, a ...any) *authError {
		return &authError{code: "invalid_request", description: fmt.Sprintf(format, a...)}
	}
	back := func(code, format string, a ...any) *authError {
		return &authError{code: code, description: fmt.Sprintf(format, a...), redirect: true}
	}
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "login_hint"} {
		if len(v[k]) > 1 {
			return authRequest{}, user("%s given more than once", k)
		}
	}
	r := authRequest{
		ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), Scope: v.Get("scope"),
		State: v.Get("state"), Nonce: v.Get("nonce"), Challenge: v.Get("code_challenge"), LoginHint: v.Get("login_hint"),
	}
	if !validClientID(r.ClientID) {
		return authRequest{}, user("client_id %q: want 1-256 printable ASCII characters", r.ClientID)
	}
	if err := g.redirectAllowed(r.RedirectURI); err != nil {
		return authRequest{}, user("%v", err)
	}
	if rt := v.Get("response_type"); rt != "code" {
		return r, back("unsupported_response_type", "response_type %q: only \"code\" is supported", rt)
	}
	if !slices.Contains(strings.Fields(r.Scope), "openid") {
		return r, back("invalid_scope", "scope %q: must include \"openid\"", r.Scope)
	}
	if m := v.Get("code_challenge_method"); m != "S256" {
		return r, back("invalid_request", "code_challenge_method %q: only \"S256\" is supported (PKCE is required)", m)
	}
	if !validPKCE(r.Challenge) || len(r.Challenge) != 43 {
		return r, back("invalid_request", "code_challenge: want 43 base64url characters (SHA-256 of the verifier)")
	}
	for k, s := range map[string]string{"scope": r.Scope, "state": r.State, "nonce": r.Nonce, "login_hint": r.LoginHint} {
		if len(s) > 512 {
			return r, back("invalid_request", "%s is longer than 512 bytes", k)
		}
	}
	return r, nil
}

// redirectError sends an authorization error back to the client.
func redirectError(w http.ResponseWriter, r *http.Request, req authRequest, e *authError) {
	http.Redirect(w, r, withQuery(req.RedirectURI, url.Values{"error": {e.code}, "error_description": {e.description}, "state": {req.State}}), http.StatusSeeOther)
}

// withQuery adds q to uri's query (uri was checked by redirectAllowed).
func withQuery(uri string, q url.Values) string {
	u, _ := url.Parse(uri)
	v := u.Query()
	for k, vs := range q {
		if len(vs) == 1 && vs[0] == "" && k == "state" {
			continue
		}
		v[k] = vs
	}
	u.RawQuery = v.Encode()
	return u.String()
}

// serveAuthorize shows the sign-in page (GET) and, when a user is picked
// (POST), redirects back with a code.
func (i *Issuer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		i.authPage(w, http.StatusBadRequest, authRequest{}, "bad request: "+err.Error())
		return
	}
	v := r.URL.Query()
	if r.Method == http.MethodPost {
		v = r.PostForm
	}
	req, aerr := i.grants.parseAuthRequest(v)
	if aerr != nil {
		if aerr.redirect {
			redirectError(w, r, req, aerr)
			return
		}
		i.authPage(w, http.StatusBadRequest, authRequest{}, "This sign-in request is refused: "+aerr.description)
		return
	}
	if r.Method == http.MethodGet {
		i.authPage(w, http.StatusOK, req, "")
		return
	}
	if v.Get("cancel") != "" {
		redirectError(w, r, req, &authError{code: "access_denied", description: "the user cancelled the sign-in"})
		return
	}
	name := v.Get("user")
	u, ok := i.grants.user(name)
	if !ok {
		i.authPage(w, http.StatusBadRequest, req, fmt.Sprintf("user %q is not a development user of this issuer; pick one below", name))
		return
	}
	code := i.grants.newCode(authCode{
		session:     session{user: u, clientID: req.ClientID, scope: req.Scope},
		redirectURI: req.RedirectURI, challenge: req.Challenge, nonce: req.Nonce,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, withQuery(req.RedirectURI, url.Values{"code": {code}, "state": {req.State}}), http.StatusSeeOther)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · nodebatch development issuer</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}
h1{font-size:1.4rem}.muted{color:#57606a}.error{color:#a40e26;font-weight:600}
ul{list-style:none;padding:0}li{margin:.5rem 0}
button{font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer;min-width:12rem;text-align:left}
button.secondary{background:#fff;color:#1b1f24;border-color:#8c959f}
code{word-break:break-all}
</style></head><body>
<h1>Sign in to nodebatch</h1>
<p class="muted">Local development issuer: it signs in anyone who picks a name. Never deploy it.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Request.ClientID}}
<p>Application <code>{{.Request.ClientID}}</code> will receive your identity at <code>{{.Origin}}</code>.</p>
<form method="post">
<input type="hidden" name="response_type" value="code">
<input type="hidden" name="client_id" value="{{.Request.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.Request.RedirectURI}}">
<input type="hidden" name="scope" value="{{.Request.Scope}}">
<input type="hidden" name="state" value="{{.Request.State}}">
<input type="hidden" name="nonce" value="{{.Request.Nonce}}">
<input type="hidden" name="code_challenge" value="{{.Request.Challenge}}">
<input type="hidden" name="code_challenge_method" value="S256">
<ul aria-label="Development users">
{{range .Users}}<li><button type="submit" name="user" value="{{.Name}}" data-user="{{.Name}}"{{if eq .Name $.Request.LoginHint}} autofocus{{end}}>Sign in as {{.Name}}{{if and .Role (ne .Role "user")}} ({{.Role}}){{end}}</button></li>
{{end}}</ul>
<p><button type="submit" name="cancel" value="1" class="secondary">Cancel</button></p>
</form>
{{end}}
</body></html>
`))

func (i *Issuer) authPage(w http.ResponseWriter, status int, req authRequest, msg string) {
	origin := ""
	if u, err := url.Parse(req.RedirectURI); err == nil && req.RedirectURI != "" {
		origin = u.Scheme + "://" + u.Host
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, map[string]any{"Request": req, "Users": i.Users(), "Error": msg, "Origin": origin}) // the browser went away
}

// validPKCE says whether s is made of the unreserved characters of RFC
// 7636 §4.1 (verifiers and S256 challenges).
func validPKCE(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return s != ""
}

// verifyPKCE checks BASE64URL(SHA256(verifier)) == challenge (S256).
func verifyPKCE(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || !validPKCE(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

func validClientID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// randomToken is an unguessable opaque code or refresh token.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
