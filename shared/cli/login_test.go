package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/shared/auth"
)

// loginFixture is the development issuer and a stand-in for the relay: it
// serves /config.json (issuer and client id, as the relay does) and GET
// /v1/batches/{id} behind the real token verifier, answering who called.
type loginFixture struct {
	issuer *oidcdev.Issuer
	iss    *httptest.Server
	relay  *httptest.Server
	home   string

	// refreshes counts the refresh-token redemptions the issuer was asked
	// for (granted or refused); each waits refreshDelay first, which
	// widens the window in which a racing process reads the same token.
	refreshes    atomic.Int64
	refreshDelay atomic.Int64 // a time.Duration
}

func newLoginFixture(t *testing.T) *loginFixture {
	t.Helper()
	f := &loginFixture{home: t.TempDir()}
	imux := http.NewServeMux()
	f.iss = httptest.NewServer(imux)
	t.Cleanup(f.iss.Close)
	var err error
	if f.issuer, err = oidcdev.New(f.iss.URL); err != nil {
		t.Fatal(err)
	}
	ih := f.issuer.Handler()
	imux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" {
			f.refreshes.Add(1)
			time.Sleep(time.Duration(f.refreshDelay.Load()))
		}
		ih.ServeHTTP(w, r)
	}))
	v, err := auth.NewVerifier(t.Context(), auth.Config{Issuers: []auth.IssuerConfig{{URL: f.iss.URL, Audience: "nodebatch"}}})
	if err != nil {
		t.Fatalf("auth.NewVerifier: %v", err)
	}
	rmux := http.NewServeMux()
	rmux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": f.iss.URL, "client_id": "nodebatch"})
	})
	rmux.Handle("GET /v1/batches/{id}", auth.Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"batch_id": r.PathValue("id"), "owner": p.Subject, "state": "succeeded", "total": 0})
	})))
	f.relay = httptest.NewServer(rmux)
	t.Cleanup(f.relay.Close)
	return f
}

func (f *loginFixture) env(extra map[string]string, now func() time.Time) (Env, *syncBuffer, *syncBuffer) {
	out, errb := newSyncBuffer(), newSyncBuffer()
	vars := map[string]string{"XDG_CONFIG_HOME": f.home, "NODEBATCH_URL": f.relay.URL}
	for k, v := range extra {
		vars[k] = v
	}
	return Env{Stdout: out, Stderr: errb, Getenv: func(k string) string { return vars[k] }, Now: now}, out, errb
}

// syncBuffer is a bytes.Buffer the command writes while the test reads;
// written is signalled after each write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		select {
		case s.written <- struct{}{}:
		default:
		}
	}()
	return s.b.Write(p)
}

