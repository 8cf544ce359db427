// Package store persists batches in Firestore: the batch document, one
// summary document per lane (each with ONE sequential writer), one result
// document per node, and idempotency keys. The layout is docs/design.md §3.
//
// No document here is written once per node by concurrent writers except the
// node's own result document; the only transaction runs once per batch, when
// it becomes final.
package store

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nodebatch/nodebatch/shared/batch"
)

// Collection names, as in docs/design.md §3.
const (
	BatchesCollection     = "batches"     // batches/{batch_id}
	LanesCollection       = "lanes"       // batches/{batch_id}/lanes/{lane_id}
	NodesCollection       = "nodes"       // batches/{batch_id}/nodes/{node}
	IdempotencyCollection = "idempotency" // idempotency/{sha256(owner|key)}
)

// MaxLaneFailures bounds LaneDoc.Failures so a lane document stays small;
// every failure is still on its node document.
const MaxLaneFailures = 100

// BatchPath is the document path of a batch, relative to the database root.
func BatchPath(batchID string) string { return BatchesCollection + "/" + batchID }

// LaneID is the id of the lane document of lane in attempt: "a{attempt}-l{lane}".
func LaneID(attempt, lane int) string { return fmt.Sprintf("a%d-l%d", attempt, lane) }

// LanePath is the document path of a lane.
func LanePath(batchID string, attempt, lane int) string {
	return BatchPath(batchID) + "/" + LanesCollection + "/" + LaneID(attempt, lane)
}

// NodePath is the document path of a node's result. Node names are DNS
// subdomains, which are valid Firestore document ids.
func NodePath(batchID, node string) string {
	return BatchPath(batchID) + "/" + NodesCollection + "/" + node
}

// Changes is the change of a batch as stored: kubectl syntax, one entry per
// label or taint change (e.g. "team=ml", "old-", "gpu=true:NoSchedule").
type Changes struct {
	Labels []string `firestore:"labels" json:"labels,omitempty"`
	Taints []string `firestore:"taints" json:"taints,omitempty"`
}

// Cancel records a cancel request (issue 6). Patch calls check it before
// touching a node.
type Cancel struct {
	RequestedAt time.Time `firestore:"requested_at" json:"requested_at"`
	By          string    `firestore:"by" json:"by"`
	Reason      string    `firestore:"reason" json:"reason"`
	// Threshold marks a stop by the failure threshold (max_failures): the
	// batch then ends failed, not cancelled.
	Threshold bool `firestore:"threshold" json:"threshold,omitempty"`
}

