package oidcdev

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
)

// serve starts the issuer at srv.URL+path behind a real HTTP server.
func serve(t *testing.T, path string) (*Issuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	i, err := New(srv.URL + path)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	mux.Handle("/", i.Handler())
	return i, srv
}

type idClaims struct {
	Iss           string   `json:"iss"`
	Sub           string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name"`
	Roles         []string `json:"roles"`
}

func TestDiscoveryAndTokenEndpoint(t *testing.T) {
	for _, path := range []string{"", "/google"} {
		t.Run("path="+path, func(t *testing.T) {
			i, srv := serve(t, path)
			ctx := oidc.ClientContext(context.Background(), srv.Client())
			p, err := oidc.NewProvider(ctx, i.URL())
			if err != nil {
				t.Fatalf("oidc.NewProvider(%q) = %v", i.URL(), err)
			}
			resp, err := srv.Client().PostForm(i.URL()+"/token", url.Values{
				"sub": {"alice"}, "email": {"alice@example.com"}, "name": {"Alice"},
				"roles": {"admin,viewer"}, "aud": {"nodebatch"}, "ttl": {"10m"}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tr TokenResponse
			if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST /token = %d, %v", resp.StatusCode, err)
			}
			if tr.TokenType != "Bearer" || tr.ExpiresIn != 600 {
				t.Errorf("POST /token = %+v, want Bearer expiring in 600 s", tr)
			}
			tok, err := p.Verifier(&oidc.Config{ClientID: "nodebatch"}).Verify(ctx, tr.IDToken)
			if err != nil {
				t.Fatalf("Verify(minted token) = %v", err)
			}
			var got idClaims
			if err := tok.Claims(&got); err != nil {
				t.Fatal(err)
			}
			want := idClaims{Iss: i.URL(), Sub: "alice", Email: "alice@example.com", EmailVerified: true, Name: "Alice", Roles: []string{"admin", "viewer"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims mismatch (-want +got):\n%s", diff)
			}
			if d := time.Until(tok.Expiry); d <= 0 || d > 10*time.Minute {
				t.Errorf("expiry in %s, want within (0, 10m]", d)
			}
		})
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	i, srv := serve(t, "")
	tests := []struct {
		name       string
		form       url.Values
		origin     string
		wantStatus int
		wantACAO   string
	}{
		{name: "ok from loopback origin", form: url.Values{"sub": {"a"}, "aud": {"x"}}, origin: "http://127.0.0.1:8090", wantStatus: 200, wantACAO: "http://127.0.0.1:8090"},
		{name: "ok from localhost", form: url.Values{"sub": {"a"}, "aud": {"x"}}, origin: "http://localhost:5173", wantStatus: 200, wantACAO: "http://localhost:5173"},
		{name: "foreign origin", form: url.Values{"sub": {"a"}, "aud": {"x"}}, origin: "https://evil.example", wantStatus: 403},
		{name: "no sub", form: url.Values{"aud": {"x"}}, wantStatus: 400},
		{name: "no aud", form: url.Values{"sub": {"a"}}, wantStatus: 400},
		{name: "bad ttl", form: url.Values{"sub": {"a"}, "aud": {"x"}, "ttl": {"soon"}}, wantStatus: 400},
		{name: "ttl too long", form: url.Values{"sub": {"a"}, "aud": {"x"}, "ttl": {"48h"}}, wantStatus: 400},
		{name: "negative ttl", form: url.Values{"sub": {"a"}, "aud": {"x"}, "ttl": {"-1m"}}, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", i.URL()+"/token", strings.NewReader(tt.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("POST /token status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.wantACAO {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.wantACAO)
			}
		})
	}
}

func TestLoadOrCreateKeepsKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "issuer.pem")
	first, err := LoadOrCreate("http://127.0.0.1:8093", path)
	if err != nil {
		t.Fatalf("LoadOrCreate(new) = %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreate("http://127.0.0.1:8093", path)
	if err != nil {
		t.Fatalf("LoadOrCreate(existing) = %v", err)
	}
	if first.KeyID() != again.KeyID() {
		t.Errorf("KeyID after reload = %q, want %q", again.KeyID(), first.KeyID())
	}
	tok, err := first.Mint(Claims{Subject: "a", Audience: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	ks := &oidc.StaticKeySet{PublicKeys: nil}
	for _, k := range again.JWKS().Keys {
		ks.PublicKeys = append(ks.PublicKeys, k.Key)
	}
	if _, err := oidc.NewVerifier(again.URL(), ks, &oidc.Config{ClientID: "x"}).Verify(context.Background(), tok); err != nil {
		t.Errorf("token of the first process does not verify against the reloaded key: %v", err)
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate("http://127.0.0.1:8093", path); err == nil {
		t.Error("LoadOrCreate(corrupt file) = nil error, want an error (never silently replace a key)")
	}
}

func TestNewRefusesBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8093", "ftp://x", "http://x/?q=1"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) = nil error, want an error", u)
		}
	}
}

func TestMintRefusals(t *testing.T) {
	i, err := New("http://127.0.0.1:8093")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Claims{{Audience: []string{"x"}}, {Subject: "a"}, {Subject: "a", Audience: []string{"x"}, TTL: MaxTTL + time.Second}} {
		if _, err := i.Mint(c); err == nil {
			t.Errorf("Mint(%+v) = nil error, want an error", c)
		}
	}
}
