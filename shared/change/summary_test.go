package change

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
)

func TestSetSummary(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		want Summary
	}{
		{"empty", Set{}, Summary{}},
		{"set order, not sorted", Set{Labels: []Label{{Key: "zone", Value: "b"}, {Key: "app", Remove: true}, {Key: "team", Value: ""}}},
			Summary{Labels: []string{"zone=b", "app-", "team="}}},
		{"every taint form", Set{Taints: []Taint{
			{Key: "gpu", Value: "true", Effect: "NoSchedule"},
			{Key: "drain", Effect: "NoExecute"},
			{Key: "old", Effect: "PreferNoSchedule", Remove: true},
			{Key: "any", Remove: true},
		}}, Summary{Taints: []string{"gpu=true:NoSchedule", "drain:NoExecute", "old:PreferNoSchedule-", "any-"}}},
		{"expectations are not rendered", Set{
			Labels: []Label{{Key: "team", Value: "ml", Expect: &Expect{Present: true, Value: "web"}}},
			Taints: []Taint{{Key: "gpu", Remove: true, Effect: "NoSchedule", Expect: &Expect{Present: true}}},
		}, Summary{Labels: []string{"team=ml"}, Taints: []string{"gpu:NoSchedule-"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.set.Summary()); diff != "" {
				t.Errorf("%v.Summary() mismatch (-want +got):\n%s", tc.set, diff)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	many := map[string]Set{}
	var first []string
	for i := range MaxSummarized + 5 {
		l := Label{Key: fmt.Sprintf("k%03d", i), Value: "v"}
		many[fmt.Sprintf("node-%d", i)] = Set{Labels: []Label{l}}
		if i < MaxSummarized {
			first = append(first, l.String())
		}
	}
	tests := []struct {
		name       string
		sets       map[string]Set
		wantAction model.Action
		want       Summary
	}{
		{"none", nil, model.ActionLabel, Summary{}},
		{"distinct and sorted", map[string]Set{
			"a": {Labels: []Label{{Key: "zone", Value: "b"}, {Key: "app", Remove: true}}},
			"b": {Labels: []Label{{Key: "app", Remove: true}, {Key: "team", Value: "ml"}}},
			"c": {Labels: []Label{{Key: "zone", Value: "b"}}},
		}, model.ActionLabel, Summary{Labels: []string{"app-", "team=ml", "zone=b"}}},
		{"a taint on any node makes a taint batch", map[string]Set{
			"a": {Labels: []Label{{Key: "team", Remove: true}}},
			"b": {Taints: []Taint{{Key: "gpu", Effect: "NoSchedule", Remove: true}, {Key: "drain", Value: "x", Effect: "NoExecute"}}},
			"c": {Taints: []Taint{{Key: "gpu", Effect: "NoSchedule", Remove: true}}},
		}, model.ActionTaint, Summary{Labels: []string{"team-"}, Taints: []string{"drain=x:NoExecute", "gpu:NoSchedule-"}}},
		{"empty sets count for nothing", map[string]Set{"a": {}, "b": {Labels: []Label{{Key: "team", Value: "ml"}}}},
			model.ActionLabel, Summary{Labels: []string{"team=ml"}}},
		{"cut to the first MaxSummarized", many, model.ActionLabel, Summary{Labels: first}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			action, got := Summarize(tc.sets)
			if action != tc.wantAction {
				t.Errorf("Summarize() action = %q, want %q", action, tc.wantAction)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Summarize() summary mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
