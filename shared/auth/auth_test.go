package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
)

const (
	userAud  = "nodebatch"
	schedSA  = "scheduler@proj.iam.gserviceaccount.com"
	otherSA  = "intruder@proj.iam.gserviceaccount.com"
	fnTarget = "https://batch-abc.a.run.app"
)

// fixture is a real issuer set on an httptest server: users at /, the
// Google stand-in at /google, an unconfigured issuer at /other.
type fixture struct {
	srv                  *httptest.Server
	users, google, other *oidcdev.Issuer
	jwksHits             atomic.Int64 // GETs of the users' /jwks
	logs                 *syncBuffer
	v                    *Verifier
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{logs: newSyncBuffer()}
	mux := http.NewServeMux()
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	var err error
	if f.users, err = oidcdev.New(f.srv.URL); err != nil {
		t.Fatal(err)
	}
	if f.google, err = oidcdev.New(f.srv.URL + "/google"); err != nil {
		t.Fatal(err)
	}
	if f.other, err = oidcdev.New(f.srv.URL + "/other"); err != nil {
		t.Fatal(err)
	}
	uh := f.users.Handler()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			f.jwksHits.Add(1)
		}
		uh.ServeHTTP(w, r)
	}))
	mux.Handle("/google/", f.google.Handler())
	mux.Handle("/other/", f.other.Handler())
	f.v, err = NewVerifier(context.Background(), Config{
		Issuers:    []IssuerConfig{{URL: f.users.URL(), Audience: userAud}},
		Scheduler:  &SchedulerConfig{IssuerURL: f.google.URL(), Audience: fnTarget, Allowlist: []string{"Scheduler@proj.iam.gserviceaccount.com"}},
		HTTPClient: f.srv.Client(),
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("NewVerifier() = %v", err)
	}
	return f
}

func mint(t testing.TB, i *oidcdev.Issuer, c oidcdev.Claims) string {
	t.Helper()
	tok, err := i.Mint(c)
	if err != nil {
		t.Fatalf("Mint(%+v) = %v", c, err)
	}
	return tok
}

// rawJWT builds a compact JWS from a header and claims, signed by sign.
func rawJWT(t testing.TB, header, claims map[string]any, sig string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + sig
}

