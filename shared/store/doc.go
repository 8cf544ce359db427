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
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
)

// Collection names, as in docs/design.md §3.
const (
	BatchesCollection     = "batches"     // batches/{batch_id}
	LanesCollection       = "lanes"       // batches/{batch_id}/lanes/{lane_id}
	NodesCollection       = "nodes"       // batches/{batch_id}/nodes/{node}
	IdempotencyCollection = "idempotency" // idempotency/{IdempotencyID(owner, key)}
	NamesCollection       = "names"       // batches/{batch_id}/names/a{attempt}-c{chunk}
)

// NamesPerChunk is how many node names one names document holds: at most
// 100 × 253 bytes (25 KB), so the per-node read of its chunk stays small
// and any batch fits, whatever NODEBATCH_MAX_NODES allows.
const NamesPerChunk = 100

// MaxListedNodes bounds BatchDoc.Nodes as stored: an explicit list longer
// than this is kept only in the names documents (10,000 names of 253
// bytes would not fit in one 1 MiB document).
const MaxListedNodes = 1000

// NamesID is the id of chunk of attempt's node names: "a{attempt}-c{chunk}".
func NamesID(attempt, chunk int) string { return fmt.Sprintf("a%d-c%d", attempt, chunk) }

// NamesPath is the document path of a chunk of an attempt's node names.
func NamesPath(batchID string, attempt, chunk int) string {
	return BatchPath(batchID) + "/" + NamesCollection + "/" + NamesID(attempt, chunk)
}

// NamesDoc is batches/{batch_id}/names/a{attempt}-c{chunk}: the names of
// nodes chunk×NamesPerChunk … of the attempt, in event order (node i is at
// lane i mod lanes, position i div lanes). Written once, before the
// attempt's events are published; the per-node path reads the chunk of its
// node in the same round trip as the batch and lane, to check that the
// event names the node the batch has at its position.
type NamesDoc struct {
	Attempt int      `firestore:"attempt"`
	Chunk   int      `firestore:"chunk"`
	Names   []string `firestore:"names"`
}

// NameIndex is the index of the node at lane, position of an attempt with
// lanes lanes in its names list.
func NameIndex(lanes, lane, position int) int { return position*lanes + lane }

// MaxLaneFailures bounds LaneDoc.Failures so a lane document stays small;
// every failure is still on its node document.
const MaxLaneFailures = 100

// Bounds that keep every document of a batch under Firestore's 1 MiB at
// the largest batch the settings allow (tested against the emulator, which
// enforces the limit): MaxReason bounds a node's and a lane failure's
// reason (an API error message can be long), MaxHistory the earlier
// attempts a node result keeps (each can hold 100 keys' before and after).
const (
	MaxReason  = 2000
	MaxHistory = 5
)

// Clip shortens reason to MaxReason bytes (on a rune boundary), marking the
// cut.
func Clip(reason string) string {
	if len(reason) <= MaxReason {
		return reason
	}
	cut := MaxReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + "…"
}

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
	ID             string         `firestore:"id" json:"batch_id"`
	Owner          string         `firestore:"owner" json:"owner"`
	Action         model.Action   `firestore:"action" json:"action"`
	Changes        change.Summary `firestore:"changes" json:"changes"` // the change in kubectl syntax, for people
	ChangeSet      string         `firestore:"change_set" json:"-"`    // the exact change.Set as JSON (expectations included), for retry and the patch path: SetChange, Change
	Selector       string         `firestore:"selector" json:"selector,omitempty"`
	All            bool           `firestore:"all" json:"all,omitempty"`
	Nodes          []string       `firestore:"nodes" json:"nodes,omitempty"` // explicit lists only
	Total          int            `firestore:"total" json:"total"`
	Concurrency    int            `firestore:"concurrency" json:"concurrency"`
	Lanes          int            `firestore:"lanes" json:"lanes"`                 // lanes of the current attempt
	AttemptTotal   int            `firestore:"attempt_total" json:"attempt_total"` // nodes in the current attempt
	Attempt        int            `firestore:"attempt" json:"attempt"`             // current attempt, from 1
	State          model.State    `firestore:"state" json:"state"`
	Reason         string         `firestore:"reason" json:"reason,omitempty"` // why failed/cancelled, batch-level
	Inline         bool           `firestore:"inline" json:"inline,omitempty"` // applied in-process by the batch function
	CreatedAt      time.Time      `firestore:"created_at" json:"created_at"`
	StartedAt      time.Time      `firestore:"started_at" json:"started_at"`
	FinishedAt     time.Time      `firestore:"finished_at" json:"finished_at,omitzero"`
	DryRun         bool           `firestore:"dry_run" json:"dry_run"`
	IdempotencyKey string         `firestore:"idempotency_key" json:"idempotency_key,omitempty"`
	// IdempotencyFingerprint identifies the request behind IdempotencyKey
	// (request.Spec.Fingerprint); Create records it with the key, and a
	// later request with the key and another fingerprint is refused.
	IdempotencyFingerprint string        `firestore:"-" json:"-"`
	MaxFailures            string        `firestore:"max_failures" json:"max_failures,omitempty"` // "10" or "5%"
	Cancel                 *Cancel       `firestore:"cancel" json:"cancel,omitempty"`
	Adjust                 model.Counts  `firestore:"adjust" json:"-"`      // subtracted from the lane sum (retries)
	Counts                 model.Counts  `firestore:"counts" json:"counts"` // set when final; live counts come from lanes
	Timing                 *model.Timing `firestore:"timing" json:"timing,omitempty"`
	// AttemptStartedAt is when the current attempt started (StartedAt for
	// attempt 1); the attempt's throughput is measured from it.
	AttemptStartedAt time.Time `firestore:"attempt_started_at" json:"attempt_started_at,omitzero"`
	Reverts          string    `firestore:"reverts" json:"reverts,omitempty"`         // the batch this one reverts
	RevertedBy       string    `firestore:"reverted_by" json:"reverted_by,omitempty"` // the revert batch of this one
	// Refused counts events refused because they do not match this batch
	// (see Refusal); LastRefusal is the latest. Written only for such
	// events, never on the normal per-node path.
	Refused     int      `firestore:"refused" json:"refused,omitempty"`
	LastRefusal *Refusal `firestore:"last_refusal" json:"last_refusal,omitempty"`
	// Named is true when every attempt's node names are stored in the
	// names documents (batches created since they exist): the per-node
	// path then refuses an event whose node is not the one at its
	// position.
	Named bool `firestore:"named" json:"-"`
	// Names is the current attempt's node names in event order, for the
	// writer to store as names documents; never stored in this document.
	Names []string `firestore:"-" json:"-"`
	// Requesters says who asked for each attempt (Requester): the per-node
	// path impersonates the current attempt's requester.
	Requesters []Requester `firestore:"requesters" json:"requesters,omitempty"`
	// TraceParent is the W3C traceparent of the span that created the
	// batch (its submit), so a retry or a revert links to the batch's
	// trace (shared/telemetry); "" when tracing was off.
	TraceParent string `firestore:"trace_parent,omitempty" json:"-"`
	// Impact is what the change was predicted at submit to evict (a batch
	// that adds or updates a NoExecute taint); nil for any other batch.
	Impact *Impact `firestore:"impact,omitempty" json:"impact,omitempty"`
}

