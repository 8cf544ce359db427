// Package model is the domain model of a nodebatch batch: what is stored in
// Firestore for a batch, for each of its lanes and for each of its nodes, and
// the states they move through. It holds no I/O; shared/store persists it.
package model

import "time"

// State is the lifecycle state of a batch.
type State string

// Batch states. A batch is final once it leaves Pending and Running; it moves
// to a final state exactly once, when the last node has a final result.
const (
	StatePending         State = "pending"
	StateRunning         State = "running"
	StateSucceeded       State = "succeeded"
	StatePartiallyFailed State = "partially_failed"
	StateFailed          State = "failed"
	StateCancelled       State = "cancelled"
)

// Final reports whether s is a terminal state.
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StatePartiallyFailed, StateFailed, StateCancelled:
		return true
	}
	return false
}

// NodeState is the final outcome recorded for one node.
type NodeState string

// Node outcomes. Pending is only ever implied (no result document yet).
const (
	NodePending   NodeState = "pending"
	NodeSucceeded NodeState = "succeeded" // patched, or already in the target state (Changed=false)
	NodeFailed    NodeState = "failed"
	NodeSkipped   NodeState = "skipped" // e.g. revert found a value someone else changed
	NodeCancelled NodeState = "cancelled"
)

// Action names the kind of change, in the seed's vocabulary.
type Action string

// Actions from the seed's ProgressMessage.action.
const (
	ActionLabel Action = "batch_label"
	ActionTaint Action = "batch_taint"
)

// Counts is a tally of node outcomes.
type Counts struct {
	Succeeded int `firestore:"succeeded" json:"succeeded"`
	Failed    int `firestore:"failed" json:"failed"`
	Skipped   int `firestore:"skipped" json:"skipped"`
	Cancelled int `firestore:"cancelled" json:"cancelled"`
	Unchanged int `firestore:"unchanged" json:"unchanged"` // subset of Succeeded already in the target state
}

// Done is the number of nodes with a final result.
func (c Counts) Done() int { return c.Succeeded + c.Failed + c.Skipped + c.Cancelled }

// Add returns the sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Succeeded: c.Succeeded + o.Succeeded,
		Failed:    c.Failed + o.Failed,
		Skipped:   c.Skipped + o.Skipped,
		Cancelled: c.Cancelled + o.Cancelled,
		Unchanged: c.Unchanged + o.Unchanged,
	}
}

// Failure is a failed node and why, as shown to users.
type Failure struct {
	Node   string `firestore:"node" json:"node"`
	Reason string `firestore:"reason" json:"reason"`
}

// Timing is the per-batch timing figures, computed when the batch becomes
// final. Throughput and latencies are of the last attempt (a retry re-runs a
// few nodes; its figures should not be diluted by the first run); Start is
// the batch's start, End its (latest) end.
type Timing struct {
	Start          time.Time `firestore:"start" json:"start"`
	End            time.Time `firestore:"end" json:"end"`
	NodesPerSecond float64   `firestore:"nodes_per_second" json:"nodes_per_second"`
	P50Millis      float64   `firestore:"p50_ms" json:"p50_ms"`
	P95Millis      float64   `firestore:"p95_ms" json:"p95_ms"`
	MaxMillis      float64   `firestore:"max_ms" json:"max_ms"`
	// Retries is Redeliveries + ConflictRetries, over every attempt.
	Retries int `firestore:"retries" json:"retries"`
	// Redeliveries counts node events answered "transient, deliver again".
	Redeliveries int `firestore:"redeliveries" json:"redeliveries"`
	// ConflictRetries counts 409 Conflicts the patcher re-read and retried.
	ConflictRetries int `firestore:"conflict_retries" json:"conflict_retries"`
	// Attempts is the number of attempts (1 + retries of failed nodes).
	Attempts int `firestore:"attempts" json:"attempts"`
}
