package progress

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestCompute(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	now := start.Add(10 * time.Second)
	running := store.BatchDoc{ID: "b1", Action: model.ActionLabel, Total: 100, Lanes: 2, Attempt: 1, State: model.StateRunning, StartedAt: start}
	lane := func(attempt, n, size int, c model.Counts, node string, at time.Duration, f ...model.Failure) store.LaneDoc {
		return store.LaneDoc{Attempt: attempt, Lane: n, Size: size, Counts: c, CurrentNode: node, UpdatedAt: start.Add(at), Failures: f}
	}
	final := func(s model.State, c model.Counts, reason string) store.BatchDoc {
		b := running
		b.State, b.Counts, b.Reason, b.FinishedAt = s, c, reason, start.Add(20*time.Second)
		b.Timing = &model.Timing{NodesPerSecond: 5}
		return b
	}
	retried := running
	retried.Attempt, retried.Adjust = 2, model.Counts{Failed: 2}

	tests := []struct {
		name  string
		b     store.BatchDoc
		lanes []store.LaneDoc
		want  Message
	}{{
		name: "pending, no lanes yet",
		b:    store.BatchDoc{ID: "b0", Action: model.ActionTaint, Total: 10, Attempt: 1, State: model.StatePending},
		want: Message{TaskID: "b0", Type: TypeProgress, Action: model.ActionTaint, Total: 10, Message: "pending", Timestamp: now, State: model.StatePending, Attempt: 1},
	}, {
		name: "running: counts summed, latest lane's node is current, in flight per lane",
		b:    running,
		lanes: []store.LaneDoc{
			lane(1, 0, 50, model.Counts{Succeeded: 20, Unchanged: 3}, "node-040", 2*time.Second),
			lane(1, 1, 50, model.Counts{Succeeded: 28, Failed: 2}, "node-061", 3*time.Second, model.Failure{Node: "node-009", Reason: "forbidden"}, model.Failure{Node: "node-003", Reason: "gone"}),
		},
		want: Message{
			TaskID: "b1", Type: TypeProgress, Action: model.ActionLabel, Current: 50, Total: 100, Progress: 50,
			CurrentNode: "node-061", Message: "50 of 100 nodes done", Timestamp: now, State: model.StateRunning, Attempt: 1,
			Counts:      model.Counts{Succeeded: 48, Failed: 2, Unchanged: 3},
			FailedNodes: []model.Failure{{Node: "node-003", Reason: "gone"}, {Node: "node-009", Reason: "forbidden"}},
			Rate:        5, ETASeconds: 10, InFlight: map[int]string{0: "node-040", 1: "node-061"},
			Written: start.Add(3 * time.Second),
		},
	}, {
		name:  "complete lane is not in flight",
		b:     running,
		lanes: []store.LaneDoc{lane(1, 0, 2, model.Counts{Succeeded: 2}, "node-002", time.Second)},
		want: Message{
			TaskID: "b1", Type: TypeProgress, Action: model.ActionLabel, Current: 2, Total: 100, Progress: 2,
			CurrentNode: "node-002", Message: "2 of 100 nodes done", Timestamp: now, State: model.StateRunning, Attempt: 1,
			Counts: model.Counts{Succeeded: 2}, Rate: 0.2, ETASeconds: 490,
			Written: start.Add(time.Second),
		},
	}, {
		name:  "succeeded: batch counts win over lagging lanes",
		b:     final(model.StateSucceeded, model.Counts{Succeeded: 100, Unchanged: 4}, ""),
		lanes: []store.LaneDoc{lane(1, 0, 50, model.Counts{Succeeded: 50}, "node-098", time.Second)},
		want: Message{
			TaskID: "b1", Type: TypeComplete, Action: model.ActionLabel, Current: 100, Total: 100, Progress: 100,
			CurrentNode: "node-098", Message: "succeeded: 100 nodes done (4 unchanged)", Timestamp: now, State: model.StateSucceeded, Attempt: 1,
			Counts: model.Counts{Succeeded: 100, Unchanged: 4}, Rate: 5, Timing: &model.Timing{NodesPerSecond: 5},
			Written: start.Add(time.Second),
		},
	}, {
		name: "partially failed is complete",
		b:    final(model.StatePartiallyFailed, model.Counts{Succeeded: 99, Failed: 1}, ""),
		want: Message{
			TaskID: "b1", Type: TypeComplete, Action: model.ActionLabel, Current: 100, Total: 100, Progress: 100,
			Message: "partially failed: 1 of 100 nodes failed", Timestamp: now, State: model.StatePartiallyFailed, Attempt: 1,
			Counts: model.Counts{Succeeded: 99, Failed: 1}, Rate: 5, Timing: &model.Timing{NodesPerSecond: 5},
		},
	}, {
		name: "cancelled is complete, with reason",
		b:    final(model.StateCancelled, model.Counts{Succeeded: 30, Cancelled: 70}, "by alice"),
		want: Message{
			TaskID: "b1", Type: TypeComplete, Action: model.ActionLabel, Current: 100, Total: 100, Progress: 100,
			Message: "cancelled: 30 done, 70 cancelled (by alice)", Timestamp: now, State: model.StateCancelled, Attempt: 1,
			Counts: model.Counts{Succeeded: 30, Cancelled: 70}, Rate: 5, Timing: &model.Timing{NodesPerSecond: 5},
		},
	}, {
		name: "failed is error",
		b:    final(model.StateFailed, model.Counts{Failed: 100}, "threshold reached"),
		want: Message{
			TaskID: "b1", Type: TypeError, Action: model.ActionLabel, Current: 100, Total: 100, Progress: 100,
			Message: "failed: 100 of 100 nodes failed (threshold reached)", Timestamp: now, State: model.StateFailed, Attempt: 1,
			Counts: model.Counts{Failed: 100}, Rate: 5, Timing: &model.Timing{NodesPerSecond: 5},
		},
	}, {
		name: "retry: adjust subtracted, only current attempt's failures",
		b:    retried,
		lanes: []store.LaneDoc{
			lane(1, 0, 50, model.Counts{Succeeded: 49, Failed: 1}, "node-099", time.Second, model.Failure{Node: "node-001", Reason: "conflict"}),
			lane(1, 1, 50, model.Counts{Succeeded: 49, Failed: 1}, "node-098", time.Second, model.Failure{Node: "node-002", Reason: "conflict"}),
			lane(2, 0, 1, model.Counts{Failed: 1}, "node-001", 5*time.Second, model.Failure{Node: "node-001", Reason: "still conflict"}),
		},
		want: Message{
			TaskID: "b1", Type: TypeProgress, Action: model.ActionLabel, Current: 99, Total: 100, Progress: 99,
			CurrentNode: "node-001", Message: "99 of 100 nodes done", Timestamp: now, State: model.StateRunning, Attempt: 2,
			Counts:      model.Counts{Succeeded: 98, Failed: 1},
			FailedNodes: []model.Failure{{Node: "node-001", Reason: "still conflict"}},
			Rate:        9.9, ETASeconds: 1.0 / 9.9,
			Written: start.Add(5 * time.Second), // the current attempt's newest lane
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Compute(tt.b, tt.lanes, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Compute() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestComputeCapsFailures(t *testing.T) {
	t.Parallel()
	l := store.LaneDoc{Attempt: 1, Size: 200}
	for i := range 120 {
		l.Failures = append(l.Failures, model.Failure{Node: string(rune('a'+i%26)) + time.Duration(i).String(), Reason: "x"})
	}
	got := Compute(store.BatchDoc{ID: "b", Total: 200, Attempt: 1, State: model.StateRunning}, []store.LaneDoc{l}, time.Now())
	if len(got.FailedNodes) != MaxFailedNodes {
		t.Errorf("len(FailedNodes) = %d, want %d", len(got.FailedNodes), MaxFailedNodes)
	}
}
