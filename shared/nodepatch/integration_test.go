package nodepatch_test

import (
	"context"
	"maps"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// patcherClient is a clientset with the narrowly scoped patcher identity.
func patcherClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("patcher clientset: %v", err)
	}
	return c
}

func getNode(t *testing.T, c kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", name, err)
	}
	return n
}

func TestIntegrationLabels(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 3)
	admin := env.Kube(t)
	p := &nodepatch.Patcher{Client: patcherClient(t, env.PatcherConfig)}
	set := change.Set{Labels: []change.Label{{Key: "nodebatch.dev/team", Value: "ml"}, {Key: "pool", Remove: true}}}
	ctx := context.Background()
	for _, name := range names {
		before := getNode(t, admin, name)
		out, err := p.Apply(ctx, name, set, nil, false)
		if err != nil {
			t.Fatalf("Apply(%s) error = %v", name, err)
		}
		if !out.Changed {
			t.Errorf("Apply(%s).Changed = false, want true", name)
		}
		after := getNode(t, admin, name)
		want := maps.Clone(before.Labels)
		want["nodebatch.dev/team"] = "ml"
		delete(want, "pool")
		if diff := cmp.Diff(want, after.Labels); diff != "" {
			t.Errorf("labels of %s after Apply (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(before.Spec.Taints, after.Spec.Taints); diff != "" {
			t.Errorf("taints of %s changed by a label Apply (-want +got):\n%s", name, diff)
		}
		if out.ResourceVersion != after.ResourceVersion {
			t.Errorf("Outcome.ResourceVersion = %s, want %s", out.ResourceVersion, after.ResourceVersion)
		}
		if i := slices.IndexFunc(after.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == "nodebatch" }); i < 0 {
			t.Errorf("node %s has no managedFields entry for field manager nodebatch", name)
		}

		// Delivered again: nothing to write, node unchanged.
		again, err := p.Apply(ctx, name, set, nil, false)
		if err != nil {
			t.Fatalf("second Apply(%s) error = %v", name, err)
		}
		if again.Changed || getNode(t, admin, name).ResourceVersion != after.ResourceVersion {
			t.Errorf("second Apply(%s) changed the node: %+v", name, again)
		}
	}
}

// TestIntegrationTaintConcurrentWriter forces the race: between the
// patcher's GET and its PUT, another writer adds its own taint. The PUT is
// refused with 409, the patcher reads again, and both taints survive.
func TestIntegrationTaintConcurrentWriter(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	name := names[0]
	admin := env.Kube(t)
	ctx := context.Background()
	theirs := corev1.Taint{Key: "example.com/theirs", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}

	var interfered atomic.Bool
	cfg := rest.CopyConfig(env.PatcherConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && interfered.CompareAndSwap(false, true) {
				addTaint(t, admin, name, theirs)
			}
			return rt.RoundTrip(r)
		})
	})
	p := &nodepatch.Patcher{Client: patcherClient(t, cfg)}
	ours := change.Taint{Key: "example.com/ours", Value: "y", Effect: corev1.TaintEffectNoSchedule}
	out, err := p.Apply(ctx, name, change.Set{Taints: []change.Taint{ours}, Labels: []change.Label{{Key: "nodebatch.dev/tainted", Value: "yes"}}}, nil, false)
	if err != nil {
		t.Fatalf("Apply error = %v", err)
	}
	if out.Conflicts != 1 {
		t.Errorf("Conflicts = %d, want 1", out.Conflicts)
	}
	n := getNode(t, admin, name)
	if !hasTaint(n, theirs.Key, theirs.Effect) || !hasTaint(n, ours.Key, ours.Effect) {
		t.Errorf("taints after the race = %v, want both %s and %s", n.Spec.Taints, theirs.Key, ours.Key)
	}
	if n.Labels["nodebatch.dev/tainted"] != "yes" {
		t.Errorf("label set in the same update missing: %v", n.Labels)
	}
}

// TestIntegrationTaintsManyWriters: 8 patchers each add their own taint to
// the same node at once; every taint survives.
func TestIntegrationTaintsManyWriters(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	name := names[0]
	p := &nodepatch.Patcher{Client: patcherClient(t, env.PatcherConfig)}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Apply(context.Background(), name, change.Set{Taints: []change.Taint{{Key: "example.com/" + k, Effect: corev1.TaintEffectNoSchedule}}}, nil, false)
		}()
	}
	wg.Wait()
	n := getNode(t, env.Kube(t), name)
	for i, k := range keys {
		if errs[i] != nil {
			t.Errorf("Apply taint %s: %v", k, errs[i])
		}
		if !hasTaint(n, "example.com/"+k, corev1.TaintEffectNoSchedule) {
			t.Errorf("taint example.com/%s lost; node has %v", k, n.Spec.Taints)
		}
	}
}

func TestIntegrationDryRun(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	name := names[0]
	admin := env.Kube(t)
	p := &nodepatch.Patcher{Client: patcherClient(t, env.PatcherConfig)}
	before := getNode(t, admin, name)
	sets := []change.Set{
		{Labels: []change.Label{{Key: "nodebatch.dev/dry", Value: "run"}, {Key: "pool", Remove: true}}},
		{Taints: []change.Taint{{Key: "example.com/dry", Effect: corev1.TaintEffectNoExecute}}},
	}
	for _, s := range sets {
		out, err := p.Apply(context.Background(), name, s, nil, true)
		if err != nil {
			t.Fatalf("dry-run Apply(%v) error = %v", s, err)
		}
		if !out.Changed {
			t.Errorf("dry-run Apply(%v).Changed = false, want true (it would change)", s)
		}
	}
	after := getNode(t, admin, name)
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("dry run changed resourceVersion %s → %s", before.ResourceVersion, after.ResourceVersion)
	}
	if diff := cmp.Diff(before.Labels, after.Labels); diff != "" {
		t.Errorf("dry run changed labels (-want +got):\n%s", diff)
	}
}

func TestIntegrationPermanentErrors(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	p := &nodepatch.Patcher{Client: patcherClient(t, env.PatcherConfig)}
	ctx := context.Background()
	tests := []struct {
		name  string
		node  string
		set   change.Set
		check func(error) bool
	}{
		{"invalid label key", names[0], change.Set{Labels: []change.Label{{Key: "bad key!", Value: "x"}}}, apierrors.IsInvalid},
		{"invalid taint value", names[0], change.Set{Taints: []change.Taint{{Key: "ok", Value: "bad value", Effect: corev1.TaintEffectNoSchedule}}}, apierrors.IsInvalid},
		{"node gone", "no-such-node-" + names[0], change.Set{Labels: []change.Label{{Key: "a", Value: "b"}}}, apierrors.IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Apply(ctx, tt.node, tt.set, nil, false)
			if err == nil || !tt.check(err) {
				t.Fatalf("Apply error = %v, want %s", err, tt.name)
			}
			if got := nodepatch.Classify(err); got != nodepatch.Permanent {
				t.Errorf("Classify(%v) = %v, want permanent", err, got)
			}
		})
	}
}

func addTaint(t *testing.T, c kubernetes.Interface, name string, taint corev1.Taint) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = append(n.Spec.Taints, taint)
		_, err = c.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{FieldManager: "other-writer"})
		return err
	})
	if err != nil {
		t.Errorf("other writer: add taint to %s: %v", name, err)
	}
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key && t.Effect == effect })
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
