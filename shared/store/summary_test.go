package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
)

func TestBits(t *testing.T) {
	var l LaneDoc
	for _, p := range []int{0, 7, 8, 20} {
		l.Mark(p)
	}
	for p := range 24 {
		want := p == 0 || p == 7 || p == 8 || p == 20
		if got := l.Has(p); got != want {
			t.Errorf("Has(%d) = %v, want %v", p, got, want)
		}
	}
	if l.Has(-1) || l.Has(1000) {
		t.Errorf("Has out of range = true")
	}
	if got, want := len(l.DoneBits), 3; got != want {
		t.Errorf("len(DoneBits) = %d, want %d", got, want)
	}
}

func TestFinalize(t *testing.T) {
	start := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	end := start.Add(2 * time.Second)
	tests := []struct {
		name   string
		b      BatchDoc
		lanes  []LaneDoc
		done   bool
		state  model.State
		reason string
		counts model.Counts
		timing model.Timing
	}{
		{
			name:  "all succeeded",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 4, StartedAt: start},
			lanes: []LaneDoc{lat(LaneDoc{Attempt: 1, Size: 2, Counts: model.Counts{Succeeded: 2, Unchanged: 1}}, 10, 40), lat(LaneDoc{Attempt: 1, Lane: 1, Size: 2, Counts: model.Counts{Succeeded: 2}}, 20, 30)},
			done:  true, state: model.StateSucceeded,
			counts: model.Counts{Succeeded: 4, Unchanged: 1},
			timing: model.Timing{NodesPerSecond: 2, P50Millis: 20, P95Millis: 40, MaxMillis: 40},
		},
		{
			name:  "some failed",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 3, StartedAt: start},
			lanes: []LaneDoc{lat(LaneDoc{Attempt: 1, Size: 3, Counts: model.Counts{Succeeded: 2, Failed: 1}}, 5, 5, 5)},
			done:  true, state: model.StatePartiallyFailed,
			counts: model.Counts{Succeeded: 2, Failed: 1},
			timing: model.Timing{NodesPerSecond: 1.5, P50Millis: 5, P95Millis: 5, MaxMillis: 5},
		},
		{
			name:  "all failed",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 2, StartedAt: start},
			lanes: []LaneDoc{{Attempt: 1, Size: 2, Counts: model.Counts{Failed: 2}}},
			done:  true, state: model.StateFailed,
			counts: model.Counts{Failed: 2},
			timing: model.Timing{NodesPerSecond: 1},
		},
		{
			name:  "cancelled",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 2, StartedAt: start, Cancel: &Cancel{Reason: "stop"}},
			lanes: []LaneDoc{{Attempt: 1, Size: 2, Counts: model.Counts{Succeeded: 1, Cancelled: 1}}},
			done:  true, state: model.StateCancelled, reason: "stop",
			counts: model.Counts{Succeeded: 1, Cancelled: 1},
			timing: model.Timing{NodesPerSecond: 1},
		},
		{
			name: "retry attempt replaces failures",
			b:    BatchDoc{Attempt: 2, AttemptTotal: 1, StartedAt: start, AttemptStartedAt: start.Add(time.Second), Adjust: model.Counts{Failed: 1}},
			lanes: []LaneDoc{
				{Attempt: 1, Size: 2, Counts: model.Counts{Succeeded: 1, Failed: 1}, Redeliveries: 2, Conflicts: 1},
				lat(LaneDoc{Attempt: 2, Size: 1, Counts: model.Counts{Succeeded: 1}, Conflicts: 3}, 7),
			},
			done: true, state: model.StateSucceeded,
			counts: model.Counts{Succeeded: 2},
			timing: model.Timing{NodesPerSecond: 1, P50Millis: 7, P95Millis: 7, MaxMillis: 7, Retries: 6, Redeliveries: 2, ConflictRetries: 4, Attempts: 2},
		},
		{
			name:  "failure threshold",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 4, StartedAt: start, Cancel: &Cancel{Reason: "max_failures 2 reached", Threshold: true}},
			lanes: []LaneDoc{{Attempt: 1, Size: 4, Counts: model.Counts{Succeeded: 1, Failed: 2, Cancelled: 1}}},
			done:  true, state: model.StateFailed, reason: "max_failures 2 reached",
			counts: model.Counts{Succeeded: 1, Failed: 2, Cancelled: 1},
			timing: model.Timing{NodesPerSecond: 2},
		},
		{
			name: "retry of failed nodes of a cancelled batch stays cancelled",
			b:    BatchDoc{Attempt: 2, AttemptTotal: 1, StartedAt: start, Adjust: model.Counts{Failed: 1}, Reason: "stop"},
			lanes: []LaneDoc{
				{Attempt: 1, Size: 3, Counts: model.Counts{Succeeded: 1, Failed: 1, Cancelled: 1}},
				{Attempt: 2, Size: 1, Counts: model.Counts{Succeeded: 1}},
			},
			done: true, state: model.StateCancelled, reason: "stop",
			counts: model.Counts{Succeeded: 2, Cancelled: 1},
			timing: model.Timing{NodesPerSecond: 0.5, Attempts: 2},
		},
		{
			name:  "not done",
			b:     BatchDoc{Attempt: 1, AttemptTotal: 4, StartedAt: start},
			lanes: []LaneDoc{{Attempt: 1, Size: 2, Counts: model.Counts{Succeeded: 2}}, {Attempt: 1, Lane: 1, Size: 2, Counts: model.Counts{Succeeded: 1}}},
			done:  false, state: model.StatePartiallyFailed, // not final; computed only for the record
			counts: model.Counts{Succeeded: 3},
			timing: model.Timing{NodesPerSecond: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AttemptDone(&tt.b, tt.lanes); got != tt.done {
				t.Errorf("AttemptDone = %v, want %v", got, tt.done)
			}
			if !tt.done {
				return
			}
			got := Finalize(&tt.b, tt.lanes, end)
			if got.State != tt.state {
				t.Errorf("state = %s, want %s", got.State, tt.state)
			}
			if diff := cmp.Diff(tt.counts, got.Counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if got.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", got.Reason, tt.reason)
			}
			want := tt.timing
			want.Start, want.End = start, end
			if want.Attempts == 0 {
				want.Attempts = 1
			}
			if diff := cmp.Diff(&want, got.Timing); diff != "" {
				t.Errorf("timing (-want +got):\n%s", diff)
			}
			if !got.FinishedAt.Equal(end) {
				t.Errorf("finished_at = %v, want %v", got.FinishedAt, end)
			}
		})
	}
}

