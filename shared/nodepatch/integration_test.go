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
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// patcherClient is a clientset with the narrowly scoped patcher identity.
func patcherClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	// nodebatch's identity acts only as a person: alice may patch nodes.
	pool, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatalf("patcher pool: %v", err)
	}
	c, err := pool.Client(kubeclient.User{Name: harness.Alice}, "nodepatch-test")
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
// patcher's GET and its write, another writer adds its own taint. The write
// (a merge patch at the read resourceVersion, never a PUT of the whole
// Node) is refused with 409, the patcher reads again, and both taints
// survive.
func TestIntegrationTaintConcurrentWriter(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	name := names[0]
	admin := env.Kube(t)
	ctx := context.Background()
	theirs := corev1.Taint{Key: "example.com/theirs", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}

	var interfered atomic.Bool
	var mu sync.Mutex
	var sent []string
	cfg := rest.CopyConfig(env.PatcherConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			sent = append(sent, r.Method+" "+r.Header.Get("Content-Type"))
			mu.Unlock()
			if r.Method == http.MethodPatch && interfered.CompareAndSwap(false, true) {
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
	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET ", "PATCH application/merge-patch+json", "GET ", "PATCH application/merge-patch+json"}
	if diff := cmp.Diff(want, sent); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
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

// counter counts the requests a client sends, by method.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// countingPatcher is a patcher whose every request is counted.
func countingPatcher(t *testing.T, env *harness.Env) (*nodepatch.Patcher, *counter) {
	t.Helper()
	c := &counter{n: map[string]int{}}
	cfg := rest.CopyConfig(env.PatcherConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.mu.Lock()
			c.n[r.Method]++
			c.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return &nodepatch.Patcher{Client: patcherClient(t, cfg)}, c
}

// observe is what the batch function keeps of a node when it lists it.
func observe(t *testing.T, c kubernetes.Interface, name string, s change.Set) *change.Observed {
	t.Helper()
	n := getNode(t, c, name)
	return s.Observe(n.ResourceVersion, n.Labels, n.Spec.Taints)
}

// taintKeys are the key:effect of a node's taints, in order.
func taintKeys(ts []corev1.Taint) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key+"="+t.Value+":"+string(t.Effect))
	}
	return out
}

// TestIntegrationSeenOneRequest: with a fresh snapshot every change is
// exactly one request (a PATCH) to the real API server, and the node ends
// exactly as the read-modify-write path would leave it.
func TestIntegrationSeenOneRequest(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 6)
	admin := env.Kube(t)
	ctx := context.Background()
	ns, ne := corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute
	// A NoExecute taint with a TimeAdded the patch must carry over untouched.
	earlier := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	addTaint(t, admin, names[5], corev1.Taint{Key: "example.com/drain", Value: "old", Effect: ne, TimeAdded: &earlier})

	tests := []struct {
		name       string
		node       string
		set        change.Set
		wantLabels func(map[string]string)
		wantTaints func([]corev1.Taint) []corev1.Taint
	}{
		{
			name: "labels",
			node: names[0],
			set:  change.Set{Labels: []change.Label{{Key: "nodebatch.dev/team", Value: "ml"}, {Key: "pool", Remove: true}}},
			wantLabels: func(m map[string]string) {
				m["nodebatch.dev/team"] = "ml"
				delete(m, "pool")
			},
		},
		{
			name: "taint and label",
			node: names[1],
			set: change.Set{
				Taints: []change.Taint{{Key: "example.com/ours", Value: "y", Effect: ns}},
				Labels: []change.Label{{Key: "nodebatch.dev/tainted", Value: "yes"}},
			},
			wantLabels: func(m map[string]string) { m["nodebatch.dev/tainted"] = "yes" },
			wantTaints: func(ts []corev1.Taint) []corev1.Taint {
				return append(ts, corev1.Taint{Key: "example.com/ours", Value: "y", Effect: ns})
			},
		},
		{
			name: "remove every taint: the node ends with none",
			node: names[2],
			set: change.Set{Taints: []change.Taint{
				{Key: "node-role.kubernetes.io/control-plane", Remove: true},
				{Key: "node.kubernetes.io/not-ready", Remove: true},
			}},
			wantTaints: func([]corev1.Taint) []corev1.Taint { return nil },
		},
		{
			name: "NoExecute taint added next to an older one",
			node: names[5],
			set:  change.Set{Taints: []change.Taint{{Key: "example.com/evict", Value: "now", Effect: ne}}},
			wantTaints: func(ts []corev1.Taint) []corev1.Taint {
				return append(ts, corev1.Taint{Key: "example.com/evict", Value: "now", Effect: ne})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, count := countingPatcher(t, env)
			before := getNode(t, admin, tt.node)
			if tt.name == "remove every taint: the node ends with none" && len(before.Spec.Taints) != 2 {
				t.Fatalf("seeded control-plane node %s has taints %v, want exactly the control-plane and not-ready ones", tt.node, taintKeys(before.Spec.Taints))
			}
			seen := tt.set.Observe(before.ResourceVersion, before.Labels, before.Spec.Taints)
			start := time.Now().Truncate(time.Second)
			out, err := p.Apply(ctx, tt.node, tt.set, seen, false)
			if err != nil {
				t.Fatalf("Apply error = %v", err)
			}
			if diff := cmp.Diff(map[string]int{http.MethodPatch: 1}, count.get()); diff != "" {
				t.Errorf("requests sent (-want +got):\n%s", diff)
			}
			if !out.Changed || out.Conflicts != 0 {
				t.Errorf("Apply = changed %v conflicts %d, want true 0", out.Changed, out.Conflicts)
			}
			after := getNode(t, admin, tt.node)
			if out.ResourceVersion != after.ResourceVersion {
				t.Errorf("Outcome.ResourceVersion = %s, want %s", out.ResourceVersion, after.ResourceVersion)
			}
			wantLabels := maps.Clone(before.Labels)
			if tt.wantLabels != nil {
				tt.wantLabels(wantLabels)
			}
			if diff := cmp.Diff(wantLabels, after.Labels); diff != "" {
				t.Errorf("labels after Apply (-want +got):\n%s", diff)
			}
			wantTaints := before.Spec.Taints
			if tt.wantTaints != nil {
				wantTaints = tt.wantTaints(slices.Clone(before.Spec.Taints))
			}
			if diff := cmp.Diff(taintKeys(wantTaints), taintKeys(after.Spec.Taints)); diff != "" {
				t.Errorf("taints after Apply (-want +got):\n%s", diff)
			}
			for _, ta := range after.Spec.Taints {
				switch {
				case ta.Effect != ne && ta.TimeAdded != nil:
					t.Errorf("taint %s has TimeAdded %v, want none (not NoExecute)", ta.Key, ta.TimeAdded)
				case ta.Key == "example.com/drain" && (ta.TimeAdded == nil || !ta.TimeAdded.Equal(&earlier)):
					t.Errorf("older NoExecute taint TimeAdded = %v, want it kept at %v", ta.TimeAdded, earlier)
				case ta.Key == "example.com/evict" && (ta.TimeAdded == nil || ta.TimeAdded.Time.Before(start)):
					t.Errorf("new NoExecute taint TimeAdded = %v, want set by this Apply (not before %v)", ta.TimeAdded, start)
				}
			}
			// A write that only removes leaves nodebatch owning no field, so
			// the API server keeps no managedFields entry for it.
			owns := slices.ContainsFunc(after.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == "nodebatch" })
			if wantOwns := len(after.Spec.Taints) > 0 || tt.wantLabels != nil; owns != wantOwns {
				t.Errorf("node %s has a managedFields entry for nodebatch: %v, want %v", tt.node, owns, wantOwns)
			}
		})
	}
}