// authURL waits until the command has printed the sign-in URL.
func (s *syncBuffer) authURL(t *testing.T, done <-chan int) string {
	t.Helper()
	for {
		if m := authURLPattern.FindStringSubmatch(s.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("login exited %d before printing a sign-in URL; stderr:\n%s", code, s)
		case <-s.written:
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var authURLPattern = regexp.MustCompile(`(http://\S+/authorize\?\S+)`)

// browse is the browser's part of the sign-in, done by an HTTP client: it
// waits for the URL the command prints, opens the issuer's sign-in page,
// picks user, and follows the redirect to the command's loopback listener.
func browse(t *testing.T, stderr *syncBuffer, done <-chan int, user string) {
	t.Helper()
	authURL := stderr.authURL(t, done)
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `data-user="`+user+`"`) {
		t.Fatalf("sign-in page has no button for %s:\n%s", user, page)
	}
	form := u.Query()
	form.Set("user", user)
	resp, err = http.PostForm(u.Scheme+"://"+u.Host+u.Path, form) // follows the 303 to the loopback listener
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Signed in to nodebatch") {
		t.Fatalf("redirect to the CLI = %d %s", resp.StatusCode, body)
	}
}

func (f *loginFixture) login(t *testing.T, user string, args ...string) {
	t.Helper()
	env, out, errb := f.env(nil, nil)
	done := make(chan int, 1)
	go func() { done <- Run(context.Background(), append([]string{"login"}, args...), env) }()
	browse(t, errb, done, user)
	if code := <-done; code != ExitOK {
		t.Fatalf("login = exit %d; stderr:\n%s", code, errb)
	}
	if !strings.Contains(out.String(), "Signed in as "+user+"@example.com") {
		t.Errorf("login printed %q, want it to name %s", out, user)
	}
}

func (f *loginFixture) contexts(t *testing.T) *Contexts {
	t.Helper()
	c, err := loadContexts(filepath.Join(f.home, contextsFile))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// getOwner runs `get b1 -o json` and answers the owner the API saw.
func (f *loginFixture) getOwner(t *testing.T, extra map[string]string, now func() time.Time) (string, int, string) {
	t.Helper()
	env, out, errb := f.env(extra, now)
	code := Run(context.Background(), []string{"get", "b1", "-o", "json"}, env)
	var got struct{ Owner string }
	_ = json.Unmarshal([]byte(out.String()), &got)
	return got.Owner, code, errb.String()
}

func TestLoginEndToEnd(t *testing.T) {
	f := newLoginFixture(t)
	f.login(t, "alice")

	path := filepath.Join(f.home, contextsFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("contexts file mode = %v, want 0600", st.Mode().Perm())
	}
	cs := f.contexts(t)
	x := cs.Contexts["default"]
	if cs.Current != "default" || x == nil || x.URL != f.relay.URL || x.Issuer != f.iss.URL || x.ClientID != "nodebatch" || x.Token == nil || x.Token.RefreshToken == "" {
		t.Fatalf("contexts after login = %+v (default: %+v), want a current context with the relay, issuer, client id and tokens", cs, x)
	}
	first := *x.Token

	if owner, code, errs := f.getOwner(t, nil, nil); code != ExitOK || owner != "alice@example.com" {
		t.Fatalf("get with the context = exit %d, owner %q; stderr:\n%s", code, owner, errs)
	}
	if got := f.contexts(t).Contexts["default"].Token.RefreshToken; got != first.RefreshToken {
		t.Errorf("a valid ID token was renewed anyway (refresh token changed)")
	}

	// An hour and a half later the ID token has expired: the token source
	// renews it with the refresh token, which rotates, and saves both.
	later := func() time.Time { return time.Now().Add(90 * time.Minute) }
	if owner, code, errs := f.getOwner(t, nil, later); code != ExitOK || owner != "alice@example.com" {
		t.Fatalf("get after expiry = exit %d, owner %q; stderr:\n%s", code, owner, errs)
	}
	second := *f.contexts(t).Contexts["default"].Token
	if second.RefreshToken == first.RefreshToken || second.IDToken == first.IDToken {
		t.Errorf("after renewal the tokens did not change: refresh %v, id %v", second.RefreshToken != first.RefreshToken, second.IDToken != first.IDToken)
	}

	// NODEBATCH_TOKEN wins over the context.
	bob, err := f.issuer.Mint(oidcdev.Claims{Subject: "bob", Email: "bob@example.com", Audience: []string{"nodebatch"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, code, _ := f.getOwner(t, map[string]string{"NODEBATCH_TOKEN": bob}, later); code != ExitOK || owner != "bob@example.com" {
		t.Errorf("get with NODEBATCH_TOKEN = exit %d, owner %q, want bob", code, owner)
	}

	// The issuer ends the session: renewal is refused, exit 4, and the
	// message says to log in again.
	f.issuer.RevokeRefreshTokens()
	if _, code, errs := f.getOwner(t, nil, later); code != ExitUnauthorized || !strings.Contains(errs, "kubectl nodebatch login") {
		t.Errorf("get after the session ended = exit %d, stderr %q; want %d and a hint to log in", code, errs, ExitUnauthorized)
	}

	// A second context; NODEBATCH_CONTEXT picks one, --list shows both.
	f.login(t, "bob", "--context-name", "other")
	if owner, _, _ := f.getOwner(t, nil, nil); owner != "bob@example.com" {
		t.Errorf("current context after the second login: owner %q, want bob", owner)
	}
	env, out, _ := f.env(map[string]string{"NODEBATCH_CONTEXT": "default"}, nil)
	if code := Run(context.Background(), []string{"login", "--list"}, env); code != ExitOK {
		t.Fatalf("login --list = exit %d", code)
	}
	if s := out.String(); !regexp.MustCompile(`(?m)^\*\s+default\s`).MatchString(s) || !strings.Contains(s, "bob@example.com") {
		t.Errorf("login --list with NODEBATCH_CONTEXT=default:\n%s\nwant default marked and bob listed", s)
	}
	for _, tok := range []string{first.IDToken, first.RefreshToken, second.RefreshToken} {
		if strings.Contains(out.String(), tok) {
			t.Errorf("login --list printed a token")
		}
	}
}

func TestLoginRefusals(t *testing.T) {
	f := newLoginFixture(t)
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"not loopback", []string{"--listen", "0.0.0.0:0"}, ExitUsage},
		{"bad context name", []string{"--context-name", "a/b"}, ExitUsage},
		{"argument", []string{"extra"}, ExitUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, _, errb := f.env(nil, nil)
			if code := Run(context.Background(), append([]string{"login"}, tt.args...), env); code != tt.want {
				t.Errorf("login %v = exit %d, want %d; stderr %s", tt.args, code, tt.want, errb)
			}
		})
	}
	// An answer from the issuer with an error ends the login with exit 4.
	env, _, errb := f.env(nil, nil)
	done := make(chan int, 1)
	go func() { done <- Run(context.Background(), []string{"login"}, env) }()
	u, _ := url.Parse(errb.authURL(t, done))
	form := u.Query()
	form.Set("cancel", "1")
	resp, err := http.PostForm(u.Scheme+"://"+u.Host+u.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := <-done; code != ExitUnauthorized || !strings.Contains(errb.String(), "access_denied") {
		t.Errorf("cancelled login = exit %d, stderr %q; want %d naming access_denied", code, errb, ExitUnauthorized)
	}
	if _, err := os.Stat(filepath.Join(f.home, contextsFile)); err == nil {
		t.Errorf("a failed login wrote the contexts file")
	}
}

func TestParseContexts(t *testing.T) {
	ok := `{"current_context":"a","contexts":{"a":{"nodebatch_url":"http://127.0.0.1:8090","issuer":"http://127.0.0.1:8093","client_id":"nodebatch"}}}`
	if _, err := parseContexts([]byte(ok)); err != nil {
		t.Errorf("parseContexts(valid) = %v", err)
	}
	for _, bad := range []string{
		`{`,
		`{"current_context":"missing","contexts":{}}`,
		`{"contexts":{"a b":{"nodebatch_url":"http://x","issuer":"http://y","client_id":"c"}}}`,
		`{"contexts":{"a":null}}`,
		`{"contexts":{"a":{"nodebatch_url":"ftp://x","issuer":"http://y","client_id":"c"}}}`,
		`{"contexts":{"a":{"nodebatch_url":"http://x","issuer":"http://y","client_id":""}}}`,
	} {
		if _, err := parseContexts([]byte(bad)); err == nil {
			t.Errorf("parseContexts(%s) = nil error, want an error", bad)
		}
	}
}

// FuzzParseContexts: any bytes in the contexts file give a checked value
// or an error, never a crash, and a value survives a save and load.
func FuzzParseContexts(f *testing.F) {
	f.Add([]byte(`{"current_context":"a","contexts":{"a":{"nodebatch_url":"http://127.0.0.1:8090","issuer":"http://127.0.0.1:8093","client_id":"nodebatch","tokens":{"id_token":"x","expiry":"2026-01-01T00:00:00Z"}}}}`))
	f.Add([]byte(`{"contexts":{"":{}}}`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseContexts(b)
		if err != nil {
			return
		}
		path := filepath.Join(dir, "contexts.json")
		if err := c.save(path); err != nil {
			t.Fatalf("save(parsed) = %v", err)
		}
		if _, err := loadContexts(path); err != nil {
			t.Fatalf("load(saved) = %v", err)
		}
	})
}
