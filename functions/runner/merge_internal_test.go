package runner

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func sp(s string) *string { return &s }

// TestMerge: an earlier delivery's unresolved intent makes unknown exactly
// the keys this delivery's write found already at the target; the keys it
// changed itself keep their exact before-values.
func TestMerge(t *testing.T) {
	prior := &store.Intent{ResourceVersion: "7",
		Before: map[string]*string{"label:a": sp("0"), "label:b": nil},
		After:  map[string]*string{"label:a": sp("1"), "label:b": sp("1")}}
	tests := []struct {
		name          string
		before, after map[string]*string
		changed       bool
		wantUnknown   []string
		wantBefore    map[string]*string
	}{
		{"the earlier write landed: both at the target", map[string]*string{"label:a": sp("1"), "label:b": sp("1")},
			map[string]*string{"label:a": sp("1"), "label:b": sp("1")}, false, []string{"label:a", "label:b"}, map[string]*string{}},
		{"another writer reset one key: it is written again, exactly", map[string]*string{"label:a": sp("9"), "label:b": sp("1")},
			map[string]*string{"label:a": sp("1"), "label:b": sp("1")}, true, []string{"label:b"}, map[string]*string{"label:a": sp("9")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := store.NodeDoc{State: model.NodeSucceeded, Changed: tt.changed, Before: tt.before, After: tt.after}
			merge(&doc, prior)
			if diff := cmp.Diff(tt.wantUnknown, doc.Unknown); diff != "" {
				t.Errorf("unknown (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantBefore, doc.Before); diff != "" {
				t.Errorf("before (-want +got):\n%s", diff)
			}
			if !doc.Changed || doc.Reason == "" {
				t.Errorf("merged = changed %v reason %q, want changed with a reason", doc.Changed, doc.Reason)
			}
		})
	}
	doc := store.NodeDoc{State: model.NodeSucceeded, Before: map[string]*string{"label:a": sp("0")}}
	merge(&doc, nil)
	if doc.Unknown != nil || doc.Changed {
		t.Errorf("merge without a prior intent changed the result: %+v", doc)
	}
}

func TestSameSet(t *testing.T) {
	a := change.Set{Labels: []change.Label{{Key: "k", Value: "v"}}}
	tests := []struct {
		x, y change.Set
		want bool
	}{
		{a, change.Set{Labels: []change.Label{{Key: "k", Value: "v"}}, Taints: []change.Taint{}}, true},
		{change.Set{}, change.Set{Labels: []change.Label{}, Taints: []change.Taint{}}, true},
		{a, change.Set{Labels: []change.Label{{Key: "k", Value: "w"}}}, false},
		{a, change.Set{Labels: []change.Label{{Key: "k", Value: "v", Expect: &change.Expect{}}}}, false},
	}
	for i, tt := range tests {
		if got := sameSet(tt.x, tt.y); got != tt.want {
			t.Errorf("%d: sameSet(%v, %v) = %v, want %v", i, tt.x, tt.y, got, tt.want)
		}
	}
}
