package batch

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/request"
)

func TestGuard(t *testing.T) {
	noExec := change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoExecute}}}
	noSched := change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoSchedule}}}
	removeNoExec := change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoExecute, Remove: true}}}
	label := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}
	sel := labels.Everything()
	tests := []struct {
		name      string
		guard     Guard
		spec      request.Spec
		nodes     int
		seed      bool
		wantField string // "" : allowed
	}{
		{name: "small selector, labels", spec: request.Spec{Set: label, Selector: sel}, nodes: 50},
		{name: "selector over the limit", spec: request.Spec{Set: label, Selector: sel}, nodes: 51, wantField: "confirm"},
		{name: "selector over a lower limit", guard: Guard{ConfirmOver: 5}, spec: request.Spec{Set: label, Selector: sel}, nodes: 6, wantField: "confirm"},
		{name: "selector over, confirmed", spec: request.Spec{Set: label, Selector: sel, Confirm: 51}, nodes: 51},
		{name: "selector over, max_nodes", spec: request.Spec{Set: label, Selector: sel, MaxNodes: 100}, nodes: 51},
		{name: "selector over, max_nodes exact", spec: request.Spec{Set: label, Selector: sel, MaxNodes: 51}, nodes: 51},
		{name: "selector grew past max_nodes", spec: request.Spec{Set: label, Selector: sel, MaxNodes: 50}, nodes: 51, wantField: "max_nodes"},
		{name: "wrong confirm", spec: request.Spec{Set: label, Selector: sel, Confirm: 50}, nodes: 51, wantField: "confirm"},
		{name: "wrong confirm on an unguarded batch", spec: request.Spec{Set: label, Nodes: []string{"a"}, Confirm: 2}, nodes: 1, wantField: "confirm"},
		{name: "right confirm, max_nodes too small", spec: request.Spec{Set: label, Selector: sel, Confirm: 51, MaxNodes: 10}, nodes: 51, wantField: "max_nodes"},
		{name: "max_nodes as a plain limit", spec: request.Spec{Set: label, Nodes: []string{"a", "b"}, MaxNodes: 1}, nodes: 2, wantField: "max_nodes"},
		{name: "all", spec: request.Spec{Set: label, All: true}, nodes: 3, wantField: "confirm"},
		{name: "all confirmed", spec: request.Spec{Set: label, All: true, Confirm: 3}, nodes: 3},
		{name: "NoExecute on one node", spec: request.Spec{Set: noExec, Nodes: []string{"a"}}, nodes: 1, wantField: "confirm"},
		{name: "NoExecute confirmed", spec: request.Spec{Set: noExec, Nodes: []string{"a"}, Confirm: 1}, nodes: 1},
		{name: "NoSchedule on one node", spec: request.Spec{Set: noSched, Nodes: []string{"a"}}, nodes: 1},
		{name: "removing NoExecute", spec: request.Spec{Set: removeNoExec, Nodes: []string{"a"}}, nodes: 1},
		{name: "dry run needs no confirmation", spec: request.Spec{Set: noExec, All: true, DryRun: true}, nodes: 80},
		{name: "dry run checks max_nodes", spec: request.Spec{Set: label, All: true, DryRun: true, MaxNodes: 3}, nodes: 80, wantField: "max_nodes"},
		{name: "seed NoExecute", spec: request.Spec{Set: noExec, Nodes: []string{"a"}}, nodes: 1, seed: true, wantField: "confirm"},
		{name: "seed NoExecute, guard off", guard: Guard{SeedNoExecuteOff: true}, spec: request.Spec{Set: noExec, Nodes: []string{"a"}}, nodes: 1, seed: true},
		{name: "seed guard off still checks max_nodes", guard: Guard{SeedNoExecuteOff: true}, spec: request.Spec{Set: noExec, Nodes: []string{"a", "b"}, MaxNodes: 1}, nodes: 2, seed: true, wantField: "max_nodes"},
		{name: "seed, many nodes, labels", spec: request.Spec{Set: label, Nodes: make([]string, 80)}, nodes: 80, seed: true},
		{name: "off guard does not affect the API", guard: Guard{SeedNoExecuteOff: true}, spec: request.Spec{Set: noExec, Nodes: []string{"a"}}, nodes: 1, wantField: "confirm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Kube: fake.NewClientset(), Guard: tt.guard}
			names := make([]string, tt.nodes)
			states := map[string]nodeState{}
			for i := range names {
				names[i] = fmt.Sprintf("n%03d", i)
				states[names[i]] = nodeState{}
			}
			g := h.guard(&tt.spec, names, h.predictor(context.Background(), h.Kube, tt.spec.Set, names, states), tt.seed)
			if tt.wantField == "" {
				if g != nil {
					t.Fatalf("guard() = %+v, want nil", g)
				}
				return
			}
			r, ok := g.Details.(*Refusal)
			if !ok {
				t.Fatalf("guard() = %#v, want a *Refusal", g)
			}
			if g.Status() != http.StatusConflict || g.Kind != apierror.ConfirmationRequired || r.Nodes != tt.nodes {
				t.Errorf("guard() = %d %s nodes %d, want 409 confirmation_required nodes %d", g.Status(), g.Code(), r.Nodes, tt.nodes)
			}
			if len(g.Fields) != 1 || g.Fields[0].Field != tt.wantField {
				t.Errorf("guard() fields = %+v, want %s", g.Fields, tt.wantField)
			}
			if setsNoExecute(tt.spec.Set) != (r.Impact != nil) {
				t.Errorf("guard() impact = %+v, want one exactly when the set has NoExecute", r.Impact)
			}
		})
	}
}

func TestGuardImpact(t *testing.T) {
	kube := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ok"}, Spec: corev1.PodSpec{NodeName: "n1",
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}},
	)
	h := &Handler{Kube: kube}
	spec := &request.Spec{Set: change.Set{Taints: []change.Taint{{Key: "drain", Effect: corev1.TaintEffectNoExecute}}}, Nodes: []string{"n1", "n2"}}
	names := []string{"n1", "n2"}
	g := h.guard(spec, names, h.predictor(context.Background(), h.Kube, spec.Set, names, map[string]nodeState{"n1": {}, "n2": {}}), false)
	if g == nil {
		t.Fatal("guard() = nil, want a refusal")
	}
	r, ok := g.Details.(*Refusal)
	if !ok || r.Impact == nil {
		t.Fatalf("guard() = %#v, want a refusal with impact", g)
	}
	want := "the batch needs confirmation: send \"confirm\": 2 (its node count) or a \"max_nodes\" of at least 2; would evict 1 pod on 1 node"
	if diff := cmp.Diff(want, g.Message); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	if r.Impact.Evictions != 1 || r.Impact.Nodes[0].Pods[0].Name != "web" {
		t.Errorf("impact = %+v, want web evicted", r.Impact)
	}
}
