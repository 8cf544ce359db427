package seed_test

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/seed"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// seedFleet seeds n nodes under a fresh prefix and deletes them on cleanup.
func seedFleet(t *testing.T, client kubernetes.Interface, env *harness.Env, n int) (string, seed.Options) {
	t.Helper()
	prefix := "s" + env.ProjectID(t)[4:12]
	opts := seed.Options{Count: n, Prefix: prefix, ExtraLabels: map[string]string{harness.TestLabel: prefix}}
	t.Cleanup(func() {
		err := client.CoreV1().Nodes().DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix})
		if err != nil {
			t.Errorf("delete seeded nodes: %v", err)
		}
	})
	names, err := seed.Nodes(t.Context(), client, opts)
	if err != nil {
		t.Fatalf("seed.Nodes(%d): %v", n, err)
	}
	if len(names) != n || names[0] != prefix+"-0000" || names[n-1] != seed.Name(prefix, n-1) {
		t.Fatalf("seed.Nodes names = %d names from %q to %q, want %d from %s-0000", len(names), names[0], names[len(names)-1], n, prefix)
	}
	return prefix, opts
}

func list(t *testing.T, client kubernetes.Interface, prefix string) []corev1.Node {
	t.Helper()
	l, err := client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: harness.TestLabel + "=" + prefix})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	return l.Items
}

func TestNodesFleetSpread(t *testing.T) {
	env := harness.Start(t)
	client := env.Kube(t)
	prefix, _ := seedFleet(t, client, env, 60)
	nodes := list(t, client, prefix)

	got := map[string]int{}
	for _, n := range nodes {
		got["zone="+n.Labels["topology.kubernetes.io/zone"]]++
		got["pool="+n.Labels["pool"]]++
		got["arch="+n.Labels["kubernetes.io/arch"]]++
		got["region="+n.Labels["topology.kubernetes.io/region"]]++
		if n.Labels["kubernetes.io/hostname"] == n.Name {
			got["hostname=name"]++
		}
		for k := range n.Labels {
			if k == "node-role.kubernetes.io/control-plane" || k == "node-role.kubernetes.io/worker" {
				got["role="+k[len("node-role.kubernetes.io/"):]]++
			}
		}
		for _, taint := range n.Spec.Taints {
			got["taint="+taint.ToString()]++
		}
	}
	want := map[string]int{
		"zone=us-central1-a": 20, "zone=us-central1-b": 20, "zone=us-central1-c": 20,
		"pool=general": 42, "pool=gpu": 6, "pool=spot": 12,
		"arch=amd64": 57, "arch=arm64": 3,
		"region=us-central1": 60,
		"hostname=name":      60,
		"role=control-plane": 3, "role=worker": 57,
		"taint=node-role.kubernetes.io/control-plane:NoSchedule": 3,
		"taint=nvidia.com/gpu=present:NoSchedule":                6,
		"taint=cloud.google.com/gke-spot=true:NoSchedule":        12,
		// Added by the API server's TaintNodesByCondition admission, as in
		// a real cluster.
		"taint=node.kubernetes.io/not-ready:NoSchedule": 60,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fleet of 60 spread mismatch (-want +got):\n%s", diff)
	}
}

func TestNodesIdempotent(t *testing.T) {
	env := harness.Start(t)
	client := env.Kube(t)
	ctx := t.Context()
	prefix, opts := seedFleet(t, client, env, 20)
	before := map[string]string{}
	for _, n := range list(t, client, prefix) {
		before[n.Name] = n.ResourceVersion
	}

	// Someone drifts node 9 (gpu): drops its pool label and gpu taint, adds
	// their own label and taint.
	drifted := seed.Name(prefix, 9)
	n, err := client.CoreV1().Nodes().Get(ctx, drifted, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", drifted, err)
	}
	delete(n.Labels, "pool")
	n.Labels["team"] = "ml"
	n.Spec.Taints = []corev1.Taint{{Key: "example.com/maintenance", Effect: corev1.TaintEffectNoExecute}}
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("drift %s: %v", drifted, err)
	}

	if _, err := seed.Nodes(ctx, client, opts); err != nil {
		t.Fatalf("second seed.Nodes: %v", err)
	}
	after := list(t, client, prefix)
	if len(after) != 20 {
		t.Errorf("after reseeding: %d nodes, want 20", len(after))
	}
	for _, n := range after {
		if n.Name == drifted {
			continue
		}
		if n.ResourceVersion != before[n.Name] {
			t.Errorf("reseeding wrote untouched node %s (resourceVersion %s -> %s)", n.Name, before[n.Name], n.ResourceVersion)
		}
	}
	n, err = client.CoreV1().Nodes().Get(ctx, drifted, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", drifted, err)
	}
	if got := n.Labels["pool"]; got != "gpu" {
		t.Errorf("reseeded %s label pool = %q, want gpu", drifted, got)
	}
	if got := n.Labels["team"]; got != "ml" {
		t.Errorf("reseeded %s dropped foreign label team: got %q, want ml", drifted, got)
	}
	var taints []string
	for _, taint := range n.Spec.Taints {
		taints = append(taints, taint.ToString())
	}
	want := []string{"example.com/maintenance:NoExecute", "nvidia.com/gpu=present:NoSchedule"}
	if diff := cmp.Diff(want, taints); diff != "" {
		t.Errorf("reseeded %s taints (-want +got):\n%s", drifted, diff)
	}
}