// MaxImpactBudgets bounds Impact.Budgets as stored, and MaxImpactError
// Impact.Error, so the batch document stays small whatever the cluster
// holds: 100 budgets of at most 63 + 253 bytes of names and a few numbers
// each, well under 50 KB.
const (
	MaxImpactBudgets = 100
	MaxImpactError   = 2000
)

// Impact is the summary of shared/impact's prediction for a batch, as
// recorded on its document at submit: the totals and the violated budgets,
// never the per-pod lists (a preview's nodes), so it is bounded (see
// MaxImpactBudgets). Taint-based eviction ignores budgets, so it is what a
// person needs to know afterwards about what the batch did.
type Impact struct {
	Summary string `firestore:"summary" json:"summary"`
	// TaintedNodes got a new or updated NoExecute taint; NodesWithEvictions
	// of those lose at least one pod.
	TaintedNodes       int `firestore:"tainted_nodes" json:"tainted_nodes"`
	NodesWithEvictions int `firestore:"nodes_with_evictions" json:"nodes_with_evictions"`
	// Evictions counts the evicted pods; EvictNow those evicted at once,
	// the rest after their tolerationSeconds.
	Evictions     int `firestore:"evictions" json:"evictions"`
	EvictNow      int `firestore:"evict_now" json:"evict_now"`
	DaemonSetPods int `firestore:"daemonset_pods" json:"daemonset_pods"`
	StaticPods    int `firestore:"static_pods" json:"static_pods"`
	// BudgetsViolated counts every budget the evictions exceed; Budgets
	// lists them (at most MaxImpactBudgets, by namespace and name;
	// BudgetsTruncated when more were cut).
	BudgetsViolated  int            `firestore:"budgets_violated" json:"budgets_violated"`
	Budgets          []ImpactBudget `firestore:"budgets" json:"budgets"`
	BudgetsTruncated bool           `firestore:"budgets_truncated" json:"budgets_truncated,omitempty"`
	// Error says why the impact could not be computed (the counts are
	// then zero): for example the user may not list pods.
	Error      string    `firestore:"error" json:"error,omitempty"`
	ComputedAt time.Time `firestore:"computed_at" json:"computed_at"`
}

// ImpactBudget is a PodDisruptionBudget the predicted evictions exceed.
type ImpactBudget struct {
	Namespace          string `firestore:"namespace" json:"namespace"`
	Name               string `firestore:"name" json:"name"`
	DisruptionsAllowed int32  `firestore:"disruptions_allowed" json:"disruptions_allowed"`
	Evictions          int    `firestore:"evictions" json:"evictions"`
}

// Bound cuts im to what a batch document keeps: at most MaxImpactBudgets
// budgets (BudgetsTruncated then) and an Error of at most MaxImpactError
// bytes. Create applies it; nil is left alone.
func (im *Impact) Bound() {
	if im == nil {
		return
	}
	if len(im.Budgets) > MaxImpactBudgets {
		im.Budgets = im.Budgets[:MaxImpactBudgets:MaxImpactBudgets]
		im.BudgetsTruncated = true
	}
	if len(im.Error) > MaxImpactError {
		im.Error = strings.ToValidUTF8(im.Error[:MaxImpactError], "")
	}
}

