package store

import (
	"math"
	"slices"
	"time"

	"github.com/nodebatch/nodebatch/shared/batch"
)

// Counts sums the lanes of every attempt and subtracts b.Adjust (what retries
// re-run), giving the batch's counts by node state.
func Counts(b *BatchDoc, lanes []LaneDoc) batch.Counts {
	var c batch.Counts
	for _, l := range lanes {
		c = c.Add(l.Counts)
	}
	return batch.Counts{
		Succeeded: c.Succeeded - b.Adjust.Succeeded,
		Failed:    c.Failed - b.Adjust.Failed,
		Skipped:   c.Skipped - b.Adjust.Skipped,
		Cancelled: c.Cancelled - b.Adjust.Cancelled,
		Unchanged: c.Unchanged - b.Adjust.Unchanged,
	}
}

// AttemptDone reports whether every node of b's current attempt has a final
// result, judging by that attempt's lanes.
func AttemptDone(b *BatchDoc, lanes []LaneDoc) bool {
	done := 0
	for _, l := range lanes {
		if l.Attempt == b.Attempt {
			done += l.Counts.Done()
		}
	}
	return done >= b.AttemptTotal
}

// FinalState is the state a batch ends in, given its counts: failed when
// the failure threshold stopped it; cancelled when a cancel left nodes
// unreached (in any attempt: a retry of only the failed nodes of a cancelled
// batch stays cancelled); succeeded when nothing failed; failed when nothing
// succeeded; partially_failed otherwise.
func FinalState(b *BatchDoc, c batch.Counts) batch.State {
	switch {
	case b.Cancel != nil && b.Cancel.Threshold:
		return batch.StateFailed
	case c.Cancelled > 0:
		return batch.StateCancelled
	case c.Failed == 0:
		return batch.StateSucceeded
	case c.Succeeded+c.Skipped == 0:
		return batch.StateFailed
	default:
		return batch.StatePartiallyFailed
	}
}

// Finalize returns b as it is when final at now: state, counts and timing
// computed from all its lanes.
func Finalize(b *BatchDoc, lanes []LaneDoc, now time.Time) *BatchDoc {
	nb := *b
	nb.Counts = Counts(b, lanes)
	nb.State = FinalState(b, nb.Counts)
	if (nb.State == batch.StateCancelled || nb.State == batch.StateFailed) && nb.Reason == "" && b.Cancel != nil {
		nb.Reason = b.Cancel.Reason
	}
	nb.FinishedAt = now
	t := Timing(b, lanes, now)
	nb.Timing = &t
	return &nb
}

// Timing computes the batch's timing figures: throughput over the current
// attempt's wall time and per-node latency percentiles (nearest rank) of the
// current attempt's lanes; redeliveries and conflict retries of every
// attempt.
func Timing(b *BatchDoc, lanes []LaneDoc, now time.Time) batch.Timing {
	var lat []int64
	t := batch.Timing{Start: b.StartedAt, End: now, Attempts: max(b.Attempt, 1)}
	for _, l := range lanes {
		if l.Attempt == b.Attempt {
			lat = append(lat, l.LatenciesMS...)
		}
		t.Redeliveries += l.Redeliveries
		t.ConflictRetries += l.Conflicts
	}
	t.Retries = t.Redeliveries + t.ConflictRetries
	slices.Sort(lat)
	start := b.AttemptStartedAt
	if start.IsZero() {
		start = b.StartedAt
	}
	if secs := now.Sub(start).Seconds(); secs > 0 {
		t.NodesPerSecond = math.Round(float64(b.AttemptTotal)/secs*100) / 100
	}
	if len(lat) > 0 {
		t.P50Millis = float64(percentile(lat, 50))
		t.P95Millis = float64(percentile(lat, 95))
		t.MaxMillis = float64(lat[len(lat)-1])
	}
	return t
}

// percentile is the nearest-rank p-th percentile of sorted xs.
func percentile(xs []int64, p int) int64 {
	rank := int(math.Ceil(float64(p) / 100 * float64(len(xs))))
	if rank < 1 {
		rank = 1
	}
	return xs[rank-1]
}
