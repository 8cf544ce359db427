package oidcdev

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
)

const (
	testClient   = "nodebatch"
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-extra"
	testRedirect = "http://127.0.0.1:51234/callback"
)

func challengeOf(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// noRedirect is an HTTP client that shows redirects instead of following them.
func noRedirect(srv *httptest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func authParams(edit func(url.Values)) url.Values {
	v := url.Values{
		"response_type": {"code"}, "client_id": {testClient}, "redirect_uri": {testRedirect},
		"scope": {"openid email profile"}, "state": {"st-1"}, "nonce": {"n-1"},
		"code_challenge": {challengeOf(testVerifier)}, "code_challenge_method": {"S256"},
	}
	if edit != nil {
		edit(v)
	}
	return v
}

// signInAs runs the browser's part of the flow with an HTTP client: the
// sign-in page, the user's pick, the redirect. It returns the redirect's query.
func signInAs(t *testing.T, i *Issuer, srv *httptest.Server, user string, params url.Values) url.Values {
	t.Helper()
	c := noRedirect(srv)
	resp, err := c.Get(i.URL() + "/authorize?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `data-user="`+user+`"`) {
		t.Fatalf("GET /authorize = %d, want 200 and a button for %s:\n%s", resp.StatusCode, user, page)
	}
	form := url.Values{}
	for k, v := range params {
		form[k] = v
	}
	form.Set("user", user)
	resp, err = c.PostForm(i.URL()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /authorize = %d, want 303", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != params.Get("redirect_uri") {
		t.Fatalf("redirected to %q, want %q", got, params.Get("redirect_uri"))
	}
	return loc.Query()
}

// post sends a token request and decodes either answer.
func post(t *testing.T, i *Issuer, srv *httptest.Server, form url.Values) (int, TokenResponse, TokenError) {
	t.Helper()
	resp, err := srv.Client().PostForm(i.URL()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tr TokenResponse
	var te TokenError
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatalf("POST /token: decode %s: %v", b, err)
		}
	} else if err := json.Unmarshal(b, &te); err != nil || te.Error == "" {
		t.Fatalf("POST /token = %d %s, want the OAuth2 error JSON", resp.StatusCode, b)
	}
	return resp.StatusCode, tr, te
}

func exchange(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
		"client_id": {testClient}, "code_verifier": {testVerifier}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {testClient}}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	i, srv := serve(t, "")
	if err := i.Configure(Options{TokenTTL: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	ctx := oidc.ClientContext(context.Background(), srv.Client())
	p, err := oidc.NewProvider(ctx, i.URL())
	if err != nil {
		t.Fatalf("oidc.NewProvider = %v", err)
	}
	var disc struct {
		Authorization string   `json:"authorization_endpoint"`
		Grants        []string `json:"grant_types_supported"`
		Methods       []string `json:"code_challenge_methods_supported"`
	}
	if err := p.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{i.URL() + "/authorize", []string{"authorization_code", "refresh_token"}, []string{"S256"}},
		[]any{disc.Authorization, disc.Grants, disc.Methods}); diff != "" {
		t.Errorf("discovery mismatch (-want +got):\n%s", diff)
	}

	q := signInAs(t, i, srv, "admin", authParams(nil))
	if q.Get("state") != "st-1" || q.Get("code") == "" {
		t.Fatalf("redirect query = %v, want state st-1 and a code", q)
	}
	status, tr, te := post(t, i, srv, exchange(q.Get("code")))
	if status != 200 {
		t.Fatalf("code exchange = %d %+v", status, te)
	}
	if tr.RefreshToken == "" || tr.AccessToken == "" || tr.ExpiresIn != 120 || tr.Scope != "openid email profile" {
		t.Errorf("code exchange = %+v, want access and refresh tokens, 120 s, the scope", tr)
	}
	v := p.Verifier(&oidc.Config{ClientID: testClient})
	tok, err := v.Verify(ctx, tr.IDToken)
	if err != nil {
		t.Fatalf("Verify(id_token) = %v", err)
	}
	var got struct {
		Sub, Email, Nonce string
		Roles             []string
	}
	if err := tok.Claims(&got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(struct {
		Sub, Email, Nonce string
		Roles             []string
	}{"admin", "admin@example.com", "n-1", []string{"admin"}}, got); diff != "" {
		t.Errorf("id_token claims (-want +got):\n%s", diff)
	}

	// The code is single use; presenting it again revokes what it gave.
	if status, _, te := post(t, i, srv, exchange(q.Get("code"))); status != 400 || te.Error != "invalid_grant" {
		t.Errorf("second exchange = %d %+v, want 400 invalid_grant", status, te)
	}
	if status, _, te := post(t, i, srv, refreshForm(tr.RefreshToken)); status != 400 || te.Error != "invalid_grant" {
		t.Errorf("refresh after code reuse = %d %+v, want 400 invalid_grant (revoked)", status, te)
	}
}

func TestRefreshRotates(t *testing.T) {
	i, srv := serve(t, "")
	q := signInAs(t, i, srv, "alice", authParams(nil))
	_, first, _ := post(t, i, srv, exchange(q.Get("code")))

	status, second, te := post(t, i, srv, refreshForm(first.RefreshToken))
	if status != 200 {
		t.Fatalf("refresh = %d %+v", status, te)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.IDToken == "" {
		t.Fatalf("refresh = %+v, want a new refresh token and an ID token", second)
	}
	ctx := oidc.ClientContext(context.Background(), srv.Client())
	p, _ := oidc.NewProvider(ctx, i.URL())
	if _, err := p.Verifier(&oidc.Config{ClientID: testClient}).Verify(ctx, second.IDToken); err != nil {
		t.Errorf("Verify(refreshed id_token) = %v", err)
	}
	status, third, _ := post(t, i, srv, refreshForm(second.RefreshToken))
	if status != 200 {
		t.Fatalf("second refresh = %d", status)
	}
	// Reusing a rotated token is refused and ends the session: the newest
	// token of the chain stops working too.
	if status, _, te := post(t, i, srv, refreshForm(first.RefreshToken)); status != 400 || te.Error != "invalid_grant" {
		t.Errorf("reused refresh token = %d %+v, want 400 invalid_grant", status, te)
	}
	if status, _, te := post(t, i, srv, refreshForm(third.RefreshToken)); status != 400 || te.Error != "invalid_grant" {
		t.Errorf("newest token after reuse = %d %+v, want 400 invalid_grant (family revoked)", status, te)
	}
}

func TestRefreshExpiredAndRevoked(t *testing.T) {
	i, srv := serve(t, "")
	if err := i.Configure(Options{RefreshTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	i.grants.mu.Lock()
	i.grants.now = func() time.Time { return now }
	i.grants.mu.Unlock()
	_, tr, _ := post(t, i, srv, exchange(signInAs(t, i, srv, "bob", authParams(nil)).Get("code")))
	_, other, _ := post(t, i, srv, exchange(signInAs(t, i, srv, "bob", authParams(nil)).Get("code")))
	i.grants.mu.Lock()
	i.grants.now = func() time.Time { return now.Add(time.Hour + time.Second) }
	i.grants.mu.Unlock()
	if status, _, te := post(t, i, srv, refreshForm(tr.RefreshToken)); status != 400 || te.Error != "invalid_grant" || !strings.Contains(te.Description, "expired") {
		t.Errorf("expired refresh token = %d %+v, want 400 invalid_grant (expired)", status, te)
	}
	i.grants.mu.Lock()
	i.grants.now = time.Now
	i.grants.mu.Unlock()
	i.RevokeRefreshTokens()
	if status, _, te := post(t, i, srv, refreshForm(other.RefreshToken)); status != 400 || te.Error != "invalid_grant" {
		t.Errorf("revoked refresh token = %d %+v, want 400 invalid_grant", status, te)
	}
}

func TestTokenGrantRefusals(t *testing.T) {
	i, srv := serve(t, "")
	code := func() string { return signInAs(t, i, srv, "alice", authParams(nil)).Get("code") }
	with := func(v url.Values, k, val string) url.Values { v.Set(k, val); return v }
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"unknown grant type", url.Values{"grant_type": {"password"}, "client_id": {testClient}}, 400, "unsupported_grant_type"},
		{"no client id", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, 401, "invalid_client"},
		{"unknown refresh token", refreshForm("nope"), 400, "invalid_grant"},
		{"no refresh token", refreshForm(""), 400, "invalid_request"},
		{"no verifier", with(exchange("c"), "code_verifier", ""), 400, "invalid_request"},
		{"short verifier", with(exchange("c"), "code_verifier", "abc"), 400, "invalid_request"},
		{"unknown code", exchange("nope"), 400, "invalid_grant"},
		{"wrong verifier", with(exchange(code()), "code_verifier", strings.Repeat("a", 43)), 400, "invalid_grant"},
		{"wrong redirect", with(exchange(code()), "redirect_uri", "http://127.0.0.1:1/other"), 400, "invalid_grant"},
		{"wrong client", with(exchange(code()), "client_id", "other"), 400, "invalid_grant"},
		{"repeated field", url.Values{"grant_type": {"refresh_token", "refresh_token"}, "client_id": {testClient}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, te := post(t, i, srv, tt.form)
			if status != tt.wantStatus || te.Error != tt.wantError {
				t.Errorf("POST /token = %d %+v, want %d %s", status, te, tt.wantStatus, tt.wantError)
			}
		})
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	i, srv := serve(t, "")
	if err := i.Configure(Options{RedirectOrigins: []string{"https://relay.example"}}); err != nil {
		t.Fatal(err)
	}
	c := noRedirect(srv)
	tests := []struct {
		name       string
		params     url.Values
		wantStatus int
		wantError  string // in the redirect; empty: shown on the page
		wantText   string // on the page
	}{
		{"ok", authParams(nil), 200, "", "Sign in as alice"},
		{"relay origin", authParams(func(v url.Values) { v.Set("redirect_uri", "https://relay.example/") }), 200, "", "Sign in as bob"},
		{"foreign redirect", authParams(func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }), 400, "", "redirect_uri"},
		{"relay origin other port", authParams(func(v url.Values) { v.Set("redirect_uri", "https://relay.example:444/") }), 400, "", "redirect_uri"},
		{"no redirect", authParams(func(v url.Values) { v.Del("redirect_uri") }), 400, "", "redirect_uri is required"},
		{"fragment", authParams(func(v url.Values) { v.Set("redirect_uri", testRedirect+"#x") }), 400, "", "fragment"},
		{"no client", authParams(func(v url.Values) { v.Del("client_id") }), 400, "", "client_id"},
		{"twice", authParams(func(v url.Values) { v.Add("redirect_uri", testRedirect) }), 400, "", "more than once"},
		{"token response", authParams(func(v url.Values) { v.Set("response_type", "token") }), 303, "unsupported_response_type", ""},
		{"plain PKCE", authParams(func(v url.Values) { v.Set("code_challenge_method", "plain") }), 303, "invalid_request", ""},
		{"no PKCE", authParams(func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }), 303, "invalid_request", ""},
		{"no openid", authParams(func(v url.Values) { v.Set("scope", "email") }), 303, "invalid_scope", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Get(i.URL() + "/authorize?" + tt.params.Encode())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET /authorize = %d, want %d:\n%s", resp.StatusCode, tt.wantStatus, b)
			}
			if tt.wantError != "" {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if q := loc.Query(); q.Get("error") != tt.wantError || q.Get("state") != "st-1" || !strings.HasPrefix(loc.String(), testRedirect) {
					t.Errorf("redirect = %s, want %s?error=%s&state=st-1", loc, testRedirect, tt.wantError)
				}
				return
			}
			if !strings.Contains(string(b), tt.wantText) {
				t.Errorf("page does not say %q:\n%s", tt.wantText, b)
			}
		})
	}

	// Picking someone who is not on the list signs nobody in.
	form := authParams(nil)
	form.Set("user", "mallory")
	resp, err := c.PostForm(i.URL()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("POST /authorize user=mallory = %d (Location %q), want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Cancel goes back with access_denied.
	form.Set("cancel", "1")
	resp, err = c.PostForm(i.URL()+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Errorf("cancel redirect = %q, want error=access_denied", resp.Header.Get("Location"))
	}
}

func TestConfigureRefusals(t *testing.T) {
	i, err := New("http://127.0.0.1:8093")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{Users: []User{{Name: "a b"}}},
		{Users: []User{{Name: "a"}, {Name: "a"}}},
		{RedirectOrigins: []string{"relay.example"}},
		{RedirectOrigins: []string{"https://relay.example/path"}},
		{TokenTTL: time.Millisecond},
		{RefreshTTL: -time.Second},
	} {
		if err := i.Configure(o); err == nil {
			t.Errorf("Configure(%+v) = nil error, want an error", o)
		}
	}
	if diff := cmp.Diff(DefaultUsers, i.Users()); diff != "" {
		t.Errorf("users after refused Configure (-want +got):\n%s", diff)
	}
}

// FuzzAuthorize feeds any query string and form to the authorization
// endpoint: it answers a page or a redirect, never a crash, and it redirects
// only to an allowed address.
func FuzzAuthorize(f *testing.F) {
	f.Add(authParams(nil).Encode(), "user=alice")
	f.Add(authParams(func(v url.Values) { v.Set("redirect_uri", "http://[::1]:9/x?a=b") }).Encode(), "")
	f.Add("redirect_uri=http://evil.example&client_id=x", "")
	f.Add("%zz&&=", "user=%")
	i, err := New("http://127.0.0.1:8093")
	if err != nil {
		f.Fatal(err)
	}
	h := i.Handler()
	f.Fuzz(func(t *testing.T, query, form string) {
		for _, method := range []string{"GET", "POST"} {
			req := httptest.NewRequest(method, "http://127.0.0.1:8093/authorize", strings.NewReader(query+"&"+form))
			req.URL.RawQuery = query
			if method == "POST" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case 200, 400:
			case http.StatusSeeOther:
				if err := i.grants.redirectAllowed(strings.SplitN(rec.Header().Get("Location"), "?", 2)[0]); err != nil {
					t.Fatalf("%s /authorize?%s redirected to %q: %v", method, query, rec.Header().Get("Location"), err)
				}
			default:
				t.Fatalf("%s /authorize?%s = %d", method, query, rec.Code)
			}
		}
	})
}

