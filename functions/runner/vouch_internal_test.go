package runner

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/store"
)

// TestVouchChangeSet: the patch path applies the batch's recorded change
// set, takes the event's for a batch written before change_set existed,
// and refuses an event whose set is not the batch's or a batch whose set
// is unreadable.
func TestVouchChangeSet(t *testing.T) {
	team := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}
	other := change.Set{Labels: []change.Label{{Key: "team", Remove: true}}}
	tests := []struct {
		name      string
		changeSet string
		event     change.Set
		want      change.Set
		wantErr   string
	}{
		{"the batch's set", `{"labels":[{"key":"team","value":"ml"}]}`, team, team, ""},
		{"written before change_set existed: the event's", "", other, other, ""},
		{"not the batch's set", `{"labels":[{"key":"team","value":"ml"}]}`, other, change.Set{},
			"event refused: change set label team- is not the batch's label team=ml"},
		{"unreadable", `{"labels":`, team, change.Set{},
			"event refused: the batch's change set is unreadable: unexpected end of JSON input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &store.BatchDoc{ID: "b1", Attempt: 1, Lanes: 1, AttemptTotal: 1, ChangeSet: tc.changeSet}
			ev := events.Node{BatchID: "b1", Attempt: 1, Node: "n1", Lanes: 1, Total: 1, LaneSize: 1, Changes: tc.event}
			got, skip, err := (&Runner{}).vouch(context.Background(), ev, b, nil)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				if !errors.Is(err, ErrRefused) {
					t.Errorf("vouch() error = %v, want one wrapping ErrRefused", err)
				}
			}
			if gotErr != tc.wantErr || skip != "" {
				t.Errorf("vouch() = _, %q, %q; want _, \"\", %q", skip, gotErr, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("vouch() set mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