// TestIntegrationSeenStale: another writer changes the node after the
// snapshot. The one-call write is refused (409), counted, and the fallback
// reads and writes again: the other writer's work survives and the
// before-values are the ones the write replaced.
func TestIntegrationSeenStale(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 2)
	admin := env.Kube(t)
	ctx := context.Background()
	ns := corev1.TaintEffectNoSchedule
	theirs := corev1.Taint{Key: "example.com/theirs", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}

	t.Run("taint added by another writer", func(t *testing.T) {
		name := names[0]
		set := change.Set{Taints: []change.Taint{{Key: "example.com/ours", Value: "y", Effect: ns}}, Labels: []change.Label{{Key: "nodebatch.dev/tainted", Value: "yes"}}}
		seen := observe(t, admin, name, set)
		addTaint(t, admin, name, theirs)
		p, count := countingPatcher(t, env)
		out, err := p.Apply(ctx, name, set, seen, false)
		if err != nil {
			t.Fatalf("Apply error = %v", err)
		}
		if diff := cmp.Diff(map[string]int{http.MethodPatch: 2, http.MethodGet: 1}, count.get()); diff != "" {
			t.Errorf("requests sent (-want +got):\n%s", diff)
		}
		if out.Conflicts != 1 || !out.Changed {
			t.Errorf("Apply = conflicts %d changed %v, want 1 true", out.Conflicts, out.Changed)
		}
		n := getNode(t, admin, name)
		if !hasTaint(n, theirs.Key, theirs.Effect) || !hasTaint(n, "example.com/ours", ns) {
			t.Errorf("taints after the race = %v, want both theirs and ours", taintKeys(n.Spec.Taints))
		}
		if n.Labels["nodebatch.dev/tainted"] != "yes" {
			t.Errorf("label of the same set missing: %v", n.Labels)
		}
	})

	t.Run("touched label changed by another writer", func(t *testing.T) {
		name := names[1]
		set := change.Set{Labels: []change.Label{{Key: "pool", Value: "batch"}}}
		seen := observe(t, admin, name, set)
		n := getNode(t, admin, name)
		n.Labels["pool"] = "theirs"
		if _, err := admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{FieldManager: "other-writer"}); err != nil {
			t.Fatalf("other writer: %v", err)
		}
		p, count := countingPatcher(t, env)
		out, err := p.Apply(ctx, name, set, seen, false)
		if err != nil {
			t.Fatalf("Apply error = %v", err)
		}
		if diff := cmp.Diff(map[string]int{http.MethodPatch: 2, http.MethodGet: 1}, count.get()); diff != "" {
			t.Errorf("requests sent (-want +got):\n%s", diff)
		}
		if out.Conflicts != 1 {
			t.Errorf("Conflicts = %d, want 1", out.Conflicts)
		}
		theirsV, batch := "theirs", "batch"
		if diff := cmp.Diff([]change.KeyChange{{Key: "label:pool", Before: &theirsV, After: &batch}}, out.Changes); diff != "" {
			t.Errorf("Outcome.Changes (-want +got):\n%s", diff)
		}
		if got := getNode(t, admin, name).Labels["pool"]; got != "batch" {
			t.Errorf("label pool = %q, want batch", got)
		}
	})
}

