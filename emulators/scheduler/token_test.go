package scheduler_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/scheduler"
)

// TestDevIssuerToken mints through a real development issuer and checks the
// claims a Google-signed scheduler token carries.
func TestDevIssuerToken(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	iss, err := oidcdev.New(srv.URL + "/google")
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()

	tok, err := scheduler.DevIssuerToken(srv.Client(), srv.URL+"/google/")(context.Background(), "scheduler@p.iam.gserviceaccount.com", "https://batch.example")
	if err != nil {
		t.Fatalf("DevIssuerToken() error = %v", err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS compact serialisation", tok)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Iss           string `json:"iss"`
		Sub           string `json:"sub"`
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		Aud           any    `json:"aud"`
	}
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	aud := got.Aud
	if l, ok := aud.([]any); ok && len(l) == 1 {
		aud = l[0]
	}
	want := []any{srv.URL + "/google", "scheduler@p.iam.gserviceaccount.com", "scheduler@p.iam.gserviceaccount.com", true, "https://batch.example"}
	if diff := cmp.Diff(want, []any{got.Iss, got.Sub, got.Email, got.EmailVerified, aud}); diff != "" {
		t.Errorf("token claims iss, sub, email, email_verified, aud (-want +got):\n%s", diff)
	}

	if _, err := scheduler.DevIssuerToken(srv.Client(), srv.URL+"/elsewhere")(context.Background(), "sa@p", "a"); err == nil {
		t.Error("DevIssuerToken(wrong issuer path) error = nil, want an error")
	}
}