// BatchDoc is batches/{batch_id}. The batch function writes it at create;
// the patch call that completes the last lane writes it once more (state,
// counts, timing) in a transaction; cancel/retry write it too.
type BatchDoc struct {
	ID             string        `firestore:"id" json:"batch_id"`
	Owner          string        `firestore:"owner" json:"owner"`
	Action         batch.Action  `firestore:"action" json:"action"`
	Changes        Changes       `firestore:"changes" json:"changes"`
	ChangeSet      string        `firestore:"change_set" json:"-"` // the exact change.Set as JSON (expectations included), for retry/revert
	Selector       string        `firestore:"selector" json:"selector,omitempty"`
	All            bool          `firestore:"all" json:"all,omitempty"`
	Nodes          []string      `firestore:"nodes" json:"nodes,omitempty"` // explicit lists only
	Total          int           `firestore:"total" json:"total"`
	Concurrency    int           `firestore:"concurrency" json:"concurrency"`
	Lanes          int           `firestore:"lanes" json:"lanes"`                 // lanes of the current attempt
	AttemptTotal   int           `firestore:"attempt_total" json:"attempt_total"` // nodes in the current attempt
	Attempt        int           `firestore:"attempt" json:"attempt"`             // current attempt, from 1
	State          batch.State   `firestore:"state" json:"state"`
	Reason         string        `firestore:"reason" json:"reason,omitempty"` // why failed/cancelled, batch-level
	Inline         bool          `firestore:"inline" json:"inline,omitempty"` // applied in-process by the batch function
	CreatedAt      time.Time     `firestore:"created_at" json:"created_at"`
	StartedAt      time.Time     `firestore:"started_at" json:"started_at"`
	FinishedAt     time.Time     `firestore:"finished_at" json:"finished_at,omitzero"`
	DryRun         bool          `firestore:"dry_run" json:"dry_run"`
	IdempotencyKey string        `firestore:"idempotency_key" json:"idempotency_key,omitempty"`
	MaxFailures    string        `firestore:"max_failures" json:"max_failures,omitempty"` // "10" or "5%"
	Cancel         *Cancel       `firestore:"cancel" json:"cancel,omitempty"`
	Adjust         batch.Counts  `firestore:"adjust" json:"-"`      // subtracted from the lane sum (retries)
	Counts         batch.Counts  `firestore:"counts" json:"counts"` // set when final; live counts come from lanes
	Timing         *batch.Timing `firestore:"timing" json:"timing,omitempty"`
	// AttemptStartedAt is when the current attempt started (StartedAt for
	// attempt 1); the attempt's throughput is measured from it.
	AttemptStartedAt time.Time `firestore:"attempt_started_at" json:"attempt_started_at,omitzero"`
	Reverts          string    `firestore:"reverts" json:"reverts,omitempty"`         // the batch this one reverts
	RevertedBy       string    `firestore:"reverted_by" json:"reverted_by,omitempty"` // the revert batch of this one
	// Requesters says who asked for each attempt (Requester): the per-node
	// path impersonates the current attempt's requester.
	Requesters []Requester `firestore:"requesters" json:"requesters,omitempty"`
}

// LaneDoc is batches/{batch_id}/lanes/a{attempt}-l{lane}. Its only writer is
// the patch call currently holding the lane's ordering key, so updates never
// contend; DoneBits makes counting exactly-once under redelivery.
type LaneDoc struct {
	Attempt     int             `firestore:"attempt" json:"attempt"`
	Lane        int             `firestore:"lane" json:"lane"`
	Size        int             `firestore:"size" json:"size"`
	DoneBits    []byte          `firestore:"done_bits" json:"-"`
	Counts      batch.Counts    `firestore:"counts" json:"counts"`
	CurrentNode string          `firestore:"current_node" json:"current_node"`
	UpdatedAt   time.Time       `firestore:"updated_at" json:"updated_at"`
	Failures    []batch.Failure `firestore:"failures" json:"failures"`
	// LatencyHist counts the lane's per-node latencies (succeeded and
	// failed nodes) by LatencyBucket, keyed by the bucket in ms as a decimal
	// string; LatencyMaxMS is the exact maximum. A histogram, not a list:
	// the lane document is read and rewritten for every node, so a list
	// made each lane cost O(n²) (1,000 nodes in a lane: half a million
	// values encoded and decoded).
	LatencyHist  map[string]int64 `firestore:"latency_hist" json:"-"`
	LatencyMaxMS int64            `firestore:"latency_max_ms" json:"-"`
	// Redeliveries counts transient answers (each one a redelivery) and
	// Conflicts the patcher's conflict retries, for the timing figures.
	Redeliveries int `firestore:"redeliveries" json:"redeliveries"`
	Conflicts    int `firestore:"conflicts" json:"conflicts"`
	// Done mirrors Complete() for queries: the writer that completes a
	// lane asks whether any lane of the attempt is still open before it
	// reads them all (Store.LaneOpen).
	Done bool `firestore:"done" json:"-"`
}

// AddLatency counts one node latency of ms milliseconds.
func (l *LaneDoc) AddLatency(ms int64) {
	if l.LatencyHist == nil {
		l.LatencyHist = make(map[string]int64)
	}
	l.LatencyHist[strconv.FormatInt(LatencyBucket(ms), 10)]++
	l.LatencyMaxMS = max(l.LatencyMaxMS, ms)
}

