package nodepatch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nodebatch/nodebatch/shared/change"
)

var nodesGVR = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

func newNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-0001", ResourceVersion: "7", Labels: map[string]string{"team": "web", "zone": "a"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}
}

// wantAction is one request the patcher must send, sample-controller style.
type wantAction struct {
	verb         string
	patch        string // exact merge patch bytes, for "patch"
	dryRun       bool
	fieldManager string
}

func checkActions(t *testing.T, want []wantAction, got []k8stesting.Action) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("sent %d requests %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		a := got[i]
		if a.GetVerb() != w.verb || a.GetResource() != nodesGVR {
			t.Errorf("request %d = %s %v, want %s nodes", i, a.GetVerb(), a.GetResource(), w.verb)
			continue
		}
		var opts []string
		var fm string
		switch a := a.(type) {
		case k8stesting.PatchActionImpl:
			if a.PatchType != types.MergePatchType {
				t.Errorf("request %d patch type = %s, want %s", i, a.PatchType, types.MergePatchType)
			}
			if string(a.Patch) != w.patch {
				t.Errorf("request %d patch = %s, want %s", i, a.Patch, w.patch)
			}
			opts, fm = a.PatchOptions.DryRun, a.PatchOptions.FieldManager
		default:
			continue
		}
		if fm != w.fieldManager {
			t.Errorf("request %d field manager = %q, want %q", i, fm, w.fieldManager)
		}
		if got := len(opts) == 1 && opts[0] == metav1.DryRunAll; got != w.dryRun || (!w.dryRun && len(opts) != 0) {
			t.Errorf("request %d dryRun = %v, want %v", i, opts, w.dryRun)
		}
	}
}

