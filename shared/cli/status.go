package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
)

// status is the part of a batch answer (POST /v1/batches, GET
// /v1/batches/{id}, history entries) the CLI reads. -o json|yaml print the
// answer itself, never this.
type status struct {
	BatchID     string          `json:"batch_id"`
	Owner       string          `json:"owner"`
	Action      string          `json:"action"`
	Total       int             `json:"total"`
	Concurrency int             `json:"concurrency"`
	Attempt     int             `json:"attempt"`
	State       model.State     `json:"state"`
	Reason      string          `json:"reason"`
	DryRun      bool            `json:"dry_run"`
	Done        int             `json:"done"`
	Counts      model.Counts    `json:"counts"`
	Failures    []model.Failure `json:"failures"`
	CreatedAt   time.Time       `json:"created_at"`
	Reverts     string          `json:"reverts"`
	Existing    bool            `json:"existing"`
	// Impact is what a NoExecute batch recorded at submit that it would
	// evict; ImpactError why that could not be computed.
	Impact      *impactSummary `json:"impact"`
	ImpactError string         `json:"impact_error"`
}

// impactSummary is the part of a batch's recorded impact the table's
// impact line shows (docs/api.md, GET /v1/batches/{id}).
type impactSummary struct {
	NodesWithEvictions int `json:"nodes_with_evictions"`
	Evictions          int `json:"evictions"`
	EvictNow           int `json:"evict_now"`
	BudgetsViolated    int `json:"budgets_violated"`
}

func decodeStatus(raw []byte) (status, error) {
	var s status
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("decode batch: %w", err)
	}
	if s.BatchID == "" {
		return s, fmt.Errorf("decode batch: the answer has no batch_id")
	}
	return s, nil
}

// exitFor maps a final state to the exit code.
func exitFor(s model.State) int {
	switch s {
	case model.StateSucceeded:
		return ExitOK
	case model.StateCancelled:
		return ExitCancelled
	default:
		return ExitFailed
	}
}
