package auth

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
)

// TestOwnerAndAdminPerIssuer: owner ids and the admin role are qualified by
// the issuer. The primary issuer keeps the owner ids batches always had
// (verified emails), every other issuer's are "{issuer}#{sub}", and an
// issuer's admin claim counts only when it is an admin issuer.
func TestOwnerAndAdminPerIssuer(t *testing.T) {
	srv, a, b := kubeIssuers(t)
	issuers := []IssuerConfig{
		{URL: a.URL(), Audience: userAud},
		{URL: b.URL(), Audience: userAud, Kube: KubeMapping{Username: ClaimMapping{Claim: "email", Prefix: "b:"}}},
	}
	type who struct {
		Subject string
		Admin   bool
	}
	admin := []string{"admin"}
	tests := []struct {
		name         string
		adminIssuers []string
		issuer       *oidcdev.Issuer
		claims       oidcdev.Claims
		want         who
	}{
		{name: "primary: verified email", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "alice@example.com"}, want: who{Subject: "alice@example.com"}},
		{name: "primary: unverified email is the qualified sub", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "alice@example.com", UnverifiedEmail: true}, want: who{Subject: a.URL() + "#1"}},
		{name: "primary: an email that reads as a qualified id is not used", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "x#y@example.com"}, want: who{Subject: a.URL() + "#1"}},
		{name: "primary: an email that reads as the scheduler is not used", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "scheduler:s@example.com"}, want: who{Subject: a.URL() + "#1"}},
		{name: "other issuer: the same email is another owner", issuer: b,
			claims: oidcdev.Claims{Subject: "alice@example.com", Email: "alice@example.com"}, want: who{Subject: b.URL() + "#alice@example.com"}},
		{name: "primary: admin claim counts by default", issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "root@example.com", Roles: admin}, want: who{Subject: "root@example.com", Admin: true}},
		{name: "other issuer: admin claim ignored by default", issuer: b,
			claims: oidcdev.Claims{Subject: "2", Email: "root@example.com", Roles: admin}, want: who{Subject: b.URL() + "#2"}},
		{name: "other issuer listed: admin claim counts", adminIssuers: []string{b.URL()}, issuer: b,
			claims: oidcdev.Claims{Subject: "2", Email: "root@example.com", Roles: admin}, want: who{Subject: b.URL() + "#2", Admin: true}},
		{name: "primary not listed: admin claim ignored", adminIssuers: []string{b.URL()}, issuer: a,
			claims: oidcdev.Claims{Subject: "1", Email: "root@example.com", Roles: admin}, want: who{Subject: "root@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), Config{Issuers: issuers, AdminIssuers: tt.adminIssuers, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatalf("NewVerifier() = %v", err)
			}
			tt.claims.Audience = []string{userAud}
			p, err := v.Verify(context.Background(), mint(t, tt.issuer, tt.claims))
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if diff := cmp.Diff(tt.want, who{p.Subject, p.Admin}); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdminIssuersRefused(t *testing.T) {
	srv, a, _ := kubeIssuers(t)
	_, err := NewVerifier(context.Background(), Config{
		Issuers: []IssuerConfig{{URL: a.URL(), Audience: userAud}}, AdminIssuers: []string{"https://elsewhere.example"}, HTTPClient: srv.Client()})
	if err == nil {
		t.Error("NewVerifier(admin issuer not configured) = nil, want an error")
	}
	_, err = LoadConfig(func(k string) string {
		return map[string]string{EnvIssuer: "https://a.example", EnvAudience: "nb", EnvAdminIssuers: "https://b.example"}[k]
	})
	if err == nil {
		t.Errorf("LoadConfig(%s names an unknown issuer) = nil, want an error", EnvAdminIssuers)
	}
	got, err := LoadConfig(func(k string) string {
		return map[string]string{EnvIssuer: "https://a.example,https://b.example", EnvAudience: "nb", EnvAdminIssuers: " https://b.example "}[k]
	})
	if err != nil || !cmp.Equal(got.AdminIssuers, []string{"https://b.example"}) {
		t.Errorf("LoadConfig(%s) = %v, %v; want [https://b.example]", EnvAdminIssuers, got.AdminIssuers, err)
	}
}