// LatencyBucket rounds ms to two significant digits: exact below 100 ms,
// at most 5 % off above (the percentiles of the batch's timing are read
// from these buckets).
func LatencyBucket(ms int64) int64 {
	if ms < 100 {
		return max(ms, 0)
	}
	p := int64(1)
	for ms/p >= 100 {
		p *= 10
	}
	return (ms + p/2) / p * p
}

// Has reports whether position pos of the lane is already counted.
func (l *LaneDoc) Has(pos int) bool {
	i := pos / 8
	return pos >= 0 && i < len(l.DoneBits) && l.DoneBits[i]&(1<<(pos%8)) != 0
}

// Mark records position pos as counted, growing the bitset as needed.
func (l *LaneDoc) Mark(pos int) {
	i := pos / 8
	if i >= len(l.DoneBits) {
		l.DoneBits = append(l.DoneBits, make([]byte, i+1-len(l.DoneBits))...)
	}
	l.DoneBits[i] |= 1 << (pos % 8)
}

// Complete reports whether every node of the lane has a final result.
func (l *LaneDoc) Complete() bool { return l.Counts.Done() >= l.Size }

// NodeDoc is batches/{batch_id}/nodes/{node}: the node's own result, written
// only by the call patching that node (Set, so a redelivery overwrites).
// Before and After hold only the touched keys; a nil value means "absent".
// Keys are change.KeyChange keys (label key, or taint "key:effect").
type NodeDoc struct {
	Node            string             `firestore:"node" json:"node"`
	State           batch.NodeState    `firestore:"state" json:"state"`
	Reason          string             `firestore:"reason" json:"reason,omitempty"`
	Changed         bool               `firestore:"changed" json:"changed"`
	Before          map[string]*string `firestore:"before" json:"before,omitempty"`
	After           map[string]*string `firestore:"after" json:"after,omitempty"`
	Lane            int                `firestore:"lane" json:"lane"`
	Position        int                `firestore:"position" json:"position"`
	Attempt         int                `firestore:"attempt" json:"attempt"`
	StartedAt       time.Time          `firestore:"started_at" json:"started_at"`
	FinishedAt      time.Time          `firestore:"finished_at" json:"finished_at"`
	LatencyMS       int64              `firestore:"latency_ms" json:"latency_ms"`
	Deliveries      int                `firestore:"deliveries" json:"deliveries"`
	ResourceVersion string             `firestore:"resource_version" json:"resource_version,omitempty"`
	Conflicts       int                `firestore:"conflicts" json:"conflicts,omitempty"`
	DryRun          bool               `firestore:"dry_run" json:"dry_run,omitempty"`
	// History keeps the results of earlier attempts (oldest first) when a
	// retry re-ran the node.
	History []PriorResult `firestore:"history" json:"history,omitempty"`
}

// PriorResult is a node's result in an earlier attempt.
type PriorResult struct {
	Attempt    int                `firestore:"attempt" json:"attempt"`
	State      batch.NodeState    `firestore:"state" json:"state"`
	Reason     string             `firestore:"reason" json:"reason,omitempty"`
	Changed    bool               `firestore:"changed" json:"changed"`
	Before     map[string]*string `firestore:"before" json:"before,omitempty"`
	After      map[string]*string `firestore:"after" json:"after,omitempty"`
	FinishedAt time.Time          `firestore:"finished_at" json:"finished_at"`
}

// IdempotencyDoc is idempotency/{sha256(owner|key)}: created once with a
// Create precondition, so the first request with a key wins.
type IdempotencyDoc struct {
	BatchID   string    `firestore:"batch_id"`
	Owner     string    `firestore:"owner"`
	CreatedAt time.Time `firestore:"created_at"`
}
