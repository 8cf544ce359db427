package ui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/seed"
)

// seedPods binds seed's pods (one of each kind) to nodes for the guard's
// browser test (e2e/guard.test.js), deleted on cleanup, and returns the
// nodes as NODEBATCH_E2E_POD_NODES wants them.
func seedPods(t *testing.T, env *harness.Env, nodes []string) string {
	t.Helper()
	client := env.Kube(t)
	ns := "w" + env.ProjectID(t)[4:12]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := seed.DeleteWorkloads(ctx, client, ns); err != nil {
			t.Errorf("delete workloads: %v", err)
		}
	})
	if err := seed.Workloads(t.Context(), client, seed.WorkloadOptions{Namespace: ns, Nodes: nodes, PodsPerNode: 8}); err != nil {
		t.Fatalf("seed workloads: %v", err)
	}
	return strings.Join(nodes, ",")
}
