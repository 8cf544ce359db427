// Package harness gives integration tests the real local stack, in the
// spirit of controller-runtime's envtest: one kube-apiserver (with etcd) and
// the official Firestore and Pub/Sub emulators, shared by every test in a
// `go test` run, with per-test isolation (fresh project ids, node prefixes).
//
// When NODEBATCH_STACK_FILE names a state file written by
// `go run ./emulators/cmd/stack -state-file ...` (what `make test` does), the
// harness uses that stack. Otherwise the first Start in a test binary starts
// a private stack on free ports and Run stops it after the tests.
//
// If a part cannot start, Start fails the test with a clear message. It
// never skips.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodebatch/nodebatch/emulators/seed"
	"github.com/nodebatch/nodebatch/emulators/stack"
	"github.com/nodebatch/nodebatch/shared/fsclient"
)

// Environment variables the harness reads. They are part of the test
// contract (docs/config.md), which is why a non-main package reads them.
const (
	// EnvStackFile names a running stack's state file to reuse.
	EnvStackFile = "NODEBATCH_STACK_FILE"
	// EnvBinDir overrides where etcd and kube-apiserver are found for a
	// private stack (default: {repo}/.nodebatch/bin).
	EnvBinDir = "NODEBATCH_BIN_DIR"
	// TestLabel marks nodes seeded by SeedNodes; its value is the prefix.
	TestLabel = "nodebatch.dev/test"
)

// Env is a running stack as a test sees it.
type Env struct {
	APIServerURL  string       // https://127.0.0.1:PORT
	AdminConfig   *rest.Config // cluster-admin identity
	PatcherConfig *rest.Config // nodebatch's own identity: may only impersonate people (Pool, As)
	Kubeconfig    string       // admin kubeconfig file path
	FirestoreHost string       // host:port; also exported process-wide as FIRESTORE_EMULATOR_HOST
	PubSubHost    string       // host:port; also exported process-wide as PUBSUB_EMULATOR_HOST
	AuditLog      string       // the API server's audit log (JSON lines), fresh per stack start

	info stack.Info
}

// shared is the one stack of this test binary. Package-level state is the
// price of the envtest-style API: Run(m) has no handle to stop it otherwise.
var shared struct {
	once    sync.Once
	env     *Env
	err     error
	private *stack.Stack
	tmpDir  string
}

// Run runs the tests and stops the private stack this binary started, if
// any. Use it in TestMain: os.Exit(harness.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	if shared.private != nil {
		shared.private.Stop()
	}
	if shared.tmpDir != "" {
		os.RemoveAll(shared.tmpDir)
	}
	return code
}

// Start returns the shared stack, starting it on first use. It fails the
// test if a part cannot start.
func Start(t testing.TB) *Env {
	t.Helper()
	shared.once.Do(func() { shared.env, shared.err = start() })
	if shared.err != nil {
		t.Fatalf("harness: local stack unavailable: %v", shared.err)
	}
	return shared.env
}

func start() (*Env, error) {
	var info stack.Info
	if path := os.Getenv(EnvStackFile); path != "" {
		var err error
		if info, err = stack.ReadInfo(path); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvStackFile, path, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := info.Check(ctx); err != nil {
			return nil, fmt.Errorf("%s=%s describes a stack that is not up (restart it with make test / make stack): %w", EnvStackFile, path, err)
		}
	} else {
		var err error
		if info, err = startPrivate(); err != nil {
			return nil, err
		}
	}
	// The Google client libraries find the emulators through these.
	if err := os.Setenv("FIRESTORE_EMULATOR_HOST", info.FirestoreHost); err != nil {
		return nil, fmt.Errorf("export FIRESTORE_EMULATOR_HOST: %w", err)
	}
	if err := os.Setenv("PUBSUB_EMULATOR_HOST", info.PubSubHost); err != nil {
		return nil, fmt.Errorf("export PUBSUB_EMULATOR_HOST: %w", err)
	}
	env := &Env{
		APIServerURL:  info.APIServerURL,
		AdminConfig:   info.AdminConfig(),
		PatcherConfig: info.PatcherConfig(),
		Kubeconfig:    info.AdminKubeconfig,
		FirestoreHost: info.FirestoreHost,
		PubSubHost:    info.PubSubHost,
		AuditLog:      info.AuditLog,
		info:          info,
	}
	return env, nil
}

// startPrivate starts a stack on free ports for this test binary alone.
func startPrivate() (stack.Info, error) {
	binDir := os.Getenv(EnvBinDir)
	if binDir == "" {
		root, err := repoRoot()
		if err != nil {
			return stack.Info{}, err
		}
		binDir = filepath.Join(root, ".nodebatch", "bin")
	}
	ports, err := stack.FreePorts()
	if err != nil {
		return stack.Info{}, err
	}
	dir, err := os.MkdirTemp("", "nodebatch-harness-")
	if err != nil {
		return stack.Info{}, fmt.Errorf("create state dir: %w", err)
	}
	shared.tmpDir = dir
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := stack.Start(context.Background(), stack.Config{
		BinDir:   binDir,
		StateDir: dir,
		Ports:    ports,
		Logger:   logger,
	})
	if err != nil {
		return stack.Info{}, err
	}
	shared.private = st
	return st.Info(), nil
}

// repoRoot walks up from the working directory (a package folder under
// `go test`) to the folder holding the nodebatch go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/nodebatch/nodebatch\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repo root: no go.mod of github.com/nodebatch/nodebatch above the working directory; set " + EnvBinDir)
		}
		dir = parent
	}
}

// Kube returns an admin clientset with no client-side throttling.
func (e *Env) Kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(e.AdminConfig)
	if err != nil {
		t.Fatalf("harness: admin clientset: %v", err)
	}
	return c
}

// ProjectID returns a fresh Google Cloud project id. Both emulators keep each
// project's data apart, so tests using different ids never see each other.
func (e *Env) ProjectID(t testing.TB) string {
	t.Helper()
	return "nbt-" + randomHex(t, 6)
}

// Firestore returns a client for project on the emulator, closed on cleanup.
func (e *Env) Firestore(t testing.TB, project string) *firestore.Client {
	t.Helper()
	c, err := fsclient.New(context.Background(), project)
	if err != nil {
		t.Fatalf("harness: Firestore client for %s at %s: %v", project, e.FirestoreHost, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// PubSub returns a client for project on the emulator, closed on cleanup.
func (e *Env) PubSub(t testing.TB, project string) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), project)
	if err != nil {
		t.Fatalf("harness: Pub/Sub client for %s at %s: %v", project, e.PubSubHost, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SeedNodes creates n fresh Nodes named "{prefix}-0000".. with realistic
// labels and taints (see package seed), labelled TestLabel={prefix}, and
// deletes them on cleanup.
func (e *Env) SeedNodes(t testing.TB, n int) (prefix string, names []string) {
	t.Helper()
	prefix = "t" + randomHex(t, 4)
	client := e.Kube(t)
	selector := TestLabel + "=" + prefix
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Errorf("harness: delete nodes %s: %v", selector, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	names, err := seed.Nodes(ctx, client, seed.Options{
		Count:       n,
		Prefix:      prefix,
		ExtraLabels: map[string]string{TestLabel: prefix},
	})
	if err != nil {
		t.Fatalf("harness: seed %d nodes: %v", n, err)
	}
	return prefix, names
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("harness: random id: %v", err)
	}
	return hex.EncodeToString(b)
}