func TestApplyRequests(t *testing.T) {
	t.Parallel()
	ns := corev1.TaintEffectNoSchedule
	tests := []struct {
		name    string
		set     change.Set
		dryRun  bool
		want    []wantAction
		changed bool
		skipped bool
	}{
		{
			name:    "labels: merge patch of changed keys only, at the read resourceVersion",
			set:     change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "zone", Remove: true}, {Key: "pool", Value: ""}, {Key: "gone", Remove: true}, {Key: "zz", Value: "same"}}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"pool":"","team":"ml","zone":null,"zz":"same"},"resourceVersion":"7"}}`}},
			changed: true,
		},
		{
			name: "labels already in target state: no write",
			set:  change.Set{Labels: []change.Label{{Key: "team", Value: "web"}, {Key: "gone", Remove: true}}},
			want: []wantAction{{verb: "get"}},
		},
		{
			name:    "labels with expect: resourceVersion precondition",
			set:     change.Set{Labels: []change.Label{{Key: "team", Remove: true, Expect: &change.Expect{Present: true, Value: "web"}}}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":null},"resourceVersion":"7"}}`}},
			changed: true,
		},
		{
			name:    "failed expect: skipped, no write",
			set:     change.Set{Labels: []change.Label{{Key: "team", Remove: true, Expect: &change.Expect{Present: true, Value: "ml"}}}},
			want:    []wantAction{{verb: "get"}},
			skipped: true,
		},
		{
			name:    "labels dry run",
			set:     change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}},
			dryRun:  true,
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", dryRun: true, patch: `{"metadata":{"labels":{"team":"ml"},"resourceVersion":"7"}}`}},
			changed: true,
		},
		{
			name:    "taints: merge patch of the whole new list at the read resourceVersion",
			set:     change.Set{Taints: []change.Taint{{Key: "spot", Effect: ns}}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"resourceVersion":"7"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"spot","effect":"NoSchedule"}]}}`}},
			changed: true,
		},
		{
			name:    "taints dry run",
			set:     change.Set{Taints: []change.Taint{{Key: "gpu", Remove: true}}},
			dryRun:  true,
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", dryRun: true, patch: `{"metadata":{"resourceVersion":"7"},"spec":{"taints":null}}`}},
			changed: true,
		},
		{
			name: "taint already present: no write",
			set:  change.Set{Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: ns}}},
			want: []wantAction{{verb: "get"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(newNode())
			client.ClearActions()
			p := &Patcher{Client: client}
			out, err := p.Apply(context.Background(), "node-0001", tt.set, nil, tt.dryRun)
			if err != nil {
				t.Fatalf("Apply error = %v", err)
			}
			if out.Changed != tt.changed || out.Skipped != tt.skipped {
				t.Errorf("Apply = changed %v skipped %v (%s), want %v %v", out.Changed, out.Skipped, out.SkipReason, tt.changed, tt.skipped)
			}
			checkActions(t, tt.want, client.Actions())
		})
	}
}

// TestApplyConflictRetry: another writer adds a taint between our read and
// our update; the update is refused with 409, and the retry keeps both.
func TestApplyConflictRetry(t *testing.T) {
	t.Parallel()
	ns := corev1.TaintEffectNoSchedule
	client := fake.NewClientset(newNode())
	other := corev1.Taint{Key: "other", Value: "x", Effect: corev1.TaintEffectNoExecute}
	conflicts := 0
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		n, err := client.Tracker().Get(nodesGVR, "", "node-0001")
		if err != nil {
			return true, nil, err
		}
		n2 := n.(*corev1.Node).DeepCopy()
		n2.Spec.Taints = append(n2.Spec.Taints, other)
		n2.ResourceVersion = "8"
		if err := client.Tracker().Update(nodesGVR, n2, ""); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "node-0001", errors.New("the object has been modified"))
	})
	client.ClearActions()
	p := &Patcher{Client: client, FieldManager: "test"}
	out, err := p.Apply(context.Background(), "node-0001", change.Set{Taints: []change.Taint{{Key: "spot", Effect: ns}}}, nil, false)
	if err != nil {
		t.Fatalf("Apply error = %v", err)
	}
	if out.Conflicts != 1 {
		t.Errorf("Conflicts = %d, want 1", out.Conflicts)
	}
	gpu := corev1.Taint{Key: "gpu", Value: "true", Effect: ns}
	spot := corev1.Taint{Key: "spot", Effect: ns}
	checkActions(t, []wantAction{
		{verb: "get"},
		{verb: "patch", fieldManager: "test", patch: `{"metadata":{"resourceVersion":"7"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"spot","effect":"NoSchedule"}]}}`},
		{verb: "get"},
		{verb: "patch", fieldManager: "test", patch: `{"metadata":{"resourceVersion":"8"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"other","value":"x","effect":"NoExecute"},{"key":"spot","effect":"NoSchedule"}]}}`},
	}, client.Actions())
	n, err := client.CoreV1().Nodes().Get(context.Background(), "node-0001", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if diff := cmp.Diff([]corev1.Taint{gpu, other, spot}, n.Spec.Taints); diff != "" {
		t.Errorf("stored taints mismatch (-want +got):\n%s", diff)
	}
}

func TestApplyConflictExhausted(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(newNode())
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "node-0001", errors.New("modified"))
	})
	p := &Patcher{Client: client, MaxConflictRetries: 3}
	out, err := p.Apply(context.Background(), "node-0001", change.Set{Labels: []change.Label{{Key: "a", Value: "b", Expect: &change.Expect{}}}}, nil, false)
	if err == nil {
		t.Fatal("Apply error = nil, want a conflict")
	}
	if got := Classify(err); got != Transient {
		t.Errorf("Classify(%v) = %v, want transient", err, got)
	}
	if out.Conflicts != 4 {
		t.Errorf("Conflicts = %d, want 4 (1 + 3 retries)", out.Conflicts)
	}
}

func TestApplyNodeGone(t *testing.T) {
	t.Parallel()
	p := &Patcher{Client: fake.NewClientset()}
	_, err := p.Apply(context.Background(), "node-0001", change.Set{Labels: []change.Label{{Key: "a", Value: "b"}}}, nil, false)
	if !apierrors.IsNotFound(err) || Classify(err) != Permanent {
		t.Errorf("Apply on a missing node: error %v (class %v), want NotFound, permanent", err, Classify(err))
	}
}

func TestApplyStoresLabels(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(newNode())
	p := &Patcher{Client: client}
	set := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "zone", Remove: true}}}
	if _, err := p.Apply(context.Background(), "node-0001", set, nil, false); err != nil {
		t.Fatalf("Apply error = %v", err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "node-0001", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"team": "ml"}, n.Labels); diff != "" {
		t.Errorf("stored labels mismatch (-want +got):\n%s", diff)
	}
}

// seenOf is what the batch function would have listed of newNode for s.
func seenOf(s change.Set) *change.Observed {
	n := newNode()
	return s.Observe(n.ResourceVersion, n.Labels, n.Spec.Taints)
}

// TestApplySeen: with a snapshot, a change is one merge patch carrying the
// snapshot's resourceVersion and no read; anything the snapshot cannot
// decide safely goes back to reading.
func TestApplySeen(t *testing.T) {
	t.Parallel()
	ns, ne := corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute
	labels := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "zone", Remove: true}, {Key: "gone", Remove: true}}}
	tests := []struct {
		name    string
		set     change.Set
		seen    *change.Observed
		dryRun  bool
		want    []wantAction
		changed bool
		skipped bool
		before  map[string]*string // Outcome before-values of changed keys
	}{
		{
			name:    "labels: one patch with the snapshot's resourceVersion, no get",
			set:     labels,
			seen:    seenOf(labels),
			want:    []wantAction{{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":"ml","zone":null},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web"), "label:zone": ptr("a")},
		},
		{
			name:    "labels dry run: the same patch, server-side dry run",
			set:     labels,
			seen:    seenOf(labels),
			dryRun:  true,
			want:    []wantAction{{verb: "patch", fieldManager: "nodebatch", dryRun: true, patch: `{"metadata":{"labels":{"team":"ml","zone":null},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web"), "label:zone": ptr("a")},
		},
		{
			name: "taints and labels: one patch with the whole new list",
			set:  change.Set{Taints: []change.Taint{{Key: "spot", Effect: ns}}, Labels: []change.Label{{Key: "team", Value: "ml"}}},
			seen: seenOf(change.Set{Taints: []change.Taint{{Key: "spot", Effect: ns}}, Labels: []change.Label{{Key: "team", Value: "ml"}}}),
			want: []wantAction{{verb: "patch", fieldManager: "nodebatch",
				patch: `{"metadata":{"labels":{"team":"ml"},"resourceVersion":"7"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"spot","effect":"NoSchedule"}]}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web"), "taint:spot:NoSchedule": nil},
		},
		{
			name:    "removing the last taint: taints null",
			set:     change.Set{Taints: []change.Taint{{Key: "gpu", Remove: true}}},
			seen:    seenOf(change.Set{Taints: []change.Taint{{Key: "gpu", Remove: true}}}),
			want:    []wantAction{{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"resourceVersion":"7"},"spec":{"taints":null}}`}},
			changed: true,
			before:  map[string]*string{"taint:gpu:NoSchedule": ptr("true")},
		},
		{
			name:    "taint already present, label changes: taints not sent",
			set:     change.Set{Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: ns}}, Labels: []change.Label{{Key: "zone", Value: "b"}}},
			seen:    seenOf(change.Set{Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: ns}}, Labels: []change.Label{{Key: "zone", Value: "b"}}}),
			want:    []wantAction{{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"zone":"b"},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:zone": ptr("a")},
		},
		{
			name:    "snapshot says nothing changes: read, node agrees, no write",
			set:     change.Set{Labels: []change.Label{{Key: "team", Value: "web"}}},
			seen:    seenOf(change.Set{Labels: []change.Label{{Key: "team", Value: "web"}}}),
			want:    []wantAction{{verb: "get"}},
			changed: false,
		},
		{
			name:    "stale snapshot says nothing changes: read, node differs, write",
			set:     change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}},
			seen:    &change.Observed{ResourceVersion: "5", Labels: map[string]string{"team": "ml"}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":"ml"},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web")},
		},
		{
			name:    "expect fails on a stale snapshot: read, holds on the node, write at the read resourceVersion",
			set:     change.Set{Labels: []change.Label{{Key: "team", Remove: true, Expect: &change.Expect{Present: true, Value: "web"}}}},
			seen:    &change.Observed{ResourceVersion: "5", Labels: map[string]string{"team": "other"}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":null},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web")},
		},
		{
			name:    "expect fails on the node too: skipped after the read",
			set:     change.Set{Labels: []change.Label{{Key: "team", Remove: true, Expect: &change.Expect{Present: true, Value: "other"}}}},
			seen:    &change.Observed{ResourceVersion: "5", Labels: map[string]string{"team": "x"}},
			want:    []wantAction{{verb: "get"}},
			skipped: true,
		},
		{
			name: "NoExecute taint: TimeAdded set in the one patch",
			set:  change.Set{Taints: []change.Taint{{Key: "drain", Effect: ne}}},
			seen: seenOf(change.Set{Taints: []change.Taint{{Key: "drain", Effect: ne}}}),
			// the patch bytes carry a time; checked below through the stored node
			changed: true,
			before:  map[string]*string{"taint:drain:NoExecute": nil},
		},
		{
			name:    "snapshot without resourceVersion: today's path",
			set:     labels,
			seen:    &change.Observed{Labels: map[string]string{"team": "web", "zone": "a"}},
			want:    []wantAction{{verb: "get"}, {verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":"ml","zone":null},"resourceVersion":"7"}}`}},
			changed: true,
			before:  map[string]*string{"label:team": ptr("web"), "label:zone": ptr("a")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(newNode())
			client.ClearActions()
			p := &Patcher{Client: client}
			out, err := p.Apply(context.Background(), "node-0001", tt.set, tt.seen, tt.dryRun)
			if err != nil {
				t.Fatalf("Apply error = %v", err)
			}
			if out.Changed != tt.changed || out.Skipped != tt.skipped {
				t.Errorf("Apply = changed %v skipped %v (%s), want %v %v", out.Changed, out.Skipped, out.SkipReason, tt.changed, tt.skipped)
			}
			if out.Conflicts != 0 {
				t.Errorf("Conflicts = %d, want 0", out.Conflicts)
			}
			if diff := cmp.Diff(tt.before, changedBefore(out.Result)); diff != "" {
				t.Errorf("before-values of changed keys (-want +got):\n%s", diff)
			}
			if tt.want == nil {
				if got := client.Actions(); len(got) != 1 || got[0].GetVerb() != "patch" {
					t.Fatalf("sent %v, want one patch", got)
				}
				n, err := client.CoreV1().Nodes().Get(context.Background(), "node-0001", metav1.GetOptions{})
				if err != nil {
					t.Fatalf("get node: %v", err)
				}
				i := slices.IndexFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == "drain" })
				if i < 0 || n.Spec.Taints[i].TimeAdded == nil || n.Spec.Taints[i].TimeAdded.IsZero() {
					t.Errorf("taints after a NoExecute add = %v, want drain with a TimeAdded", n.Spec.Taints)
				}
				return
			}
			checkActions(t, tt.want, client.Actions())
		})
	}
}

