package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/emulators/oidcdev"
	"github.com/nodebatch/nodebatch/emulators/product"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// browserNodes is how many nodes the browser tests batch at once (issue
// 20: the results view of a 300-node batch).
const browserNodes = 300

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
	// The patch function reaches the API server through a proxy with a
	// gate the browser tests close and open (NODEBATCH_E2E_GATE_URL), so
	// that "cancel mid-batch" is mid-batch however fast the batch runs.
	gate := kubeproxy.NewGate()
	// The results view's test makes chosen nodes fail (POST /fail on the
	// gate server): their writes get a 422 whose message starts with "=",
	// a formula a CSV download must defuse.
	failing := &failSet{}
	proxy, err := kubeproxy.New(env.APIServerURL, kubeproxy.Options{Gate: gate, Fault: failing.fault})
	if err != nil {
		t.Fatalf("kubeproxy.New: %v", err)
	}
	t.Cleanup(proxy.Close)
	p, err := product.Start(ctx, product.Options{
		Project:   env.ProjectID(t),
		APIKube:   env.AdminConfig,
		PatchKube: proxy.RestConfig(env.PatcherConfig),
	})
	if err != nil {
		t.Fatalf("product.Start: %v", err)
	}
	t.Cleanup(p.Close)
	gateSrv := httptest.NewServer(gateHandler(gate, failing, p.Issuer))
	t.Cleanup(gateSrv.Close)
	t.Cleanup(gate.Open) // first: nothing stays held while the rest stops
	prefix, names := env.SeedNodes(t, browserNodes)
	podNodes := seedPods(t, env, names[:2])

	// A watchdog for a hung browser step, so it ends as a failure with
	// node's report rather than a Go panic: well inside make test's
	// -timeout (40 minutes), and far above the suite's ~3 minutes on a quiet
	// machine (it came within a minute of the old 7 under a load of 20).
	rctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	// NODEBATCH_E2E_FILES narrows a run to some files (while working on
	// them); make test runs them all.
	files := strings.Fields(os.Getenv("NODEBATCH_E2E_FILES"))
	if len(files) == 0 {
		files = []string{"e2e/"}
	}
	cmd := exec.CommandContext(rctx, nodeBin, append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)...)
	cmd.Env = append(os.Environ(),
		"NODEBATCH_UI_URL="+p.RelayURL,
		"NODEBATCH_E2E_SELECTOR=nodebatch.dev/test="+prefix,
		fmt.Sprintf("NODEBATCH_E2E_NODES=%d", browserNodes),
		"NODEBATCH_E2E_GATE_URL="+gateSrv.URL,
		"NODEBATCH_E2E_POD_NODES="+podNodes,
	)
	// Streamed as it happens: a long browser run is readable while it goes.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t.Logf("node --test e2e/ against the UI at %s", p.RelayURL)
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser tests failed: %v", err)
	}
}

// gateHandler lets the browser tests drive the gate in front of the patch
// function's API traffic: POST /close?after=N lets N more writes through
// and holds the rest, POST /open releases them, POST /wait?held=N answers
// once N writes are held (504 after a minute), POST /fail?nodes=a,b makes
// the writes to those nodes fail from now on (an empty list: none). Each
// answers {"held": n}. The session test drives the development issuer:
// POST /token-ttl?d=15s sets the lifetime of the ID tokens it issues from
// now on, POST /revoke forgets every refresh token (the identity provider
// ended the session).
func gateHandler(g *kubeproxy.Gate, failing *failSet, issuer *oidcdev.Issuer) http.Handler {
	count := func(w http.ResponseWriter, r *http.Request, name string) (int, bool) {
		n, err := strconv.Atoi(r.URL.Query().Get(name))
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("%s must be a count, got %q", name, r.URL.Query().Get(name)), http.StatusBadRequest)
			return 0, false
		}
		return n, true
	}
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"held": g.Held()}) // the test reads it or has gone
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /close", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := count(w, r, "after"); ok {
			g.CloseAfter(n)
			answer(w)
		}
	})
	mux.HandleFunc("POST /open", func(w http.ResponseWriter, r *http.Request) {
		g.Open()
		answer(w)
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		failing.set(r.URL.Query().Get("nodes"))
		answer(w)
	})
	mux.HandleFunc("POST /token-ttl", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err == nil {
			err = issuer.SetTokenTTL(d)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("d: %v", err), http.StatusBadRequest)
			return
		}
		answer(w)
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		issuer.RevokeRefreshTokens()
		answer(w)
	})
	mux.HandleFunc("POST /wait", func(w http.ResponseWriter, r *http.Request) {
		n, ok := count(w, r, "held")
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		if err := g.WaitHeld(ctx, n); err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		answer(w)
	})
	return mux
}

// failSet is the nodes whose writes the proxy in front of the patch
// function refuses, with a permanent 422.
type failSet struct {
	mu    sync.Mutex
	nodes map[string]bool
}

// failMessage starts with "=" so that it is a formula to a spreadsheet.
const failMessage = "=HYPERLINK(\"https://example.invalid\") refused by the browser test"

func (f *failSet) set(list string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n != "" {
			f.nodes[n] = true
		}
	}
}

func (f *failSet) fault(r *http.Request) *kubeproxy.Fault {
	if r.Method != http.MethodPatch {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.nodes[kubeproxy.NodeName(r.URL.Path)] {
		return nil
	}
	return &kubeproxy.Fault{Status: http.StatusUnprocessableEntity, Message: failMessage}
}
