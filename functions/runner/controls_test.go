package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// TestCancelReadFreshPerNode records a cancel between two nodes of one
// lane: the next node must see it (the batch is read for every node, never
// cached) and is recorded cancelled without a patch.
func TestCancelReadFreshPerNode(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1", "n2"}, 1, nil)
	p := &patcher{}
	r := &runner.Runner{Store: st, Patcher: p}
	ctx := context.Background()
	if _, err := r.Run(ctx, evs[0]); err != nil {
		t.Fatal(err)
	}
	if _, did, err := st.RecordCancel(ctx, "b1", store.Cancel{By: "o", Reason: "stop"}); err != nil || !did {
		t.Fatalf("RecordCancel = %v, %v; want recorded", did, err)
	}
	for _, ev := range evs[1:] {
		if _, err := r.Run(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.calls.Load(); got != 1 {
		t.Errorf("patch calls = %d, want 1 (only the node before the cancel)", got)
	}
	b, _ := st.Batch(ctx, "b1")
	if diff := cmp.Diff(model.Counts{Succeeded: 1, Cancelled: 2}, b.Counts); diff != "" || b.State != model.StateCancelled || b.Reason != "stop" {
		t.Errorf("batch %s %q counts (-want +got):\n%s", b.State, b.Reason, diff)
	}
	if _, did, _ := st.RecordCancel(ctx, "b1", store.Cancel{By: "o", Reason: "again"}); did {
		t.Errorf("RecordCancel on a final batch recorded a cancel")
	}
}

// TestFailureThreshold: every node fails; with max_failures 3 the fourth
// node is never patched and the batch ends failed with the reason.
func TestFailureThreshold(t *testing.T) {
	for _, tc := range []struct{ threshold string }{{"3"}, {"30%"}} {
		t.Run(tc.threshold, func(t *testing.T) {
			st, evs := setup(t, []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"}, 1, func(b *store.BatchDoc) { b.MaxFailures = tc.threshold })
			p := &patcher{err: func(node string) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, node, nil)
			}}
			r := &runner.Runner{Store: st, Patcher: p}
			ctx := context.Background()
			for _, ev := range evs {
				if _, err := r.Run(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.calls.Load(); got != 3 {
				t.Errorf("patch calls = %d, want 3", got)
			}
			b, _ := st.Batch(ctx, "b1")
			if diff := cmp.Diff(model.Counts{Failed: 3, Cancelled: 7}, b.Counts); diff != "" || b.State != model.StateFailed || !strings.Contains(b.Reason, "failure threshold reached: 3 of 10") {
				t.Errorf("batch %s %q counts (-want +got):\n%s", b.State, b.Reason, diff)
			}
		})
	}
}

// TestTimingCountsRetries: a transient error (a redelivery) and the
// patcher's conflict retries show in the batch's timing figures.
func TestTimingCountsRetries(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1"}, 1, nil)
	busy := apierrors.NewTooManyRequests("slow down", 1)
	first := true
	p := &patcher{err: func(node string) error {
		if node == "n0" && first {
			first = false
			return busy
		}
		return nil
	}}
	r := &runner.Runner{Store: st, Patcher: p}
	ctx := context.Background()
	if _, err := r.Run(ctx, evs[0]); err == nil {
		t.Fatal("first delivery succeeded, want a transient error")
	}
	for _, ev := range evs {
		if _, err := r.Run(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := st.Batch(ctx, "b1")
	if b.Timing == nil || b.Timing.Redeliveries != 1 || b.Timing.Retries != 1 || b.Timing.Attempts != 1 || b.Timing.End.IsZero() || b.Timing.Start.IsZero() {
		t.Errorf("timing = %+v, want 1 redelivery, 1 retry, 1 attempt, start and end", b.Timing)
	}
}
