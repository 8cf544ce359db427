// Package api holds the batch API's wire types: the bodies every route of
// functions/batch answers (docs/api.md), apart from how batches are
// stored. functions/batch converts storage documents (shared/store) to
// these in one place (convert.go), so a field added to a document never
// reaches the wire by accident, and the wire never changes because storage
// did. Requests are decoded by shared/request.
//
// The change model (shared/change) belongs to neither the API nor storage,
// so both use it as it is: a batch's changes is the change's kubectl
// rendering (change.Summary) here and in the batch document alike, and what
// the change did to one node is shown per key (Result.Before and After, a
// preview's change.KeyChange).
package api

import (
	"time"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/impact"
	"github.com/nodebatch/nodebatch/shared/model"
)

// Cancel is a batch's cancel request.
type Cancel struct {
	RequestedAt time.Time `json:"requested_at"`
	By          string    `json:"by"`
	Reason      string    `json:"reason"`
	// Threshold marks a stop by the failure threshold (max_failures).
	Threshold bool `json:"threshold,omitempty"`
}

// Refusal is the latest event the patch path refused for a batch.
type Refusal struct {
	EventID string    `json:"event_id"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Requester is who asked for one attempt of a batch.
type Requester struct {
	Attempt int       `json:"attempt"`
	Subject string    `json:"subject"`
	User    string    `json:"user"`
	Groups  []string  `json:"groups,omitempty"`
	At      time.Time `json:"at"`
}

// Batch is a batch as GET /v1/batches/{id} and the history show it.
type Batch struct {
	ID               string         `json:"batch_id"`
	Owner            string         `json:"owner"`
	Action           model.Action   `json:"action"`
	Changes          change.Summary `json:"changes"` // kubectl syntax; a request gives the change as kubectl strings or a change.Set
	Selector         string         `json:"selector,omitempty"`
	All              bool           `json:"all,omitempty"`
	Nodes            []string       `json:"nodes,omitempty"` // explicit lists only (at most 1,000 shown)
	Total            int            `json:"total"`
	Concurrency      int            `json:"concurrency"`
	Lanes            int            `json:"lanes"`
	AttemptTotal     int            `json:"attempt_total"`
	Attempt          int            `json:"attempt"`
	State            model.State    `json:"state"`
	Reason           string         `json:"reason,omitempty"`
	Inline           bool           `json:"inline,omitempty"`
	CreatedAt        time.Time      `json:"created_at"`
	StartedAt        time.Time      `json:"started_at"`
	FinishedAt       time.Time      `json:"finished_at,omitzero"`
	DryRun           bool           `json:"dry_run"`
	IdempotencyKey   string         `json:"idempotency_key,omitempty"`
	MaxFailures      string         `json:"max_failures,omitempty"`
	Cancel           *Cancel        `json:"cancel,omitempty"`
	Counts           model.Counts   `json:"counts"` // the history's counts (live while running); Status has its own
	Timing           *model.Timing  `json:"timing,omitempty"`
	AttemptStartedAt time.Time      `json:"attempt_started_at,omitzero"`
	Reverts          string         `json:"reverts,omitempty"`
	RevertedBy       string         `json:"reverted_by,omitempty"`
	Refused          int            `json:"refused,omitempty"`
	LastRefusal      *Refusal       `json:"last_refusal,omitempty"`
	Requesters       []Requester    `json:"requesters,omitempty"`
	// Impact is what the batch's change was predicted at submit to evict
	// (only a batch that adds or updates a NoExecute taint);
	// ImpactError replaces it when that could not be computed.
	Impact      *Impact `json:"impact,omitempty"`
	ImpactError string  `json:"impact_error,omitempty"`
}

// Impact is the summary of the impact a batch recorded at submit: the
// preview's totals and violated budgets (impact.Impact), without its
// per-pod lists.
type Impact struct {
	// NoExecute is always true: only a batch that adds or updates a
	// NoExecute taint records an impact (the preview's field, so both
	// read alike).
	NoExecute          bool   `json:"no_execute"`
	Summary            string `json:"summary"`
	TaintedNodes       int    `json:"tainted_nodes"`
	NodesWithEvictions int    `json:"nodes_with_evictions"`
	Evictions          int    `json:"evictions"`
	EvictNow           int    `json:"evict_now"`
	// EvictLater is Evictions - EvictNow: evicted after their
	// tolerationSeconds.
	EvictLater    int `json:"evict_later"`
	DaemonSetPods int `json:"daemonset_pods"`
	StaticPods    int `json:"static_pods"`
	// Budgets lists the violated budgets (at most 100;
	// BudgetsTruncated when more were), BudgetsViolated counts them all.
	Budgets          []impact.Budget `json:"budgets"`
	BudgetsViolated  int             `json:"budgets_violated"`
	BudgetsTruncated bool            `json:"budgets_truncated,omitempty"`
	ComputedAt       time.Time       `json:"computed_at"`
}

// PriorResult is a node's result in an earlier attempt.
type PriorResult struct {
	Attempt    int                `json:"attempt"`
	State      model.NodeState    `json:"state"`
	Reason     string             `json:"reason,omitempty"`
	Changed    bool               `json:"changed"`
	Before     map[string]*string `json:"before,omitempty"`
	After      map[string]*string `json:"after,omitempty"`
	Unknown    []string           `json:"unknown,omitempty"`
	FinishedAt time.Time          `json:"finished_at"`
}

// Result is one node's result: before and after of every touched key
// ("label:KEY", "taint:KEY:EFFECT"; null = absent).
type Result struct {
	Node            string             `json:"node"`
	State           model.NodeState    `json:"state"`
	Reason          string             `json:"reason,omitempty"`
	Changed         bool               `json:"changed"`
	Before          map[string]*string `json:"before,omitempty"`
	After           map[string]*string `json:"after,omitempty"`
	Lane            int                `json:"lane"`
	Position        int                `json:"position"`
	Attempt         int                `json:"attempt"`
	StartedAt       time.Time          `json:"started_at"`
	FinishedAt      time.Time          `json:"finished_at"`
	LatencyMS       int64              `json:"latency_ms"`
	Deliveries      int                `json:"deliveries"`
	ResourceVersion string             `json:"resource_version,omitempty"`
	Conflicts       int                `json:"conflicts,omitempty"`
	DryRun          bool               `json:"dry_run,omitempty"`
	Unknown         []string           `json:"unknown,omitempty"`
	History         []PriorResult      `json:"history,omitempty"`
}

// Status is the answer of GET /v1/batches/{id}: the batch, live counts
// from its lanes, the first failures, and one page of per-node results
// ordered by node name. Its Counts are the batch's Counts as shown here
// (the embedded Batch's are not encoded).
type Status struct {
	Batch
	TaskID        string          `json:"task_id"`
	Counts        model.Counts    `json:"counts"`
	Done          int             `json:"done"`
	Failures      []model.Failure `json:"failures"`
	Results       []Result        `json:"results"`
	NextPageToken string          `json:"next_page_token,omitempty"`
}

// Summary is one batch in the history list: the batch without its node
// list, with live counts while it runs.
type Summary struct {
	Batch
	TaskID string `json:"task_id"`
	Done   int    `json:"done"`
}

// HistoryPage is the answer of GET /v1/batches.
type HistoryPage struct {
	Batches       []Summary `json:"batches"`
	NextPageToken string    `json:"next_page_token,omitempty"`
}

// Created is the answer to a new (or idempotently repeated) batch.
type Created struct {
	BatchID     string      `json:"batch_id"`
	TaskID      string      `json:"task_id"` // the seed's name for batch_id
	Total       int         `json:"total"`
	Concurrency int         `json:"concurrency"`
	State       model.State `json:"state"`
	Existing    bool        `json:"existing,omitempty"` // an earlier batch with the same idempotency_key
	Reverts     string      `json:"reverts,omitempty"`  // a revert: the batch it reverts
	Preview     *Preview    `json:"preview,omitempty"`  // a dry run: the in-process preview (first page)
}

// CancelBody is the optional body of POST /v1/batches/{id}:cancel.
type CancelBody struct {
	Reason string `json:"reason,omitempty"`
}

// Cancelled is the answer to a cancel.
type Cancelled struct {
	BatchID string      `json:"batch_id"`
	TaskID  string      `json:"task_id"`
	State   model.State `json:"state"`
	Cancel  *Cancel     `json:"cancel,omitempty"`
	// Settled is true when the patches that were already in flight when the
	// cancel was recorded have finished: from then on, no patch of the
	// batch is in flight or will start.
	Settled bool `json:"settled"`
}

// RetryBody is the optional body of POST /v1/batches/{id}:retry.
type RetryBody struct {
	IncludeCancelled bool `json:"include_cancelled,omitempty"`
}

// Retried is the answer to a retry: the batch's new attempt.
type Retried struct {
	BatchID     string      `json:"batch_id"`
	TaskID      string      `json:"task_id"`
	Attempt     int         `json:"attempt"`
	Total       int         `json:"total"` // nodes re-run
	Concurrency int         `json:"concurrency"`
	State       model.State `json:"state"`
	Nodes       []string    `json:"nodes"` // re-run nodes (at most 1000 listed)
}

// RevertBody is the optional body of POST /v1/batches/{id}:revert: an
// empty object. A body is still decoded strictly, so a field a client
// thinks means something (there is none yet) is refused, not ignored.
type RevertBody struct{}

// Preview is the answer of POST /v1/batches:preview (and the "preview" of
// a dry-run submit): what the change would do to each node, computed in
// process with change.Apply against the nodes as listed now. Nothing is
// written anywhere.
type Preview struct {
	Total           int           `json:"total"`
	WouldChange     int           `json:"would_change"`
	AlreadyInTarget int           `json:"already_in_target"`
	Skipped         int           `json:"skipped"` // an expect precondition does not hold
	Nodes           []PreviewNode `json:"nodes"`   // one page, by node name
	NextPageToken   string        `json:"next_page_token,omitempty"`
	// ServerDryRun is the same change sent with dryRun=All for a few nodes
	// that would change: admission and validation on the API server, which
	// the in-process computation cannot see.
	ServerDryRun []DryRunCheck `json:"server_dry_run,omitempty"`
	// Impact is what the change would evict; ImpactError says why it could
	// not be computed.
	Impact      *impact.Impact `json:"impact,omitempty"`
	ImpactError string         `json:"impact_error,omitempty"`
}

// PreviewNode is one node's before → after for every touched key
// ("label:KEY", "taint:KEY:EFFECT"; null = absent).
type PreviewNode struct {
	Node       string             `json:"node"`
	Changed    bool               `json:"changed"`
	SkipReason string             `json:"skip_reason,omitempty"`
	Changes    []change.KeyChange `json:"changes"`
}

// DryRunCheck is the API server's answer to a server-side dry run of one
// node's change.
type DryRunCheck struct {
	Node    string             `json:"node"`
	OK      bool               `json:"ok"`
	Error   string             `json:"error,omitempty"`
	Changed bool               `json:"changed"`
	Changes []change.KeyChange `json:"changes,omitempty"`
}