// changedBefore maps each changed key of r to its before-value.
func changedBefore(r change.Result) map[string]*string {
	var m map[string]*string
	for _, c := range r.Changes {
		if c.Changed() {
			if m == nil {
				m = map[string]*string{}
			}
			m[c.Key] = c.Before
		}
	}
	return m
}

func ptr(s string) *string { return &s }

// TestApplySeenConflict: the node moved since the snapshot; the one-call
// write gets 409, is counted, and Apply reads and writes as without a
// snapshot, keeping what the other writer did.
func TestApplySeenConflict(t *testing.T) {
	t.Parallel()
	ns := corev1.TaintEffectNoSchedule
	other := corev1.Taint{Key: "other", Value: "x", Effect: ns}
	tests := []struct {
		name string
		set  change.Set
		want []wantAction
	}{
		{
			name: "labels: 409, then get + merge patch",
			set:  change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}},
			want: []wantAction{
				{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":"ml"},"resourceVersion":"7"}}`},
				{verb: "get"},
				{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"labels":{"team":"ml"},"resourceVersion":"8"}}`},
			},
		},
		{
			name: "taints: 409, then get + patch at the new resourceVersion keeping the other writer's taint",
			set:  change.Set{Taints: []change.Taint{{Key: "spot", Effect: ns}}},
			want: []wantAction{
				{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"resourceVersion":"7"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"spot","effect":"NoSchedule"}]}}`},
				{verb: "get"},
				{verb: "patch", fieldManager: "nodebatch", patch: `{"metadata":{"resourceVersion":"8"},"spec":{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule"},{"key":"other","value":"x","effect":"NoSchedule"},{"key":"spot","effect":"NoSchedule"}]}}`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(newNode())
			// Another writer added a taint after the listing: the stored node
			// is at resourceVersion 8, so a write at 7 is refused.
			n := newNode()
			n.Spec.Taints = append(n.Spec.Taints, other)
			n.ResourceVersion = "8"
			if err := client.Tracker().Update(nodesGVR, n, ""); err != nil {
				t.Fatalf("other writer: %v", err)
			}
			client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if strings.Contains(string(a.(k8stesting.PatchActionImpl).Patch), `"resourceVersion":"7"`) {
					return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "node-0001", errors.New("the object has been modified"))
				}
				return false, nil, nil
			})
			client.ClearActions()
			p := &Patcher{Client: client}
			out, err := p.Apply(context.Background(), "node-0001", tt.set, seenOf(tt.set), false)
			if err != nil {
				t.Fatalf("Apply error = %v", err)
			}
			if out.Conflicts != 1 || !out.Changed {
				t.Errorf("Apply = conflicts %d changed %v, want 1 true", out.Conflicts, out.Changed)
			}
			checkActions(t, tt.want, client.Actions())
			got, err := client.CoreV1().Nodes().Get(context.Background(), "node-0001", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("get node: %v", err)
			}
			if !slices.ContainsFunc(got.Spec.Taints, func(t corev1.Taint) bool { return t.Key == "other" }) {
				t.Errorf("taints after Apply = %v: the other writer's taint is lost", got.Spec.Taints)
			}
		})
	}
}

