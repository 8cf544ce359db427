package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
)

// kubeIssuers serves two real issuers (/a, /b) for the mapping tests.
func kubeIssuers(t *testing.T) (srv *httptest.Server, a, b *oidcdev.Issuer) {
	t.Helper()
	mux := http.NewServeMux()
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	var err error
	if a, err = oidcdev.New(srv.URL + "/a"); err != nil {
		t.Fatal(err)
	}
	if b, err = oidcdev.New(srv.URL + "/b"); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/a/", a.Handler())
	mux.Handle("/b/", b.Handler())
	return srv, a, b
}

func TestKubeMapping(t *testing.T) {
	srv, a, b := kubeIssuers(t)
	v, err := NewVerifier(context.Background(), Config{
		Issuers: []IssuerConfig{
			{URL: a.URL(), Audience: userAud}, // the default: GKE with Google identities
			{URL: b.URL(), Audience: userAud, Kube: KubeMapping{
				Username: ClaimMapping{Claim: "sub", Prefix: "corp:"},
				Groups:   ClaimMapping{Claim: "groups", Prefix: "corp:"},
			}},
		},
		HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatalf("NewVerifier() = %v", err)
	}
	type kube struct {
		User   string
		Groups []string
	}
	tests := []struct {
		name   string
		issuer *oidcdev.Issuer
		claims oidcdev.Claims
		want   kube
	}{
		{name: "default: verified email, no prefix, groups ignored", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "alice@example.com", Groups: []string{"admins"}},
			want:   kube{User: "alice@example.com"}},
		{name: "default: unverified email maps to no user", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "alice@example.com", UnverifiedEmail: true}},
		{name: "default: no email maps to no user", issuer: a, claims: oidcdev.Claims{Subject: "1"}},
		{name: "sub with prefix, groups with prefix", issuer: b,
			claims: oidcdev.Claims{Subject: "alice", Email: "alice@example.com", Groups: []string{"team-a", "oncall"}},
			want:   kube{User: "corp:alice", Groups: []string{"corp:team-a", "corp:oncall"}}},
		{name: "the same email from another issuer is another user", issuer: b,
			claims: oidcdev.Claims{Subject: "alice@example.com", Email: "alice@example.com"},
			want:   kube{User: "corp:alice@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.claims.Audience = []string{userAud}
			p, err := v.Verify(context.Background(), mint(t, tt.issuer, tt.claims))
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if diff := cmp.Diff(tt.want, kube{p.KubeUser, p.KubeGroups}); diff != "" {
				t.Errorf("Kubernetes user mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchedulerKubeUser(t *testing.T) {
	f := newFixture(t)
	p, err := f.v.Verify(context.Background(), mint(t, f.google, oidcdev.Claims{Subject: "123", Email: schedSA, Audience: []string{fnTarget}}))
	if err != nil {
		t.Fatalf("Verify(scheduler) = %v", err)
	}
	if p.KubeUser != schedSA || p.KubeGroups != nil {
		t.Errorf("scheduler Kubernetes user = %q %q, want %q and no groups", p.KubeUser, p.KubeGroups, schedSA)
	}
}

// TestMappingCollision: two issuers that would map the same email to the
// same Kubernetes user are refused at start.
func TestMappingCollision(t *testing.T) {
	srv, a, b := kubeIssuers(t)
	_, err := NewVerifier(context.Background(), Config{
		Issuers:    []IssuerConfig{{URL: a.URL(), Audience: userAud}, {URL: b.URL(), Audience: userAud}},
		HTTPClient: srv.Client(),
	})
	if err == nil || !strings.Contains(err.Error(), "same username claim and prefix") {
		t.Errorf("NewVerifier(two issuers, same mapping) = %v, want a refusal naming the collision", err)
	}
}

func TestLoadConfigMappings(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    []IssuerConfig
		wantErr string
	}{
		{name: "common settings apply to every issuer",
			env: map[string]string{EnvIssuer: "https://a.example", EnvAudience: "nb",
				EnvUsernameClaim: "sub", EnvUsernamePrefix: "oidc:", EnvGroupsClaim: "groups", EnvGroupsPrefix: "oidc:"},
			want: []IssuerConfig{{URL: "https://a.example", Audience: "nb", Kube: KubeMapping{
				Username: ClaimMapping{Claim: "sub", Prefix: "oidc:"}, Groups: ClaimMapping{Claim: "groups", Prefix: "oidc:"}}}}},
		{name: "per issuer",
			env: map[string]string{EnvIssuer: "https://a.example,https://b.example", EnvAudience: "nb",
				EnvClaimMappings: `{"https://b.example":{"username":{"claim":"email","prefix":"b:"},"groups":{"claim":"grp","prefix":""}}}`},
			want: []IssuerConfig{{URL: "https://a.example", Audience: "nb"}, {URL: "https://b.example", Audience: "nb", Kube: KubeMapping{
				Username: ClaimMapping{Claim: "email", Prefix: "b:"}, Groups: ClaimMapping{Claim: "grp"}}}}},
		{name: "mapping of an unknown issuer",
			env:     map[string]string{EnvIssuer: "https://a.example", EnvAudience: "nb", EnvClaimMappings: `{"https://c.example":{}}`},
			wantErr: "https://c.example"},
		{name: "bad JSON",
			env:     map[string]string{EnvIssuer: "https://a.example", EnvAudience: "nb", EnvClaimMappings: `{"https://a.example":{"user":{}}}`},
			wantErr: EnvClaimMappings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadConfig(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadConfig() error = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig() = %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Issuers, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("issuers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
