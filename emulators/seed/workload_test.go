package seed_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/seed"
)

func TestPodKind(t *testing.T) {
	got := make([]seed.Kind, 10)
	for j := range got {
		got[j] = seed.PodKind(j)
	}
	want := []seed.Kind{seed.KindAgent, seed.KindWeb, seed.KindExact, seed.KindExists, seed.KindSlow, seed.KindSystem, seed.KindDB, seed.KindNoSchedule, seed.KindWeb, seed.KindExact}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PodKind(0..9) (-want +got):\n%s", diff)
	}
}

// TestWorkloads seeds pods on two nodes twice (idempotent), checks what the
// API server holds, and deletes them.
func TestWorkloads(t *testing.T) {
	env := harness.Start(t)
	client := env.Kube(t)
	_, names := env.SeedNodes(t, 2)
	ns := "w" + env.ProjectID(t)[4:12]
	opts := seed.WorkloadOptions{Namespace: ns, Nodes: names, PodsPerNode: 9}
	for range 2 {
		if err := seed.Workloads(t.Context(), client, opts); err != nil {
			t.Fatalf("Workloads: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := seed.DeleteWorkloads(ctx, client, ns); err != nil {
			t.Errorf("DeleteWorkloads: %v", err)
		}
	})
	pods, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	got := map[string]int{}
	for _, p := range pods.Items {
		got[p.Spec.NodeName+"/"+p.Labels["app"]]++
		if p.Labels["app"] == string(seed.KindAgent) {
			c := metav1.GetControllerOf(&p)
			if c == nil || c.Kind != "DaemonSet" || c.Name != seed.DaemonSetName {
				t.Errorf("pod %s controller = %+v, want DaemonSet %s", p.Name, c, seed.DaemonSetName)
			}
		}
	}
	want := map[string]int{}
	for _, n := range names {
		for j := range 9 {
			want[n+"/"+string(seed.PodKind(j))]++
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pods by node/kind (-want +got):\n%s", diff)
	}
	for name, allowed := range map[string]int32{"web": seed.WebDisruptionsAllowed, "db": seed.DBDisruptionsAllowed} {
		pdb, err := client.PolicyV1().PodDisruptionBudgets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get budget %s: %v", name, err)
		}
		if pdb.Status.DisruptionsAllowed != allowed {
			t.Errorf("budget %s disruptionsAllowed = %d, want %d", name, pdb.Status.DisruptionsAllowed, allowed)
		}
	}
	if err := seed.DeleteWorkloads(t.Context(), client, ns); err != nil {
		t.Fatalf("DeleteWorkloads: %v", err)
	}
	left, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	if len(left.Items) != 0 {
		t.Errorf("after DeleteWorkloads %d pods remain, want 0 (grace period 0)", len(left.Items))
	}
}