// forge signs claims with a fresh key that claims the issuer's kid.
func forge(t testing.TB, kid string, claims map[string]any, alg jose.SignatureAlgorithm, key any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func userClaims(iss string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": iss, "sub": "mallory", "aud": userAud, "email": "alice@example.com",
		"email_verified": true, "roles": []string{"admin"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	alice := oidcdev.Claims{Subject: "alice", Email: "alice@example.com", Name: "Alice", Audience: []string{userAud}}
	with := func(c oidcdev.Claims, edit func(*oidcdev.Claims)) oidcdev.Claims { edit(&c); return c }
	sched := oidcdev.Claims{Subject: "1234567890", Email: schedSA, Audience: []string{fnTarget}}

	tests := []struct {
		name       string
		token      string
		want       Principal
		wantErr    error
		wantReason string
	}{
		{name: "valid user", token: mint(t, f.users, alice),
			want: Principal{Subject: "alice@example.com", Email: "alice@example.com", Name: "Alice", Issuer: f.users.URL(), KubeUser: "alice@example.com"}},
		{name: "admin via roles claim", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.Roles = []string{"viewer", "admin"} })),
			want: Principal{Subject: "alice@example.com", Email: "alice@example.com", Name: "Alice", Issuer: f.users.URL(), KubeUser: "alice@example.com", Admin: true}},
		{name: "similar role is not admin", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.Roles = []string{"administrator"} })),
			want: Principal{Subject: "alice@example.com", Email: "alice@example.com", Name: "Alice", Issuer: f.users.URL(), KubeUser: "alice@example.com"}},
		{name: "audience list containing ours", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.Audience = []string{"x", userAud} })),
			want: Principal{Subject: "alice@example.com", Email: "alice@example.com", Name: "Alice", Issuer: f.users.URL(), KubeUser: "alice@example.com"}},
		{name: "unverified email falls back to qualified sub", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.UnverifiedEmail = true })),
			want: Principal{Subject: f.users.URL() + "#alice", Name: "Alice", Issuer: f.users.URL()}},
		{name: "no email uses qualified sub", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.Email = "" })),
			want: Principal{Subject: f.users.URL() + "#alice", Name: "Alice", Issuer: f.users.URL()}},
		{name: "expired", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) {
			c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
		})), wantErr: ErrInvalidToken, wantReason: "expired"},
		{name: "not yet valid", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.NotBefore = now.Add(time.Hour) })),
			wantErr: ErrInvalidToken, wantReason: "not yet valid"},
		{name: "wrong audience", token: mint(t, f.users, with(alice, func(c *oidcdev.Claims) { c.Audience = []string{"other-app"} })),
			wantErr: ErrInvalidToken, wantReason: "wrong audience"},
		{name: "wrong issuer", token: mint(t, f.other, alice), wantErr: ErrInvalidToken, wantReason: "unknown issuer"},
		{name: "forged with the issuer's kid", token: forge(t, f.users.KeyID(), userClaims(f.users.URL()), jose.RS256, otherKey),
			wantErr: ErrInvalidToken, wantReason: "bad signature"},
		{name: "HS256 keyed with a guess", token: forge(t, f.users.KeyID(), userClaims(f.users.URL()), jose.HS256, []byte("0123456789abcdef0123456789abcdef")),
			wantErr: ErrInvalidToken, wantReason: "malformed or unsupported algorithm"},
		{name: "alg none", token: rawJWT(t, map[string]any{"alg": "none", "typ": "JWT"}, userClaims(f.users.URL()), ""),
			wantErr: ErrInvalidToken, wantReason: "malformed or unsupported algorithm"},
		{name: "tampered payload", token: func() string {
			p := strings.Split(mint(t, f.users, alice), ".")
			c := userClaims(f.users.URL())
			b, _ := json.Marshal(c)
			return p[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + p[2]
		}(), wantErr: ErrInvalidToken, wantReason: "bad signature"},
		{name: "garbage bytes", token: "\x00\xff\xfe garbage \x7f", wantErr: ErrInvalidToken, wantReason: "malformed"},
		{name: "three garbage parts", token: "a.b.c", wantErr: ErrInvalidToken, wantReason: "malformed"},
		{name: "oversized", token: strings.Repeat("a", maxTokenBytes+1), wantErr: ErrInvalidToken, wantReason: "too large"},
		{name: "missing", token: "", wantErr: ErrNoToken},
		{name: "scheduler allowlisted", token: mint(t, f.google, sched),
			want: Principal{Subject: "scheduler:" + schedSA, Email: schedSA, Scheduler: true, Issuer: f.google.URL(), KubeUser: schedSA}},
		{name: "scheduler with admin role is still not admin", token: mint(t, f.google, with(sched, func(c *oidcdev.Claims) { c.Roles = []string{"admin"} })),
			want: Principal{Subject: "scheduler:" + schedSA, Email: schedSA, Scheduler: true, Issuer: f.google.URL(), KubeUser: schedSA}},
		{name: "scheduler not allowlisted", token: mint(t, f.google, with(sched, func(c *oidcdev.Claims) { c.Email = otherSA })),
			wantErr: ErrInvalidToken, wantReason: "service account not allowlisted"},
		{name: "scheduler unverified email", token: mint(t, f.google, with(sched, func(c *oidcdev.Claims) { c.UnverifiedEmail = true })),
			wantErr: ErrInvalidToken, wantReason: "no verified email"},
		{name: "scheduler wrong audience", token: mint(t, f.google, with(sched, func(c *oidcdev.Claims) { c.Audience = []string{"https://elsewhere.example"} })),
			wantErr: ErrInvalidToken, wantReason: "wrong audience"},
		{name: "scheduler audience from the user issuer", token: mint(t, f.users, sched),
			wantErr: ErrInvalidToken, wantReason: "wrong audience"},
		{name: "scheduler forged with Google's kid", token: forge(t, f.google.KeyID(), map[string]any{
			"iss": f.google.URL(), "sub": "1", "aud": fnTarget, "email": schedSA, "email_verified": true,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, jose.RS256, otherKey),
			wantErr: ErrInvalidToken, wantReason: "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if tt.wantReason != "" && !strings.HasSuffix(err.Error(), ": "+tt.wantReason) {
					t.Errorf("Verify() error = %q, want reason %q", err, tt.wantReason)
				}
				assertNoTokenIn(t, "error", err.Error(), tt.token)
				return
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Principal{}, "Expiry")); diff != "" {
				t.Errorf("Verify() mismatch (-want +got):\n%s", diff)
			}
			if got.Expiry.Before(time.Now()) {
				t.Errorf("Verify().Expiry = %v, want in the future", got.Expiry)
			}
		})
	}
}

