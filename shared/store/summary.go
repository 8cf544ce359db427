package store

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
)

// Counts sums the lanes of every attempt and subtracts b.Adjust (what retries
// re-run), giving the batch's counts by node state.
func Counts(b *BatchDoc, lanes []LaneDoc) model.Counts {
	var c model.Counts
	for _, l := range lanes {
		c = c.Add(l.Counts)
	}
	return model.Counts{
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
func FinalState(b *BatchDoc, c model.Counts) model.State {
	switch {
	case b.Cancel != nil && b.Cancel.Threshold:
		return model.StateFailed
	case c.Cancelled > 0:
		return model.StateCancelled
	case c.Failed == 0:
		return model.StateSucceeded
	case c.Succeeded+c.Skipped == 0:
		return model.StateFailed
	default:
		return model.StatePartiallyFailed
	}
}

// Finalize returns b as it is when final at now: state, counts and timing
// computed from all its lanes.
func Finalize(b *BatchDoc, lanes []LaneDoc, now time.Time) *BatchDoc {
	nb := *b
	nb.Counts = Counts(b, lanes)
	nb.State = FinalState(b, nb.Counts)
	if (nb.State == model.StateCancelled || nb.State == model.StateFailed) && nb.Reason == "" && b.Cancel != nil {
		nb.Reason = b.Cancel.Reason
	}
	nb.FinishedAt = now
	t := Timing(b, lanes, now)
	nb.Timing = &t
	return &nb
}

// Timing computes the batch's timing figures: throughput over the current
// attempt's wall time and per-node latency percentiles (nearest rank over
// the lanes' latency buckets, so exact below 100 ms and within 5 % above;
// the maximum is exact) of the current attempt's lanes; redeliveries and conflict retries of every
// attempt.
func Timing(b *BatchDoc, lanes []LaneDoc, now time.Time) model.Timing {
	hist := map[int64]int64{}
	var n, maxMS int64
	t := model.Timing{Start: b.StartedAt, End: now, Attempts: max(b.Attempt, 1)}
	for _, l := range lanes {
		if l.Attempt == b.Attempt {
			for k, c := range l.LatencyHist {
				ms, err := strconv.ParseInt(k, 10, 64)
				if err != nil || c <= 0 {
					continue // not written by AddLatency
				}
				hist[ms] += c
				n += c
			}
			maxMS = max(maxMS, l.LatencyMaxMS)
		}
		t.Redeliveries += l.Redeliveries
		t.ConflictRetries += l.Conflicts
	}
	t.Retries = t.Redeliveries + t.ConflictRetries
	start := b.AttemptStartedAt
	if start.IsZero() {
		start = b.StartedAt
	}
	if secs := now.Sub(start).Seconds(); secs > 0 {
		t.NodesPerSecond = math.Round(float64(b.AttemptTotal)/secs*100) / 100
	}
	if n > 0 {
		buckets := slices.Sorted(maps.Keys(hist))
		t.P50Millis = float64(percentile(buckets, hist, n, 50))
		t.P95Millis = float64(percentile(buckets, hist, n, 95))
		t.MaxMillis = float64(maxMS)
	}
	return t
}

// percentile is the nearest-rank p-th percentile of n values counted in
// hist, whose keys sorted are buckets.
func percentile(buckets []int64, hist map[int64]int64, n int64, p int) int64 {
	rank := max(int64(math.Ceil(float64(p)/100*float64(n))), 1)
	var cum int64
	for _, b := range buckets {
		cum += hist[b]
		if cum >= rank {
			return b
		}
	}
	return buckets[len(buckets)-1]
}
