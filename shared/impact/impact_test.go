package impact_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/impact"
)

func secs(n int64) *int64 { return &n }

var drain = corev1.Taint{Key: "drain", Value: "now", Effect: corev1.TaintEffectNoExecute}

func TestEvicts(t *testing.T) {
	other := corev1.Taint{Key: "other", Value: "x", Effect: corev1.TaintEffectNoExecute}
	tests := []struct {
		name        string
		taints      []corev1.Taint
		tolerations []corev1.Toleration
		cmpOps      bool
		wantAfter   time.Duration
		wantEvict   bool
	}{
		{"no toleration", []corev1.Taint{drain}, nil, false, 0, true},
		{"no taint", nil, nil, false, 0, false},
		{"exact match", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpEqual, Value: "now", Effect: corev1.TaintEffectNoExecute}}, false, 0, false},
		{"empty operator is Equal", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Value: "now"}}, false, 0, false},
		{"wrong value", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Value: "later", Effect: corev1.TaintEffectNoExecute}}, false, 0, true},
		{"Equal without value does not match a value", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpEqual}}, false, 0, true},
		{"Exists on key", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists}}, false, 0, false},
		{"Exists on other key", []corev1.Taint{drain}, []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}, false, 0, true},
		{"empty key Exists tolerates all", []corev1.Taint{drain, other}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, false, 0, false},
		// Validation refuses an empty key without Exists; the helper matches the value.
		{"empty key Equal, same value", []corev1.Taint{drain}, []corev1.Toleration{{Operator: corev1.TolerationOpEqual, Value: "now"}}, false, 0, false},
		{"empty key Equal, other value", []corev1.Taint{drain}, []corev1.Toleration{{Operator: corev1.TolerationOpEqual, Value: "x"}}, false, 0, true},
		{"effect NoSchedule does not tolerate NoExecute", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, false, 0, true},
		{"empty effect tolerates every effect", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists}}, false, 0, false},
		{"tolerationSeconds delays", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(300)}}, false, 300 * time.Second, true},
		{"tolerationSeconds 0 is at once", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(0)}}, false, 0, true},
		{"negative tolerationSeconds is at once", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(-5)}}, false, 0, true},
		{"one taint of two untolerated", []corev1.Taint{drain, other}, []corev1.Toleration{{Key: "drain", Operator: corev1.TolerationOpExists}}, false, 0, true},
		{"smallest tolerationSeconds of the matches", []corev1.Taint{drain, other}, []corev1.Toleration{
			{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(600)},
			{Key: "other", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(60)},
		}, false, 60 * time.Second, true},
		{"forever and seconds: seconds win", []corev1.Taint{drain, other}, []corev1.Toleration{
			{Key: "drain", Operator: corev1.TolerationOpExists},
			{Key: "other", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(60)},
		}, false, 60 * time.Second, true},
		{"first matching toleration is the one used", []corev1.Taint{drain}, []corev1.Toleration{
			{Key: "drain", Operator: corev1.TolerationOpExists},
			{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(10)},
		}, false, 0, false},
		{"unknown operator tolerates nothing", []corev1.Taint{drain}, []corev1.Toleration{{Key: "drain", Operator: "Maybe"}}, false, 0, true},
		{"Gt with the gate off tolerates nothing", []corev1.Taint{{Key: "v", Value: "5", Effect: corev1.TaintEffectNoExecute}}, []corev1.Toleration{{Key: "v", Operator: corev1.TolerationOpGt, Value: "3"}}, false, 0, true},
		{"Gt with the gate on", []corev1.Taint{{Key: "v", Value: "5", Effect: corev1.TaintEffectNoExecute}}, []corev1.Toleration{{Key: "v", Operator: corev1.TolerationOpGt, Value: "3"}}, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, evict := impact.Evicts(klog.Background(), tt.taints, tt.tolerations, tt.cmpOps)
			if after != tt.wantAfter || evict != tt.wantEvict {
				t.Errorf("Evicts() = %v, %v, want %v, %v", after, evict, tt.wantAfter, tt.wantEvict)
			}
		})
	}
}

func pod(ns, name, node string, labels map[string]string, tol ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tol},
	}
}

func pdb(ns, name string, sel *metav1.LabelSelector, allowed int32) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: sel, MinAvailable: &one},
		Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed},
	}
}