// TestApplySeenErrors: an error of the one-call write other than 409 is the
// answer (no read behind it), and the classes stay what they were.
func TestApplySeenErrors(t *testing.T) {
	t.Parallel()
	set := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}
	p := &Patcher{Client: fake.NewClientset()}
	_, err := p.Apply(context.Background(), "node-0001", set, seenOf(set), false)
	if !apierrors.IsNotFound(err) || Classify(err) != Permanent {
		t.Errorf("Apply on a deleted node: error %v (class %v), want NotFound, permanent", err, Classify(err))
	}
	client := fake.NewClientset(newNode())
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "node-0001", errors.New("modified"))
	})
	p = &Patcher{Client: client, MaxConflictRetries: 2}
	out, err := p.Apply(context.Background(), "node-0001", set, seenOf(set), false)
	if !apierrors.IsConflict(err) || Classify(err) != Transient {
		t.Errorf("Apply with conflicts only: error %v, want a transient conflict", err)
	}
	if out.Conflicts != 3 {
		t.Errorf("Conflicts = %d, want 3 (the snapshot's write, then 2 retries: the limit is shared)", out.Conflicts)
	}
}

// TestWriteBeforeHook: the hook sees each write's plan (the resourceVersion
// it is conditional on and the exact before-values) before it is sent, again
// after a 409; an error from it stops the write and is returned as is.
func TestWriteBeforeHook(t *testing.T) {
	t.Parallel()
	set := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}
	client := fake.NewClientset(newNode())
	conflicted := false
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if conflicted {
			return false, nil, nil
		}
		conflicted = true
		n := newNode()
		n.ResourceVersion = "8"
		n.Labels["team"] = "db"
		if err := client.Tracker().Update(nodesGVR, n, ""); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "node-0001", errors.New("modified"))
	})
	var plans []Plan
	p := &Patcher{Client: client}
	if _, err := p.Write(context.Background(), "node-0001", set, seenOf(set), false, func(_ context.Context, pl Plan) error {
		plans = append(plans, pl)
		return nil
	}); err != nil {
		t.Fatalf("Write error = %v", err)
	}
	ml := ptr("ml")
	want := []Plan{
		{Node: "node-0001", ResourceVersion: "7", Result: change.Result{Changed: true, Changes: []change.KeyChange{{Key: "label:team", Before: ptr("web"), After: ml}}}},
		{Node: "node-0001", ResourceVersion: "8", Result: change.Result{Changed: true, Changes: []change.KeyChange{{Key: "label:team", Before: ptr("db"), After: ml}}}},
	}
	if diff := cmp.Diff(want, plans); diff != "" {
		t.Errorf("plans mismatch (-want +got):\n%s", diff)
	}

	stop := errors.New("stop")
	client = fake.NewClientset(newNode())
	client.ClearActions()
	p = &Patcher{Client: client}
	if _, err := p.Write(context.Background(), "node-0001", set, seenOf(set), false, func(context.Context, Plan) error { return stop }); err != stop {
		t.Errorf("Write with a failing hook: error %v, want the hook's error as is", err)
	}
	checkActions(t, nil, client.Actions())
}