// assertNoTokenIn fails if text holds the token or any of its segments.
func assertNoTokenIn(t *testing.T, what, text, token string) {
	t.Helper()
	if token == "" {
		return
	}
	if strings.Contains(text, token) {
		t.Errorf("%s contains the token: %q", what, text)
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) >= 16 && strings.Contains(text, seg) {
			t.Errorf("%s contains a token segment: %q", what, text)
		}
	}
}

func TestMiddleware(t *testing.T) {
	f := newFixture(t)
	good := mint(t, f.users, oidcdev.Claims{Subject: "bob", Email: "bob@example.com", Audience: []string{userAud}})
	expired := mint(t, f.users, oidcdev.Claims{Subject: "bob", Email: "bob@example.com", Audience: []string{userAud},
		IssuedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	forged := forge(t, f.users.KeyID(), userClaims(f.users.URL()), jose.RS256, mustKey(t))

	h := Middleware(f.v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			t.Error("FromContext() ok = false inside Middleware")
		}
		io.WriteString(w, p.Subject)
	}))
	type answer struct {
		Status    int
		Challenge string
		Body      string
	}
	tests := []struct {
		name   string
		header []string
		token  string
		want   answer
	}{
		{name: "valid", header: []string{"Bearer " + good}, token: good, want: answer{Status: 200, Body: "bob@example.com"}},
		{name: "lower-case scheme", header: []string{"bearer " + good}, token: good, want: answer{Status: 200, Body: "bob@example.com"}},
		{name: "no header", want: answer{Status: 401, Challenge: `Bearer realm="nodebatch"`,
			Body: `{"error":{"code":"unauthenticated","message":"a bearer token is required"}}`}},
		{name: "basic scheme", header: []string{"Basic YWxpY2U6cHc="}, want: answer{Status: 401, Challenge: `Bearer realm="nodebatch"`,
			Body: `{"error":{"code":"unauthenticated","message":"a bearer token is required"}}`}},
		{name: "expired", header: []string{"Bearer " + expired}, token: expired, want: answer{Status: 401,
			Challenge: `Bearer realm="nodebatch", error="invalid_token"`,
			Body:      `{"error":{"code":"unauthenticated","message":"verify token: invalid token: expired"}}`}},
		{name: "forged", header: []string{"Bearer " + forged}, token: forged, want: answer{Status: 401,
			Challenge: `Bearer realm="nodebatch", error="invalid_token"`,
			Body:      `{"error":{"code":"unauthenticated","message":"verify token: invalid token: bad signature"}}`}},
		{name: "two headers", header: []string{"Bearer " + good, "Bearer " + good}, token: good, want: answer{Status: 401,
			Challenge: `Bearer realm="nodebatch", error="invalid_token"`,
			Body:      `{"error":{"code":"unauthenticated","message":"read bearer token: invalid token: several Authorization headers"}}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/batches", nil)
			for _, h := range tt.header {
				r.Header.Add("Authorization", h)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := answer{Status: w.Code, Challenge: w.Header().Get("WWW-Authenticate"), Body: strings.TrimSpace(w.Body.String())}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Middleware answer mismatch (-want +got):\n%s", diff)
			}
			if tt.want.Status != 200 {
				assertNoTokenIn(t, "response body", got.Body, tt.token)
			}
		})
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"reason":"verify token: invalid token: expired"`) {
		t.Errorf("logs = %s, want a refusal with reason expired", logs)
	}
	for _, tok := range []string{good, expired, forged} {
		assertNoTokenIn(t, "captured logs", logs, tok)
	}
}

func mustKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestForgedKidDoesNotHammerJWKS(t *testing.T) {
	f := newFixture(t)
	for _, ks := range f.v.keySets {
		ks.minRefresh = time.Hour
	}
	before := f.jwksHits.Load()
	key := mustKey(t)
	for i := range 50 {
		tok := forge(t, "unknown-kid-"+string(rune('a'+i%26)), userClaims(f.users.URL()), jose.RS256, key)
		if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify(forged #%d) = %v, want ErrInvalidToken", i, err)
		}
	}
	if got := f.jwksHits.Load() - before; got > 1 {
		t.Errorf("JWKS fetched %d times for 50 forged tokens within one refresh window, want at most 1", got)
	}
}

func TestKeyRotationAndUnavailable(t *testing.T) {
	var current atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	serve := func(i *oidcdev.Issuer) { h := i.Handler(); current.Store(&h) }
	first, err := oidcdev.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	serve(first)
	v, err := NewVerifier(context.Background(), Config{Issuers: []IssuerConfig{{URL: srv.URL, Audience: userAud}}, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewVerifier() = %v", err)
	}
	v.keySets[0].minRefresh = 0
	claims := oidcdev.Claims{Subject: "carol", Email: "carol@example.com", Audience: []string{userAud}}

	rotated, err := oidcdev.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	serve(rotated)
	if _, err := v.Verify(context.Background(), mint(t, rotated, claims)); err != nil {
		t.Errorf("Verify(token of rotated key) = %v, want nil", err)
	}
	if _, err := v.Verify(context.Background(), mint(t, first, claims)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify(token of retired key) = %v, want ErrInvalidToken", err)
	}

	var down http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) })
	current.Store(&down)
	third, err := oidcdev.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), mint(t, third, claims))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify() with JWKS down = %v, want ErrUnavailable", err)
	}
	w := httptest.NewRecorder()
	WriteError(w, err)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("WriteError(ErrUnavailable) status = %d, want 503", w.Code)
	}
}