func TestCompute(t *testing.T) {
	ds := pod("apps", "agent-a", "n1", nil)
	yes := true
	ds.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "u1", Controller: &yes}}
	mirror := pod("kube-system", "etcd-n1", "n1", nil)
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "hash"}
	rs := pod("apps", "web-2", "n2", map[string]string{"app": "web"})
	rs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "u2", Controller: &yes}}
	objs := []runtime.Object{
		pod("apps", "web-1", "n1", map[string]string{"app": "web"}),
		rs,
		pod("apps", "db-1", "n1", map[string]string{"app": "db"}),
		pod("apps", "tolerant", "n1", map[string]string{"app": "web"}, corev1.Toleration{Key: "drain", Operator: corev1.TolerationOpExists}),
		pod("apps", "slow", "n2", map[string]string{"app": "db"}, corev1.Toleration{Key: "drain", Operator: corev1.TolerationOpExists, TolerationSeconds: secs(120)}),
		pod("apps", "elsewhere", "n3", map[string]string{"app": "web"}),
		pod("apps", "unbound", "", map[string]string{"app": "web"}),
		pod("other", "web-1", "n1", map[string]string{"app": "web"}),
		ds, mirror,
		pdb("apps", "web", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, 1),
		pdb("apps", "db", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, 2),
		pdb("apps", "everything", &metav1.LabelSelector{}, 100),
		pdb("apps", "none", nil, 0),
		pdb("other", "cache", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}, 0),
	}
	nodes := []impact.Node{
		{Name: "n1"},
		{Name: "n2", Taints: []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}},
		{Name: "n3", Taints: []corev1.Taint{drain}}, // already has it: the change adds nothing
	}
	set := change.Set{Taints: []change.Taint{{Key: "drain", Value: "now", Effect: corev1.TaintEffectNoExecute}}}
	for _, perNode := range []int{0, -1} {
		t.Run(fmt.Sprintf("PerNodeLists=%d", perNode), func(t *testing.T) {
			kube := fake.NewClientset(objs...)
			got, err := impact.Compute(context.Background(), kube, set, nodes, impact.Options{PageSize: 2, PerNodeLists: perNode})
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			want := &impact.Impact{
				NoExecute: true, TaintedNodes: 2, NodesWithEvictions: 2,
				Evictions: 7, EvictNow: 6, DaemonSetPods: 1, StaticPods: 1,
				Summary: "would evict 7 pods on 2 nodes (6 at once, 1 after their tolerationSeconds); 1 budget would be violated: taint eviction ignores budgets",
				Budgets: []impact.Budget{
					{Namespace: "apps", Name: "db", DisruptionsAllowed: 2, Evictions: 2},
					{Namespace: "apps", Name: "everything", DisruptionsAllowed: 100, Evictions: 5},
					{Namespace: "apps", Name: "web", DisruptionsAllowed: 1, Evictions: 2, Violated: true},
				},
				BudgetsViolated: 1,
				Nodes: []impact.NodeImpact{
					{Node: "n1", Pods: []impact.Pod{
						{Namespace: "apps", Name: "agent-a", DaemonSet: true, Budgets: []string{"apps/everything"}},
						{Namespace: "apps", Name: "db-1", Budgets: []string{"apps/db", "apps/everything"}},
						{Namespace: "apps", Name: "web-1", Budgets: []string{"apps/everything", "apps/web"}},
						{Namespace: "kube-system", Name: "etcd-n1", Static: true},
						{Namespace: "other", Name: "web-1"},
					}},
					{Node: "n2", Pods: []impact.Pod{
						{Namespace: "apps", Name: "slow", AfterSeconds: 120, Budgets: []string{"apps/db", "apps/everything"}},
						{Namespace: "apps", Name: "web-2", Budgets: []string{"apps/everything", "apps/web"}},
					}},
				},
			}
			sortBudgets(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Compute() (-want +got):\n%s", diff)
			}
			// Paged: with a page size of 2 every listing takes several calls.
			lists := 0
			for _, a := range kube.Actions() {
				if la, ok := a.(ktesting.ListActionImpl); ok {
					lists++
					if l := la.GetListOptions().Limit; l != 2 {
						t.Errorf("list %s with limit %d, want 2", a.GetResource().Resource, l)
					}
				}
			}
			if lists == 0 {
				t.Error("Compute listed nothing")
			}
		})
	}
}

// sortBudgets puts each pod's budget names in order (they follow the
// listing order of budgets).
func sortBudgets(im *impact.Impact) {
	for _, n := range im.Nodes {
		for i := range n.Pods {
			b := n.Pods[i].Budgets
			for j := 1; j < len(b); j++ {
				for k := j; k > 0 && b[k] < b[k-1]; k-- {
					b[k], b[k-1] = b[k-1], b[k]
				}
			}
		}
	}
}

