package runner

import (
	"context"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// observeNode records a counted node's metrics: its outcome (and reason
// class when it failed), its latency and the conflicts its write met.
func (r *Runner) observeNode(ctx context.Context, doc store.NodeDoc) {
	m := r.Telemetry.Metrics()
	m.NodeRecorded(ctx, Outcome(doc), ReasonClass(doc.Reason), time.Duration(doc.LatencyMS)*time.Millisecond)
	m.Conflicts(ctx, doc.Conflicts)
}

// observeFinish records a batch that this call moved to its final state.
func (r *Runner) observeFinish(ctx context.Context, b *store.BatchDoc) {
	if b == nil {
		return
	}
	start := b.AttemptStartedAt
	if start.IsZero() {
		start = b.StartedAt
	}
	var d time.Duration
	if !start.IsZero() && !b.FinishedAt.IsZero() {
		d = b.FinishedAt.Sub(start)
	}
	r.Telemetry.Metrics().BatchFinished(ctx, string(b.State), d)
}

// Outcome is the nodebatch.outcome of a node result.
func Outcome(doc store.NodeDoc) string {
	switch doc.State {
	case model.NodeSucceeded:
		if !doc.Changed {
			return telemetry.OutcomeUnchanged
		}
		return telemetry.OutcomeSucceeded
	case model.NodeFailed:
		return telemetry.OutcomeFailed
	case model.NodeCancelled:
		return telemetry.OutcomeCancelled
	case model.NodeSkipped:
		return telemetry.OutcomeSkipped
	}
	return string(doc.State)
}

// reasonClasses map a failure reason to a small, fixed set of classes (a
// metric attribute must not carry the free text). The first match wins.
var reasonClasses = []struct{ class, contains string }{
	{"dead_letter", "delivery attempts exhausted"},
	{"gave_up", "gave up after"},
	{"unknown_write", "whether it landed is unknown"},
	{"not_found", "not found"},
	{"forbidden", "forbidden"},
	{"unauthorized", "unauthorized"},
	{"invalid", "invalid"},
	{"conflict", "conflict"},
	{"expectation", "expected"},
	{"timeout", "timeout"},
}

// ReasonClass is the nodebatch.reason_class of a failure reason: one of
// dead_letter, gave_up, unknown_write, not_found, forbidden, unauthorized,
// invalid, conflict, expectation, timeout or other.
func ReasonClass(reason string) string {
	r := strings.ToLower(reason)
	for _, c := range reasonClasses {
		if strings.Contains(r, c.contains) {
			return c.class
		}
	}
	return "other"
}
