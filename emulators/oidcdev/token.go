package oidcdev

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// tokenRequest is a parsed grant request (RFC 6749 §4.1.3 and §6).
type tokenRequest struct {
	GrantType    string
	ClientID     string
	Code         string
	RedirectURI  string
	Verifier     string
	RefreshToken string
}

// parseTokenRequest checks a grant request's form. A public client names
// itself with client_id in the form or as the user of HTTP Basic
// authentication (its secret is ignored: the development issuer has none).
func parseTokenRequest(form url.Values, basicUser string) (tokenRequest, error) {
	bad := func(format string, a ...any) error {
		return &errGrant{"invalid_request", fmt.Sprintf(format, a...)}
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return tokenRequest{}, bad("%s given more than once", k)
		}
	}
	t := tokenRequest{
		GrantType: form.Get("grant_type"), ClientID: form.Get("client_id"),
		Code: form.Get("code"), RedirectURI: form.Get("redirect_uri"),
		Verifier: form.Get("code_verifier"), RefreshToken: form.Get("refresh_token"),
	}
	if basicUser != "" {
		if t.ClientID != "" && t.ClientID != basicUser {
			return tokenRequest{}, &errGrant{"invalid_client", "client_id in the form and in Basic authentication differ"}
		}
		t.ClientID = basicUser
	}
	if !validClientID(t.ClientID) {
		return tokenRequest{}, &errGrant{"invalid_client", "client_id is required (1-256 printable ASCII characters)"}
	}
	switch t.GrantType {
	case "authorization_code":
		switch {
		case t.Code == "":
			return tokenRequest{}, bad("code is required")
		case t.RedirectURI == "":
			return tokenRequest{}, bad("redirect_uri is required")
		case t.Verifier == "":
			return tokenRequest{}, bad("code_verifier is required (PKCE)")
		case len(t.Verifier) < 43 || len(t.Verifier) > 128 || !validPKCE(t.Verifier):
			return tokenRequest{}, bad("code_verifier: want 43-128 unreserved characters (RFC 7636 §4.1)")
		}
	case "refresh_token":
		if t.RefreshToken == "" {
			return tokenRequest{}, bad("refresh_token is required")
		}
	default:
		return tokenRequest{}, &errGrant{"unsupported_grant_type", fmt.Sprintf("grant_type %q: want authorization_code or refresh_token", t.GrantType)}
	}
	return t, nil
}

// serveGrant answers the authorization_code and refresh_token grants.
func (i *Issuer) serveGrant(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	basic, _, _ := r.BasicAuth()
	t, err := parseTokenRequest(r.PostForm, basic)
	if err == nil {
		var resp TokenResponse
		if resp, err = i.grant(t); err == nil {
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	var ge *errGrant
	if !errors.As(err, &ge) {
		writeJSON(w, http.StatusInternalServerError, TokenError{Error: "server_error", Description: err.Error()})
		return
	}
	status := http.StatusBadRequest
	if ge.code == "invalid_client" {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="oidcdev"`)
	}
	writeJSON(w, status, TokenError{Error: ge.code, Description: ge.description})
}

func (i *Issuer) grant(t tokenRequest) (TokenResponse, error) {
	var s session
	nonce := ""
	switch t.GrantType {
	case "authorization_code":
		c, err := i.grants.redeemCode(t.Code, t.ClientID, t.RedirectURI, t.Verifier)
		if err != nil {
			return TokenResponse{}, err
		}
		s, nonce = c.session, c.nonce
	default:
		var err error
		if s, err = i.grants.rotate(t.RefreshToken, t.ClientID); err != nil {
			return TokenResponse{}, err
		}
	}
	ttl, _ := i.grants.ttls()
	c := Claims{Subject: s.user.Name, Name: s.user.Name, Email: s.user.Name + "@example.com", Groups: s.user.Groups,
		Audience: []string{s.clientID}, Nonce: nonce, TTL: ttl}
	if s.user.Role != "" && s.user.Role != "user" {
		c.Roles = []string{s.user.Role}
	}
	tok, err := i.Mint(c)
	if err != nil {
		return TokenResponse{}, fmt.Errorf("grant %s: %w", t.GrantType, err)
	}
	return TokenResponse{
		IDToken: tok, AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second),
		RefreshToken: i.grants.newRefresh(s), Scope: s.scope,
	}, nil
}
