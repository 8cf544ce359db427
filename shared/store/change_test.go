package store_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestSetChange(t *testing.T) {
	tests := []struct {
		name          string
		set           change.Set
		wantAction    model.Action
		wantChanges   change.Summary
		wantChangeSet string
	}{
		{"labels", change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "old", Remove: true}}},
			model.ActionLabel, change.Summary{Labels: []string{"team=ml", "old-"}},
			`{"labels":[{"key":"team","value":"ml"},{"key":"old","remove":true}]}`},
		{"taints with expectations", change.Set{Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: "NoSchedule", Expect: &change.Expect{}}}},
			model.ActionTaint, change.Summary{Taints: []string{"gpu=true:NoSchedule"}},
			`{"taints":[{"key":"gpu","value":"true","effect":"NoSchedule","expect":{"present":false}}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b store.BatchDoc
			if err := b.SetChange(tc.set); err != nil {
				t.Fatalf("SetChange(%v) = %v", tc.set, err)
			}
			if b.Action != tc.wantAction {
				t.Errorf("SetChange(%v): Action = %q, want %q", tc.set, b.Action, tc.wantAction)
			}
			if diff := cmp.Diff(tc.wantChanges, b.Changes); diff != "" {
				t.Errorf("SetChange(%v): Changes mismatch (-want +got):\n%s", tc.set, diff)
			}
			if b.ChangeSet != tc.wantChangeSet {
				t.Errorf("SetChange(%v): ChangeSet = %s, want %s", tc.set, b.ChangeSet, tc.wantChangeSet)
			}
			got, ok, err := b.Change()
			if err != nil || !ok {
				t.Fatalf("Change() after SetChange = _, %v, %v; want the set", ok, err)
			}
			if diff := cmp.Diff(tc.set, got); diff != "" {
				t.Errorf("Change() after SetChange mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetNodeChanges(t *testing.T) {
	b := store.BatchDoc{ChangeSet: `{"labels":[{"key":"team","value":"ml"}]}`}
	sets := map[string]change.Set{
		"n1": {Labels: []change.Label{{Key: "team", Remove: true}}},
		"n2": {Taints: []change.Taint{{Key: "gpu", Effect: "NoSchedule", Remove: true}}},
	}
	b.SetNodeChanges(sets)
	wantAction, wantChanges := change.Summarize(sets)
	if b.Action != wantAction {
		t.Errorf("SetNodeChanges: Action = %q, want %q", b.Action, wantAction)
	}
	if diff := cmp.Diff(wantChanges, b.Changes); diff != "" {
		t.Errorf("SetNodeChanges: Changes mismatch (-want +got):\n%s", diff)
	}
	if _, ok, err := b.Change(); ok || err != nil {
		t.Errorf("Change() after SetNodeChanges = _, %v, %v; want no set, no error", ok, err)
	}
}

func TestChange(t *testing.T) {
	tests := []struct {
		name      string
		changeSet string
		want      change.Set
		wantOK    bool
		wantErr   string
	}{
		{"written before change_set existed", "", change.Set{}, false, ""},
		{"a set", `{"labels":[{"key":"team","value":"ml","expect":{"present":true,"value":"web"}}]}`,
			change.Set{Labels: []change.Label{{Key: "team", Value: "ml", Expect: &change.Expect{Present: true, Value: "web"}}}}, true, ""},
		{"unreadable", `{"labels":`, change.Set{}, false, "unexpected end of JSON input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := store.BatchDoc{ChangeSet: tc.changeSet}
			got, ok, err := b.Change()
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if ok != tc.wantOK || gotErr != tc.wantErr {
				t.Errorf("Change() of %q = _, %v, %q; want _, %v, %q", tc.changeSet, ok, gotErr, tc.wantOK, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Change() of %q mismatch (-want +got):\n%s", tc.changeSet, diff)
			}
		})
	}
}
