// Package progress is the progress message the relay streams to clients: the
// seed's ProgressMessage schema (task_id, type, action, current, total,
// progress, current_node, message, timestamp) plus what the seed lacked
// (state, counts by state, failed nodes with reasons, rate, ETA, nodes in
// flight, timing). Compute derives a message from a batch document and its
// lane documents; it does no I/O, so every client of every relay instance
// sees the same message for the same documents.
package progress

import (
	"fmt"
	"sort"
	"time"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Type is the seed's message type.
type Type string

// Message types. A batch that ends succeeded, partially_failed or cancelled
// ends with Complete (the run finished; State and Counts say how); a batch
// that ends failed ends with Error, as the seed's front end shows an error
// for it. Error is also what the relay sends to refuse a subscription or a
// bad client message (State is then empty).
const (
	TypeProgress Type = "progress"
	TypeComplete Type = "complete"
	TypeError    Type = "error"
)

// MaxFailedNodes caps Message.FailedNodes so a message stays small however
// many nodes failed; Counts.Failed always has the exact number.
const MaxFailedNodes = 50

// Message is one progress message, in the seed's JSON schema plus additions.
type Message struct {
	TaskID      string       `json:"task_id"`
	Type        Type         `json:"type"`
	Action      model.Action `json:"action,omitempty"`
	Current     int          `json:"current"`
	Total       int          `json:"total"`
	Progress    float64      `json:"progress"`
	CurrentNode string       `json:"current_node"`
	Message     string       `json:"message"`
	Timestamp   time.Time    `json:"timestamp"`

	State       model.State     `json:"state,omitempty"`
	Attempt     int             `json:"attempt,omitempty"`
	Counts      model.Counts    `json:"counts"`
	FailedNodes []model.Failure `json:"failed_nodes,omitempty"`
	Rate        float64         `json:"rate"`                  // nodes finished per second since the start
	ETASeconds  float64         `json:"eta_seconds,omitempty"` // 0 when unknown or final
	InFlight    map[int]string  `json:"in_flight,omitempty"`   // lane → node being patched
	Timing      *model.Timing   `json:"timing,omitempty"`      // once final
	Owner       string          `json:"owner,omitempty"`       // the batch's owner (only the owner and admins see it)
	// Written is when the newest node result counted here was written
	// (its lane's update); the relay measures its progress delay from it.
	// Not sent.
	Written time.Time `json:"-"`
}

// Final reports whether m is the last message of its batch.
func (m Message) Final() bool { return m.State.Final() }

// Refusal is the error message for a subscription or client message the relay
// refuses. For a batch the caller may not see, reason is "not found": the
// same answer as for a batch that does not exist, so ids cannot be probed.
func Refusal(taskID, reason string, now time.Time) Message {
	return Message{TaskID: taskID, Type: TypeError, Message: reason, Timestamp: now}
}

// Compute derives the message for batch b from the lane documents read so
// far (any attempt; a missing lane counts as not started). It is pure.
//
// While the batch runs, counts are the sum of the lane counts minus b.Adjust
// (the failures a retry took back); once the batch is final, b.Counts is the
// truth, since the finishing write lands after the last lane write but the
// listeners of different documents may deliver in any order.
func Compute(b store.BatchDoc, lanes []store.LaneDoc, now time.Time) Message {
	m := Message{
		TaskID:    b.ID,
		Action:    b.Action,
		Total:     b.Total,
		State:     b.State,
		Attempt:   b.Attempt,
		Owner:     b.Owner,
		Timestamp: now.UTC(),
		Type:      TypeProgress,
	}
	var sum model.Counts
	var latest time.Time
	for _, l := range lanes {
		sum = sum.Add(l.Counts)
		if l.Attempt == b.Attempt && !l.Complete() && l.CurrentNode != "" {
			if m.InFlight == nil {
				m.InFlight = map[int]string{}
			}
			m.InFlight[l.Lane] = l.CurrentNode
		}
		if l.Attempt == b.Attempt && l.CurrentNode != "" && !l.UpdatedAt.Before(latest) {
			latest, m.CurrentNode = l.UpdatedAt, l.CurrentNode
		}
	}
	m.Written = latest
	m.Counts = subtract(sum, b.Adjust)
	m.FailedNodes = failures(b, lanes)
	if b.State.Final() {
		if b.Counts.Done() > 0 || b.Total == 0 {
			m.Counts = b.Counts
		}
		m.InFlight = nil
		m.Timing = b.Timing
	}
	m.Current = min(m.Counts.Done(), b.Total)
	if b.Total > 0 {
		m.Progress = float64(m.Current) * 100 / float64(b.Total)
	}
	m.Rate, m.ETASeconds = rate(b, m.Current, now)
	m.Type, m.Message = describe(b, m)
	return m
}

// subtract returns c - a, never below zero.
func subtract(c, a model.Counts) model.Counts {
	return model.Counts{
		Succeeded: max(0, c.Succeeded-a.Succeeded),
		Failed:    max(0, c.Failed-a.Failed),
		Skipped:   max(0, c.Skipped-a.Skipped),
		Cancelled: max(0, c.Cancelled-a.Cancelled),
		Unchanged: max(0, c.Unchanged-a.Unchanged),
	}
}

// failures lists failed nodes, sorted by node, at most MaxFailedNodes. When
// a retry took failures back (b.Adjust.Failed > 0), earlier attempts'
// failures were all re-run, so only the current attempt's count.
func failures(b store.BatchDoc, lanes []store.LaneDoc) []model.Failure {
	var out []model.Failure
	seen := map[string]bool{}
	for _, l := range lanes {
		if b.Adjust.Failed > 0 && l.Attempt != b.Attempt {
			continue
		}
		for _, f := range l.Failures {
			if !seen[f.Node] {
				seen[f.Node] = true
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	if len(out) > MaxFailedNodes {
		out = out[:MaxFailedNodes]
	}
	return out
}

// rate is nodes finished per second since the batch started, and the time
// left at that rate. Both are 0 before the first node finishes.
func rate(b store.BatchDoc, current int, now time.Time) (perSecond, eta float64) {
	end := now
	if b.State.Final() && !b.FinishedAt.IsZero() {
		end = b.FinishedAt
	}
	if b.StartedAt.IsZero() || current == 0 || !end.After(b.StartedAt) {
		return 0, 0
	}
	perSecond = float64(current) / end.Sub(b.StartedAt).Seconds()
	if !b.State.Final() {
		eta = float64(b.Total-current) / perSecond
	}
	return perSecond, eta
}

// describe picks the seed's type and a human message.
func describe(b store.BatchDoc, m Message) (Type, string) {
	c := m.Counts
	switch b.State {
	case model.StateSucceeded:
		return TypeComplete, fmt.Sprintf("succeeded: %d nodes done (%d unchanged)", c.Done(), c.Unchanged)
	case model.StatePartiallyFailed:
		return TypeComplete, fmt.Sprintf("partially failed: %d of %d nodes failed", c.Failed, m.Total)
	case model.StateCancelled:
		return TypeComplete, withReason(fmt.Sprintf("cancelled: %d done, %d cancelled", c.Done()-c.Cancelled, c.Cancelled), b.Reason)
	case model.StateFailed:
		return TypeError, withReason(fmt.Sprintf("failed: %d of %d nodes failed", c.Failed, m.Total), b.Reason)
	case model.StatePending:
		return TypeProgress, "pending"
	}
	return TypeProgress, fmt.Sprintf("%d of %d nodes done", m.Current, m.Total)
}

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + " (" + reason + ")"
}
