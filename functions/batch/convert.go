package batch

import (
	"time"

	"github.com/nodebatch/nodebatch/shared/api"
	"github.com/nodebatch/nodebatch/shared/impact"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// The API's answers (shared/api) under the names callers of this package
// know.
type (
	Created     = api.Created
	Status      = api.Status
	Summary     = api.Summary
	HistoryPage = api.HistoryPage
	CancelBody  = api.CancelBody
	Cancelled   = api.Cancelled
	RetryBody   = api.RetryBody
	Retried     = api.Retried
	RevertBody  = api.RevertBody
	Preview     = api.Preview
	PreviewNode = api.PreviewNode
	DryRunCheck = api.DryRunCheck
)

// This file is the one place where storage documents become API answers.

// batchOf is b as the API shows it.
func batchOf(b *store.BatchDoc) api.Batch {
	return api.Batch{
		ID: b.ID, Owner: b.Owner, Action: b.Action,
		Changes:  b.Changes,
		Selector: b.Selector, All: b.All, Nodes: b.Nodes,
		Total: b.Total, Concurrency: b.Concurrency, Lanes: b.Lanes, AttemptTotal: b.AttemptTotal, Attempt: b.Attempt,
		State: b.State, Reason: b.Reason, Inline: b.Inline,
		CreatedAt: b.CreatedAt, StartedAt: b.StartedAt, FinishedAt: b.FinishedAt,
		DryRun: b.DryRun, IdempotencyKey: b.IdempotencyKey, MaxFailures: b.MaxFailures,
		Cancel: cancelOf(b.Cancel), Counts: b.Counts, Timing: b.Timing, AttemptStartedAt: b.AttemptStartedAt,
		Reverts: b.Reverts, RevertedBy: b.RevertedBy,
		Refused: b.Refused, LastRefusal: refusalOf(b.LastRefusal),
		Requesters: requestersOf(b.Requesters),
		Impact:     impactOf(b.Impact), ImpactError: impactErrorOf(b.Impact),
	}
}

// impactOf is the recorded impact as the API shows it; nil when none was
// recorded or it could not be computed (impactErrorOf then says why).
func impactOf(im *store.Impact) *api.Impact {
	if im == nil || im.Error != "" {
		return nil
	}
	budgets := make([]impact.Budget, len(im.Budgets))
	for i, b := range im.Budgets {
		budgets[i] = impact.Budget{Namespace: b.Namespace, Name: b.Name, DisruptionsAllowed: b.DisruptionsAllowed, Evictions: b.Evictions, Violated: true}
	}
	return &api.Impact{
		NoExecute: true, Summary: im.Summary, TaintedNodes: im.TaintedNodes, NodesWithEvictions: im.NodesWithEvictions,
		Evictions: im.Evictions, EvictNow: im.EvictNow, EvictLater: im.Evictions - im.EvictNow,
		DaemonSetPods: im.DaemonSetPods, StaticPods: im.StaticPods,
		Budgets: budgets, BudgetsViolated: im.BudgetsViolated, BudgetsTruncated: im.BudgetsTruncated, ComputedAt: im.ComputedAt,
	}
}

func impactErrorOf(im *store.Impact) string {
	if im == nil {
		return ""
	}
	return im.Error
}

// impactDoc is the summary of im (or of why it could not be computed,
// errText) that a batch records; nil when the change computed none.
// store.Create bounds it.
func impactDoc(im *impact.Impact, errText string, at time.Time) *store.Impact {
	switch {
	case errText != "":
		return &store.Impact{Error: errText, ComputedAt: at}
	case im == nil || !im.NoExecute:
		return nil
	}
	d := &store.Impact{
		Summary: im.Summary, TaintedNodes: im.TaintedNodes, NodesWithEvictions: im.NodesWithEvictions,
		Evictions: im.Evictions, EvictNow: im.EvictNow, DaemonSetPods: im.DaemonSetPods, StaticPods: im.StaticPods,
		BudgetsViolated: im.BudgetsViolated, Budgets: []store.ImpactBudget{}, ComputedAt: at,
	}
	for _, b := range im.Budgets {
		if b.Violated {
			d.Budgets = append(d.Budgets, store.ImpactBudget{Namespace: b.Namespace, Name: b.Name, DisruptionsAllowed: b.DisruptionsAllowed, Evictions: b.Evictions})
		}
	}
	return d
}

func cancelOf(c *store.Cancel) *api.Cancel {
	if c == nil {
		return nil
	}
	return &api.Cancel{RequestedAt: c.RequestedAt, By: c.By, Reason: c.Reason, Threshold: c.Threshold}
}

func refusalOf(r *store.Refusal) *api.Refusal {
	if r == nil {
		return nil
	}
	return &api.Refusal{EventID: r.EventID, Reason: r.Reason, At: r.At}
}

func requestersOf(rs []store.Requester) []api.Requester {
	if rs == nil {
		return nil
	}
	out := make([]api.Requester, len(rs))
	for i, r := range rs {
		out[i] = api.Requester{Attempt: r.Attempt, Subject: r.Subject, User: r.User, Groups: r.Groups, At: r.At}
	}
	return out
}

// resultsOf is the API's page of node results (never null).
func resultsOf(docs []store.NodeDoc) []api.Result {
	out := make([]api.Result, len(docs))
	for i, d := range docs {
		out[i] = api.Result{
			Node: d.Node, State: d.State, Reason: d.Reason, Changed: d.Changed, Before: d.Before, After: d.After,
			Lane: d.Lane, Position: d.Position, Attempt: d.Attempt, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
			LatencyMS: d.LatencyMS, Deliveries: d.Deliveries, ResourceVersion: d.ResourceVersion, Conflicts: d.Conflicts,
			DryRun: d.DryRun, Unknown: d.Unknown, History: historyOf(d.History),
		}
	}
	return out
}

func historyOf(hs []store.PriorResult) []api.PriorResult {
	if hs == nil {
		return nil
	}
	out := make([]api.PriorResult, len(hs))
	for i, h := range hs {
		out[i] = api.PriorResult{Attempt: h.Attempt, State: h.State, Reason: h.Reason, Changed: h.Changed,
			Before: h.Before, After: h.After, Unknown: h.Unknown, FinishedAt: h.FinishedAt}
	}
	return out
}

// statusOf is GET /v1/batches/{id}'s answer for b with its counts (live
// or final), failures and one page of results.
func statusOf(b *store.BatchDoc, counts model.Counts, failures []model.Failure, results []store.NodeDoc, next string) api.Status {
	return api.Status{Batch: batchOf(b), TaskID: b.ID, Counts: counts, Done: counts.Done(), Failures: failures, Results: resultsOf(results), NextPageToken: next}
}

// summaryOf is b in the history, without its node list, with counts.
func summaryOf(b *store.BatchDoc, counts model.Counts) api.Summary {
	s := api.Summary{Batch: batchOf(b), TaskID: b.ID, Done: counts.Done()}
	s.Nodes, s.Counts = nil, counts
	return s
}

// createdOf is the short answer naming batch b.
func createdOf(b *store.BatchDoc) api.Created {
	return api.Created{BatchID: b.ID, TaskID: b.ID, Total: b.Total, Concurrency: b.Concurrency, State: b.State}
}

// cancelledOf is the answer to a cancel of b.
func cancelledOf(b *store.BatchDoc, settled bool) api.Cancelled {
	return api.Cancelled{BatchID: b.ID, TaskID: b.ID, State: b.State, Cancel: cancelOf(b.Cancel), Settled: settled}
}