func TestComputeEvictsNothing(t *testing.T) {
	tests := []struct {
		name      string
		set       change.Set
		nodes     []impact.Node
		wantNotes []string
	}{
		{
			name:      "NoSchedule",
			set:       change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoSchedule}}},
			nodes:     []impact.Node{{Name: "n1"}},
			wantNotes: []string{"taint drain:NoSchedule evicts nothing: NoSchedule keeps new pods that do not tolerate it off the node, running pods stay"},
		},
		{
			name:      "PreferNoSchedule",
			set:       change.Set{Taints: []change.Taint{{Key: "drain", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}}},
			nodes:     []impact.Node{{Name: "n1"}},
			wantNotes: []string{"taint drain=x:PreferNoSchedule evicts nothing: PreferNoSchedule only steers the scheduler away, running pods stay"},
		},
		{
			name:      "NoExecute already there",
			set:       change.Set{Taints: []change.Taint{{Key: "drain", Value: "now", Effect: corev1.TaintEffectNoExecute}}},
			nodes:     []impact.Node{{Name: "n1", Taints: []corev1.Taint{drain}}},
			wantNotes: []string{"taint drain=now:NoExecute evicts nothing: no node gets it new or with a new value"},
		},
		{
			name:  "removing a NoExecute taint",
			set:   change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoExecute, Remove: true}}},
			nodes: []impact.Node{{Name: "n1", Taints: []corev1.Taint{drain}}},
		},
		{
			name:      "a failed expect applies nothing",
			set:       change.Set{Taints: []change.Taint{{Key: "drain", Value: "now", Effect: corev1.TaintEffectNoExecute, Expect: &change.Expect{Present: true, Value: "x"}}}},
			nodes:     []impact.Node{{Name: "n1"}},
			wantNotes: []string{"taint drain=now:NoExecute evicts nothing: no node gets it new or with a new value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fake.NewClientset(pod("apps", "web", "n1", nil))
			got, err := impact.Compute(context.Background(), kube, tt.set, tt.nodes, impact.Options{})
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			want := &impact.Impact{
				Summary: "would evict no pods: the change adds or updates no NoExecute taint",
				Budgets: []impact.Budget{}, Nodes: []impact.NodeImpact{}, Notes: tt.wantNotes,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Compute() (-want +got):\n%s", diff)
			}
			if n := len(kube.Actions()); n != 0 {
				t.Errorf("Compute made %d API calls, want 0", n)
			}
		})
	}
}

func TestComputeUpdatedValueEvicts(t *testing.T) {
	// drain=now → drain=later: a pod tolerating only drain=now is evicted.
	kube := fake.NewClientset(pod("apps", "picky", "n1", nil, corev1.Toleration{Key: "drain", Value: "now", Effect: corev1.TaintEffectNoExecute}))
	set := change.Set{Taints: []change.Taint{{Key: "drain", Value: "later", Effect: corev1.TaintEffectNoExecute}}}
	got, err := impact.Compute(context.Background(), kube, set, []impact.Node{{Name: "n1", Taints: []corev1.Taint{drain}}}, impact.Options{})
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	if got.Evictions != 1 || got.Nodes[0].Pods[0].Name != "picky" {
		t.Errorf("Compute() evicts %d (%+v), want picky", got.Evictions, got.Nodes)
	}
}

func TestComputeListError(t *testing.T) {
	kube := fake.NewClientset()
	kube.PrependReactor("list", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		return true, nil, fmt.Errorf("boom")
	})
	set := change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoExecute}}}
	if _, err := impact.Compute(context.Background(), kube, set, []impact.Node{{Name: "n1"}}, impact.Options{}); err == nil {
		t.Fatal("Compute with a failing list: no error")
	}
}

func TestLimit(t *testing.T) {
	p := func(n string) impact.Pod { return impact.Pod{Namespace: "a", Name: n} }
	mk := func() *impact.Impact {
		return &impact.Impact{Evictions: 5, Nodes: []impact.NodeImpact{
			{Node: "n1", Pods: []impact.Pod{p("1"), p("2")}},
			{Node: "n2", Pods: []impact.Pod{p("3"), p("4"), p("5")}},
		}}
	}
	tests := []struct {
		n         int
		wantNodes []impact.NodeImpact
		wantTrunc bool
	}{
		{10, mk().Nodes, false},
		{5, mk().Nodes, false},
		{3, []impact.NodeImpact{{Node: "n1", Pods: []impact.Pod{p("1"), p("2")}}, {Node: "n2", Pods: []impact.Pod{p("3")}}}, true},
		{2, []impact.NodeImpact{{Node: "n1", Pods: []impact.Pod{p("1"), p("2")}}}, true},
		{0, []impact.NodeImpact{}, true},
	}
	for _, tt := range tests {
		im := mk()
		im.Limit(tt.n)
		if diff := cmp.Diff(tt.wantNodes, im.Nodes); diff != "" || im.Truncated != tt.wantTrunc || im.Evictions != 5 {
			t.Errorf("Limit(%d): truncated %v (want %v), evictions %d; nodes (-want +got):\n%s", tt.n, im.Truncated, tt.wantTrunc, im.Evictions, diff)
		}
	}
}