func TestNewVerifierRefusesUnsafeConfig(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "nothing configured", cfg: Config{}},
		{name: "no audience", cfg: Config{Issuers: []IssuerConfig{{URL: f.users.URL()}}}},
		{name: "scheduler without allowlist", cfg: Config{Scheduler: &SchedulerConfig{IssuerURL: f.google.URL(), Audience: fnTarget}}},
		{name: "scheduler without audience", cfg: Config{Scheduler: &SchedulerConfig{IssuerURL: f.google.URL(), Allowlist: []string{schedSA}}}},
		{name: "user issuer shadows the allowlist", cfg: Config{
			Issuers:   []IssuerConfig{{URL: f.google.URL(), Audience: fnTarget}},
			Scheduler: &SchedulerConfig{IssuerURL: f.google.URL(), Audience: fnTarget, Allowlist: []string{schedSA}}}},
		{name: "unreachable issuer", cfg: Config{Issuers: []IssuerConfig{{URL: f.srv.URL + "/nowhere", Audience: userAud}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.HTTPClient = f.srv.Client()
			if v, err := NewVerifier(context.Background(), tt.cfg); err == nil {
				t.Errorf("NewVerifier(%s) = %v, nil; want an error", tt.name, v)
			}
		})
	}
}

func TestCanSee(t *testing.T) {
	tests := []struct {
		p     Principal
		owner string
		want  bool
	}{
		{Principal{Subject: "a@x"}, "a@x", true},
		{Principal{Subject: "a@x"}, "b@x", false},
		{Principal{Subject: "a@x", Admin: true}, "b@x", true},
		{Principal{}, "", false},
		{Principal{Subject: "scheduler:s@x", Scheduler: true}, "scheduler:s@x", true},
		{Principal{Subject: "scheduler:s@x", Scheduler: true}, "a@x", false},
	}
	for _, tt := range tests {
		if got := tt.p.CanSee(tt.owner); got != tt.want {
			t.Errorf("%+v.CanSee(%q) = %v, want %v", tt.p, tt.owner, got, tt.want)
		}
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext(empty) ok = true, want false")
	}
	p := Principal{Subject: "a@x", Admin: true}
	got, ok := FromContext(WithPrincipal(context.Background(), p))
	if diff := cmp.Diff(p, got); !ok || diff != "" {
		t.Errorf("FromContext(WithPrincipal(p)) = %v (ok %v) mismatch (-want +got):\n%s", got, ok, diff)
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{name: "users only", env: map[string]string{EnvIssuer: "http://127.0.0.1:8093", EnvAudience: "nodebatch"},
			want: Config{Issuers: []IssuerConfig{{URL: "http://127.0.0.1:8093", Audience: "nodebatch"}}}},
		{name: "everything", env: map[string]string{
			EnvIssuer: "https://a.example, https://b.example", EnvAudience: "nb", EnvAdminClaim: "groups", EnvAdminValue: "ops",
			EnvSchedulerIssuer: "http://127.0.0.1:8093/google", EnvSchedulerAudience: "http://127.0.0.1:8080",
			EnvSchedulerAllowlist: "s1@p.iam.gserviceaccount.com,s2@p.iam.gserviceaccount.com"},
			want: Config{
				Issuers:    []IssuerConfig{{URL: "https://a.example", Audience: "nb"}, {URL: "https://b.example", Audience: "nb"}},
				AdminClaim: "groups", AdminValue: "ops",
				Scheduler: &SchedulerConfig{IssuerURL: "http://127.0.0.1:8093/google", Audience: "http://127.0.0.1:8080",
					Allowlist: []string{"s1@p.iam.gserviceaccount.com", "s2@p.iam.gserviceaccount.com"}}}},
		{name: "no issuer", env: map[string]string{EnvAudience: "nb"}, wantErr: true},
		{name: "no audience", env: map[string]string{EnvIssuer: "https://a.example"}, wantErr: true},
		{name: "allowlist without audience", env: map[string]string{EnvIssuer: "https://a.example", EnvAudience: "nb",
			EnvSchedulerAllowlist: "s@p"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadConfig(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("LoadConfig() error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Config{})); diff != "" {
				t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	valid, err := fx.users.Mint(oidcdev.Claims{Subject: "z", Audience: []string{userAud}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "a.b.c", valid, valid + "x", strings.Replace(valid, ".", "..", 1),
		"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "\x00", strings.Repeat(".", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := fx.v.Verify(context.Background(), s)
		switch {
		case err == nil && s != valid:
			// Only a token the issuer signed can verify; anything else
			// passing means the fuzzer forged a signature.
			if _, ok := unverifiedIssuer(s); !ok || p.Subject == "" {
				t.Fatalf("Verify(%q) = %+v, nil; want an error", s, p)
			}
		case err != nil && !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrNoToken):
			t.Fatalf("Verify(%q) error = %v, want ErrInvalidToken or ErrNoToken", s, err)
		}
	})
}

func TestRouteIssuer(t *testing.T) {
	for _, tt := range []struct{ iss, want string }{
		{"accounts.google.com", GoogleIssuer},
		{GoogleIssuer, GoogleIssuer},
		{"http://127.0.0.1:8093", "http://127.0.0.1:8093"},
		{"evil.example/accounts.google.com", "evil.example/accounts.google.com"},
	} {
		if got := routeIssuer(tt.iss); got != tt.want {
			t.Errorf("routeIssuer(%q) = %q, want %q", tt.iss, got, tt.want)
		}
	}
}
