package runner_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// asked records whom PatcherFor was asked to act as.
type asked struct {
	mu    sync.Mutex
	calls []string
}

func (a *asked) patcherFor(p runner.Patcher) func(user string, groups []string, batchID string) (runner.Patcher, error) {
	return func(user string, groups []string, batchID string) (runner.Patcher, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.calls = append(a.calls, user+" "+strings.Join(groups, ",")+" "+batchID)
		return p, nil
	}
}

// TestPatchesAsRecordedRequester: the node is patched as the user the
// batch document records for the event's attempt, never as anyone else.
func TestPatchesAsRecordedRequester(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1"}, 1, func(b *store.BatchDoc) {
		b.Requesters = []store.Requester{{Attempt: 1, Subject: "alice@example.com", User: "alice@example.com", Groups: []string{"team-a"}}}
	})
	a := &asked{}
	p := &patcher{}
	r := &runner.Runner{Store: st, PatcherFor: a.patcherFor(p)}
	for _, ev := range evs {
		if _, err := r.Run(context.Background(), ev); err != nil {
			t.Fatalf("Run(%s) = %v", ev.Node, err)
		}
	}
	if diff := cmp.Diff([]string{"alice@example.com team-a b1", "alice@example.com team-a b1"}, a.calls); diff != "" {
		t.Errorf("PatcherFor calls (-want +got):\n%s", diff)
	}
	if p.calls.Load() != 2 {
		t.Errorf("patches = %d, want 2", p.calls.Load())
	}
}

// TestNoRequesterNoPatch: a batch that records nobody for the attempt gets
// no patch at all; its node fails permanently, naming why.
func TestNoRequesterNoPatch(t *testing.T) {
	st, evs := setup(t, []string{"n0"}, 1, nil)
	a := &asked{}
	p := &patcher{}
	r := &runner.Runner{Store: st, Patcher: p, PatcherFor: a.patcherFor(p)}
	res, err := r.Run(context.Background(), evs[0])
	if err != nil {
		t.Fatalf("Run = %v, want a recorded failure", err)
	}
	if res.Node.State != model.NodeFailed || !strings.Contains(res.Node.Reason, "records no Kubernetes user for attempt 1") {
		t.Errorf("node = %s %q, want failed naming the missing user", res.Node.State, res.Node.Reason)
	}
	if p.calls.Load() != 0 || len(a.calls) != 0 {
		t.Errorf("patches %d, PatcherFor calls %v: want none", p.calls.Load(), a.calls)
	}
}
