package store

import (
	"encoding/json"
	"fmt"

	"github.com/nodebatch/nodebatch/shared/change"
)

// The batch document holds its change twice: as the exact change.Set in
// JSON (ChangeSet), what retry and the patch path apply, and rendered in
// kubectl syntax (Changes, change.Summary), what people read. These
// methods are the one place that encodes and decodes ChangeSet.

// SetChange records s as the change b makes to every node: its action,
// its rendering and the set itself.
func (b *BatchDoc) SetChange(s change.Set) error {
	js, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode change set: %w", err)
	}
	b.Action, b.Changes, b.ChangeSet = s.Action(), s.Summary(), string(js)
	return nil
}

// SetNodeChanges records changes that differ per node (a revert batch's):
// the action and rendering of them all (change.Summarize) and no change
// set, since each node's set is derived again from where it came from.
func (b *BatchDoc) SetNodeChanges(sets map[string]change.Set) {
	b.Action, b.Changes = change.Summarize(sets)
	b.ChangeSet = ""
}

// Change is the change set b makes to every node. ok is false when b
// records none: a revert batch (SetNodeChanges) or a batch written before
// change_set existed. A set that does not decode is encoding/json's error,
// unwrapped: callers say what they were doing, and the patch path quotes
// it in its refusal.
func (b *BatchDoc) Change() (s change.Set, ok bool, err error) {
	if b.ChangeSet == "" {
		return change.Set{}, false, nil
	}
	if err := json.Unmarshal([]byte(b.ChangeSet), &s); err != nil {
		return change.Set{}, false, err
	}
	return s, true, nil
}