// LaneDoc is batches/{batch_id}/lanes/a{attempt}-l{lane}. Its only writer is
// the patch call currently holding the lane's ordering key, so updates never
// contend; DoneBits makes counting exactly-once under redelivery.
type LaneDoc struct {
	Attempt     int             `firestore:"attempt" json:"attempt"`
	Lane        int             `firestore:"lane" json:"lane"`
	Size        int             `firestore:"size" json:"size"`
	DoneBits    []byte          `firestore:"done_bits" json:"-"`
	Counts      model.Counts    `firestore:"counts" json:"counts"`
	CurrentNode string          `firestore:"current_node" json:"current_node"`
	UpdatedAt   time.Time       `firestore:"updated_at" json:"updated_at"`
	Failures    []model.Failure `firestore:"failures" json:"failures"`
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
	// Pending holds the intent of every write sent (or about to be sent)
	// for a node of the lane whose result is not counted yet, keyed by
	// the node's position (decimal). Written before the write, removed by
	// the commit that counts the node: what a redelivery, the dead-letter
	// path and a cancel's settle read to learn what an earlier delivery
	// may have done (docs/design.md "Pipeline", recording protocol). At
	// most one entry per delivery in flight: the map stays tiny.
	Pending map[string]Intent `firestore:"pending" json:"-"`
}

// Intent is a write the per-node path is about to send: the node, the
// attempt, the resourceVersion the write is conditional on and the values
// before and after of every key it changes. Because the write only lands at
// that resourceVersion, a node still at it proves the write did not land.
type Intent struct {
	Node            string             `firestore:"node"`
	Attempt         int                `firestore:"attempt"`
	ResourceVersion string             `firestore:"resource_version"`
	Before          map[string]*string `firestore:"before"`
	After           map[string]*string `firestore:"after"`
	DryRun          bool               `firestore:"dry_run"`
	At              time.Time          `firestore:"at"`
}

// PositionKey is the key of position pos in LaneDoc.Pending.
func PositionKey(pos int) string { return strconv.Itoa(pos) }

// PendingAt returns the intent recorded for position pos of the lane, if
// any, for node.
func (l *LaneDoc) PendingAt(pos int, node string) *Intent {
	in, ok := l.Pending[PositionKey(pos)]
	if !ok || in.Node != node {
		return nil
	}
	return &in
}

// AddFailure remembers f among the lane's failures (at most
// MaxLaneFailures, reasons clipped).
func (l *LaneDoc) AddFailure(f model.Failure) {
	if len(l.Failures) < MaxLaneFailures {
		f.Reason = Clip(f.Reason)
		l.Failures = append(l.Failures, f)
	}
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
	State           model.NodeState    `firestore:"state" json:"state"`
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
	// Unknown lists the keys (as in Before) whose value before this
	// batch's write is unknown: an earlier delivery sent a write and its
	// result was lost, and the node has moved since, so whether that write
	// landed cannot be proven. Their Before is absent; revert skips the
	// node with a reason instead of restoring a guess. Changed is true
	// when any key is unknown (the batch may have changed the node).
	Unknown []string `firestore:"unknown" json:"unknown,omitempty"`
	// History keeps the results of earlier attempts (oldest first) when a
	// retry re-ran the node.
	History []PriorResult `firestore:"history" json:"history,omitempty"`
}

// PriorResult is a node's result in an earlier attempt.
type PriorResult struct {
	Attempt    int                `firestore:"attempt" json:"attempt"`
	State      model.NodeState    `firestore:"state" json:"state"`
	Reason     string             `firestore:"reason" json:"reason,omitempty"`
	Changed    bool               `firestore:"changed" json:"changed"`
	Before     map[string]*string `firestore:"before" json:"before,omitempty"`
	After      map[string]*string `firestore:"after" json:"after,omitempty"`
	Unknown    []string           `firestore:"unknown" json:"unknown,omitempty"`
	FinishedAt time.Time          `firestore:"finished_at" json:"finished_at"`
}

// Refusal is an event the patch path refused because it does not match
// its batch (attempt, lane, position, node or change set): nothing was
// changed or counted for it.
type Refusal struct {
	EventID string    `firestore:"event_id" json:"event_id"`
	Reason  string    `firestore:"reason" json:"reason"`
	At      time.Time `firestore:"at" json:"at"`
}

// IdempotencyDoc is idempotency/{IdempotencyID(owner, key)}: created once
// with a Create precondition, so the first request with a key wins.
type IdempotencyDoc struct {
	BatchID string `firestore:"batch_id"`
	Owner   string `firestore:"owner"`
	Key     string `firestore:"key,omitempty"`
	// Fingerprint identifies the request that made the batch; empty in
	// documents written before it existed.
	Fingerprint string    `firestore:"fingerprint,omitempty"`
	CreatedAt   time.Time `firestore:"created_at"`
}
