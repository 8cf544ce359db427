package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// serve runs the main's run for target with env and returns its base URL.
func serve(t *testing.T, target string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- run(ctx, target, "127.0.0.1:0", func(k string) string { return env[k] }, logger, ready)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run(%s) = %v", target, err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("run(%s) = %v before serving", target, err)
	case <-time.After(time.Minute):
		t.Fatalf("run(%s) did not start", target)
	}
	return ""
}

// TestServeFromEnvironment wires both targets from environment variables
// only, against the real stack: the API answers an authenticated small
// batch inline, the patch target answers CloudEvents.
func TestServeFromEnvironment(t *testing.T) {
	env := harness.Start(t)
	project := env.ProjectID(t)
	var issuer *oidcdev.Issuer
	iss := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { issuer.Handler().ServeHTTP(w, r) }))
	defer iss.Close()
	var err error
	if issuer, err = oidcdev.New(iss.URL); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"NODEBATCH_PROJECT":       project,
		"KUBECONFIG":              env.Kubeconfig,
		"NODEBATCH_OIDC_ISSUER":   iss.URL,
		"NODEBATCH_OIDC_AUDIENCE": "nodebatch",
	}
	api := serve(t, "batch", vars)
	patchURL := serve(t, "patch", vars)
	_, names := env.SeedNodes(t, 2)

	// judy@example.com: a user RBAC lets patch nodes (infra/k8s/local).
	tok, err := issuer.Mint(oidcdev.Claims{Subject: "judy", Email: "judy@example.com", Audience: []string{"nodebatch"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"labels":["served=yes"],"nodes":["` + strings.Join(names, `","`) + `"]}`
	req, _ := http.NewRequest(http.MethodPost, api+"/v1/batches", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		State   string          `json:"state"`
		Results []store.NodeDoc `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/batches = %d (%v)", resp.StatusCode, err)
	}
	if st.State != "succeeded" || len(st.Results) != 2 {
		t.Errorf("inline batch = %s with %d results, want succeeded with 2", st.State, len(st.Results))
	}
	// Unauthenticated: refused.
	resp2, err := http.Post(api+"/v1/batches", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without a token = %d, want 401", resp2.StatusCode)
	}
	// The patch target speaks CloudEvents (a plain GET is not one).
	resp3, err := http.Get(patchURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET patch / = %d, want 405", resp3.StatusCode)
	}
}

func TestUnknownTarget(t *testing.T) {
	err := run(context.Background(), "nope", "127.0.0.1:0", func(string) string { return "" }, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil {
		t.Fatal("run(nope) = nil, want an error")
	}
}
