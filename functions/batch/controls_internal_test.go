package batch

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func sp(s string) *string { return &s }

func TestInverse(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]*string
		want          change.Set
	}{
		{
			name:   "label added, overwritten, removed",
			before: map[string]*string{"label:new": nil, "label:team": sp("a"), "label:old": sp("x")},
			after:  map[string]*string{"label:new": sp("1"), "label:team": sp("b"), "label:old": nil},
			want: change.Set{Labels: []change.Label{
				{Key: "new", Remove: true, Expect: &change.Expect{Present: true, Value: "1"}},
				{Key: "old", Value: "x", Expect: &change.Expect{Present: false}},
				{Key: "team", Value: "a", Expect: &change.Expect{Present: true, Value: "b"}},
			}},
		},
		{
			name:   "taint added, value changed, removed",
			before: map[string]*string{"taint:gpu:NoSchedule": nil, "taint:d:NoExecute": sp("x"), "taint:spot:NoSchedule": sp("")},
			after:  map[string]*string{"taint:gpu:NoSchedule": sp("yes"), "taint:d:NoExecute": sp("y"), "taint:spot:NoSchedule": nil},
			want: change.Set{Taints: []change.Taint{
				{Key: "d", Value: "x", Effect: "NoExecute", Expect: &change.Expect{Present: true, Value: "y"}},
				{Key: "gpu", Effect: "NoSchedule", Remove: true, Expect: &change.Expect{Present: true, Value: "yes"}},
				{Key: "spot", Effect: "NoSchedule", Expect: &change.Expect{Present: false}},
			}},
		},
		{
			name:   "unchanged keys and a remove-all that found nothing are left alone",
			before: map[string]*string{"label:same": sp("v"), "taint:gone": nil, "label:absent": nil},
			after:  map[string]*string{"label:same": sp("v"), "taint:gone": nil, "label:absent": nil},
			want:   change.Set{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skip := runner.RevertSet(store.NodeDoc{Before: tt.before, After: tt.after})
			if skip != "" {
				t.Errorf("RevertSet skip = %q, want none", skip)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("inverse (-want +got):\n%s", diff)
			}
			if len(got.Labels)+len(got.Taints) > 0 {
				if errs := got.Validate(nil, change.DefaultProtection()); len(errs) > 0 {
					t.Errorf("inverse is not a valid set: %v", errs)
				}
			}
		})
	}
}

func TestSettled(t *testing.T) {
	lane := func(l, size, done int) store.LaneDoc {
		return store.LaneDoc{Lane: l, Size: size, Counts: model.Counts{Succeeded: done}}
	}
	pending := func(l store.LaneDoc, pos int) store.LaneDoc {
		l.Pending = map[string]store.Intent{store.PositionKey(pos): {Node: "n", Attempt: 1}}
		return l
	}
	first := map[int]int{0: 3, 1: 10, 2: 4}
	tests := []struct {
		name  string
		lanes []store.LaneDoc
		want  bool
	}{
		{"nothing moved", []store.LaneDoc{lane(0, 10, 3), lane(1, 10, 10), lane(2, 9, 4)}, false},
		{"one lane moved", []store.LaneDoc{lane(0, 10, 4), lane(1, 10, 10), lane(2, 9, 4)}, false},
		{"every unfinished lane moved", []store.LaneDoc{lane(0, 10, 4), lane(1, 10, 10), lane(2, 9, 5)}, true},
		{"lanes complete", []store.LaneDoc{lane(0, 3, 3), lane(1, 10, 10), lane(2, 4, 4)}, true},
		// A dead letter moved lane 0 while its next node's write, recorded
		// as an intent, is in flight: not settled until that is counted.
		{"moved with a write pending", []store.LaneDoc{pending(lane(0, 10, 4), 4), lane(1, 10, 10), lane(2, 9, 5)}, false},
	}
	for _, tt := range tests {
		if got := settled(tt.lanes, first); got != tt.want {
			t.Errorf("%s: settled = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSplitAction(t *testing.T) {
	tests := []struct {
		seg, id, action string
		ok              bool
	}{
		{"20261127t050000-9f3a:cancel", "20261127t050000-9f3a", "cancel", true},
		{"b1:retry", "b1", "retry", true},
		{"b1", "", "", false},
		{"b1:", "", "", false},
		// The id is the caller's to validate (validID answers 400).
		{":cancel", "", "cancel", true},
		{"B1:cancel", "B1", "cancel", true},
		{"a:b:cancel", "a:b", "cancel", true},
		{"a/b:cancel", "a/b", "cancel", true},
	}
	for _, tt := range tests {
		id, action, ok := splitAction(tt.seg)
		if id != tt.id || action != tt.action || ok != tt.ok {
			t.Errorf("splitAction(%q) = %q, %q, %v, want %q, %q, %v", tt.seg, id, action, ok, tt.id, tt.action, tt.ok)
		}
	}
}

func FuzzSplitAction(f *testing.F) {
	for _, s := range []string{"b1:cancel", "a:b:c", ":", "", "x-y.z:revert", "a/b:cancel", "a%2Fb:retry", "é:revert"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		id, action, ok := splitAction(seg)
		if !ok {
			return
		}
		if id+":"+action != seg || strings.Contains(action, ":") {
			t.Errorf("splitAction(%q) = %q, %q", seg, id, action)
		}
	})
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(&store.Cursor{CreatedAt: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC), ID: "b1"}))
	f.Add("bm90LWpzb24")
	f.Add("")
	f.Add(encodeCursor(&store.Cursor{CreatedAt: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC), ID: "a/b"}))
	f.Add(encodeCursor(&store.Cursor{CreatedAt: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC), ID: "a.b"}))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := decodeCursor(tok)
		if err != nil {
			return
		}
		if err := model.ValidateID(c.ID); err != nil {
			t.Fatalf("decodeCursor(%q) accepted id %q: %v", tok, c.ID, err)
		}
		back, err := decodeCursor(encodeCursor(c))
		if err != nil || !back.CreatedAt.Equal(c.CreatedAt) || back.ID != c.ID {
			t.Errorf("cursor %+v does not round-trip: %+v, %v", c, back, err)
		}
	})
}