// TestIntegrationSeenDryRun: the one-call path as a server-side dry run
// changes nothing and still reports what would change.
func TestIntegrationSeenDryRun(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	name := names[0]
	admin := env.Kube(t)
	before := getNode(t, admin, name)
	sets := []change.Set{
		{Labels: []change.Label{{Key: "nodebatch.dev/dry", Value: "run"}, {Key: "pool", Remove: true}}},
		{Taints: []change.Taint{{Key: "example.com/dry", Effect: corev1.TaintEffectNoExecute}}},
		{Taints: []change.Taint{{Key: "node.kubernetes.io/not-ready", Remove: true}}},
	}
	for _, s := range sets {
		p, count := countingPatcher(t, env)
		out, err := p.Apply(context.Background(), name, s, s.Observe(before.ResourceVersion, before.Labels, before.Spec.Taints), true)
		if err != nil {
			t.Fatalf("dry-run Apply(%v) error = %v", s, err)
		}
		if !out.Changed {
			t.Errorf("dry-run Apply(%v).Changed = false, want true (it would change)", s)
		}
		if diff := cmp.Diff(map[string]int{http.MethodPatch: 1}, count.get()); diff != "" {
			t.Errorf("dry-run Apply(%v) requests (-want +got):\n%s", s, diff)
		}
	}
	after := getNode(t, admin, name)
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("dry run changed resourceVersion %s → %s", before.ResourceVersion, after.ResourceVersion)
	}
	if diff := cmp.Diff(before.Labels, after.Labels); diff != "" {
		t.Errorf("dry run changed labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(taintKeys(before.Spec.Taints), taintKeys(after.Spec.Taints)); diff != "" {
		t.Errorf("dry run changed taints (-want +got):\n%s", diff)
	}
}

// TestIntegrationSeenPermanent: the API server's refusal of the one-call
// write is the answer, with no read behind it.
func TestIntegrationSeenPermanent(t *testing.T) {
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	admin := env.Kube(t)
	set := change.Set{Taints: []change.Taint{{Key: "ok", Value: "bad value", Effect: corev1.TaintEffectNoSchedule}}}
	p, count := countingPatcher(t, env)
	_, err := p.Apply(context.Background(), names[0], set, observe(t, admin, names[0], set), false)
	if !apierrors.IsInvalid(err) || nodepatch.Classify(err) != nodepatch.Permanent {
		t.Fatalf("Apply error = %v, want invalid (permanent)", err)
	}
	if diff := cmp.Diff(map[string]int{http.MethodPatch: 1}, count.get()); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
	}
}