// lat is l with the latencies ms counted.
func lat(l LaneDoc, ms ...int64) LaneDoc {
	for _, m := range ms {
		l.AddLatency(m)
	}
	return l
}

func TestLatencyBucket(t *testing.T) {
	for _, tt := range []struct{ in, want int64 }{
		{-3, 0}, {0, 0}, {7, 7}, {99, 99}, {100, 100}, {104, 100}, {105, 110}, {994, 990}, {995, 1000},
		{1234, 1200}, {98765, 99000}, {123456, 120000},
	} {
		if got := LatencyBucket(tt.in); got != tt.want {
			t.Errorf("LatencyBucket(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// Percentiles from the buckets: nearest rank over the merged lanes of the
// current attempt; the maximum is exact even where its bucket is not.
func TestTimingFromBuckets(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &BatchDoc{Attempt: 1, AttemptTotal: 20, StartedAt: start}
	var ms []int64
	for i := range 19 {
		ms = append(ms, int64(10+i)) // 10..28
	}
	lanes := []LaneDoc{lat(LaneDoc{Attempt: 1}, ms[:10]...), lat(LaneDoc{Attempt: 1, Lane: 1}, append(ms[10:], 1234)...)}
	got := Timing(b, lanes, start.Add(10*time.Second))
	want := model.Timing{Start: start, End: start.Add(10 * time.Second), Attempts: 1, NodesPerSecond: 2,
		P50Millis: 19, P95Millis: 28, MaxMillis: 1234}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Timing (-want +got):\n%s", diff)
	}
}
