// Package bench measures how fast nodes change, side by side: kubectl, a
// plain client-go loop (sequential and with a worker pool), and nodebatch end
// to end (submit → `complete` on a WebSocket), directly and through a
// latency-injecting proxy, plus how late progress reaches WebSocket clients.
// Every scenario changes real Node objects on a real kube-apiserver; the
// figures are collected into Rows and rendered as one Markdown table and as
// JSON. `make bench` runs it through emulators/cmd/bench.
package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of samples by the
// nearest-rank method: the smallest sample with at least p % of the samples
// at or below it. It returns 0 for no samples and does not modify samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Median returns the median of samples: the middle one, or the mean of the
// two middle ones for an even count. It returns 0 for no samples.
func Median(samples []time.Duration) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// seconds converts d to float seconds, rounded to the millisecond so the
// JSON stays readable.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// ratio returns a/b rounded to two decimals, or 0 when either is zero (no
// figure to compare with).
func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}
