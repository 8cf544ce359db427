package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/product"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// browserNodes is how many nodes the browser tests batch at once.
const browserNodes = 200

// TestBrowser runs the web UI's browser tests (relay/ui/e2e, node --test
// with playwright-core and Debian's Chromium) against the whole product on
// the real local stack: relay + UI, batch API, patch function, push
// deliverer, dev OIDC issuer, Firestore and Pub/Sub emulators, kube-apiserver.
func TestBrowser(t *testing.T) {
	for _, need := range []string{"/usr/bin/chromium", filepath.Join("e2e", "node_modules", "playwright-core", "package.json")} {
		if _, err := os.Stat(need); err != nil {
			t.Fatalf("browser tests need %s: run scripts/setup-browser.sh (make setup): %v", need, err)
		}
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("browser tests need node on PATH: %v", err)
	}
	env := harness.Start(t)
	ctx := t.Context()
	p, err := product.Start(ctx, product.Options{
		Project:   env.ProjectID(t),
		APIKube:   env.AdminConfig,
		PatchKube: env.PatcherConfig,
	})
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(p.Close)
	prefix, _ := env.SeedNodes(t, browserNodes)

	// Bounded well inside go test's default 10 minutes, so a hung browser
	// step ends as a failure with node's report rather than a Go panic.
	rctx, cancel := context.WithTimeout(ctx, 7*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, nodeBin, "--test", "--test-concurrency=1", "--test-reporter=spec", "e2e/")
	cmd.Env = append(os.Environ(),
		"NODEBATCH_UI_URL="+p.RelayURL,
		"NODEBATCH_E2E_SELECTOR=nodebatch.dev/test="+prefix,
		fmt.Sprintf("NODEBATCH_E2E_NODES=%d", browserNodes),
	)
	// Streamed as it happens: a long browser run is readable while it goes.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t.Logf("node --test e2e/ against the UI at %s", p.RelayURL)
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser tests failed: %v", err)
	}
}