// FuzzToken feeds any form to the token endpoint: 200 only for a real
// grant, otherwise a 4xx with the OAuth2 error JSON.
func FuzzToken(f *testing.F) {
	f.Add("grant_type=refresh_token&refresh_token=x&client_id=nodebatch")
	f.Add(exchange("abc").Encode())
	f.Add("grant_type=authorization_code&code=&client_id=%00")
	f.Add("grant_type=password&grant_type=x")
	i, err := New("http://127.0.0.1:8093")
	if err != nil {
		f.Fatal(err)
	}
	h := i.Handler()
	f.Fuzz(func(t *testing.T, form string) {
		if !strings.Contains(form, "grant_type") {
			form += "&grant_type=refresh_token"
		}
		req := httptest.NewRequest("POST", "http://127.0.0.1:8093/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 200 {
			t.Fatalf("POST /token %q = 200 with no grant issued", form)
		}
		if rec.Code != 400 && rec.Code != 401 || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("POST /token %q = %d %s, want a 4xx with a JSON error", form, rec.Code, rec.Body)
		}
	})
}

// FuzzVerifyPKCE: only the verifier whose S256 is the challenge passes.
func FuzzVerifyPKCE(f *testing.F) {
	f.Add(testVerifier, challengeOf(testVerifier))
	f.Add("short", "x")
	f.Fuzz(func(t *testing.T, verifier, challenge string) {
		if verifyPKCE(verifier, challenge) && challengeOf(verifier) != challenge {
			t.Fatalf("verifyPKCE(%q, %q) = true for a wrong challenge", verifier, challenge)
		}
	})
}
