package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/runner"

	"github.com/nodebatch/nodebatch/shared/auth"
	model "github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
)

// DefaultCancelWait bounds how long a cancel waits for the patches already
// in flight when it was recorded (see Handler.CancelWait).
const DefaultCancelWait = 30 * time.Second

// control routes POST /v1/batches/{id}:{action}. Go's ServeMux cannot put a
// wildcard and a literal in one segment, so the segment is split here on its
// last ':' (ids never contain one).
func (h *Handler) control(w http.ResponseWriter, r *http.Request) {
	id, action, ok := splitAction(r.PathValue("idaction"))
	if !ok {
		request.Errorf(http.StatusNotFound, request.CodeNotFound, "no route POST %s", r.URL.Path).Write(w)
		return
	}
	if !validID(w, id) {
		return
	}
	switch action {
	case "cancel":
		h.cancel(w, r, id)
	case "retry":
		h.retry(w, r, id)
	case "revert":
		h.revert(w, r, id)
	default:
		request.Errorf(http.StatusNotFound, request.CodeNotFound, "unknown batch action %q (cancel, retry, revert)", action).Write(w)
	}
}

// splitAction splits "{id}:{action}" on its last ':'; ok is false when
// there is no ':' or no action. The id is not checked here: the caller
// validates it (validID), so a bad id answers 400 naming it, not 404.
func splitAction(seg string) (id, action string, ok bool) {
	i := strings.LastIndexByte(seg, ':')
	if i < 0 || i == len(seg)-1 {
		return "", "", false
	}
	return seg[:i], seg[i+1:], true
}

// visible reads batch id for p, answering 404 (and returning nil) when it is
// missing or not p's to see.
func (h *Handler) visible(w http.ResponseWriter, ctx context.Context, p auth.Principal, id string) *store.BatchDoc {
	b, err := h.Store.Batch(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.CanSee(b.Owner)) {
		request.Errorf(http.StatusNotFound, request.CodeNotFound, "batch %q not found", id).Write(w)
		return nil
	}
	if err != nil {
		h.fail(w, "read batch", err)
		return nil
	}
	return b
}

// decodeOptional decodes a JSON body into v when there is one; an empty body
// leaves v at its zero value.
func (h *Handler) decodeOptional(w http.ResponseWriter, r *http.Request, v any) *request.Error {
	if r.ContentLength == 0 {
		return nil
	}
	limit := h.BodyLimit
	if limit <= 0 {
		limit = config.DefaultBodyLimit
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if e := request.Decode(r.Body, v); e != nil && !strings.Contains(e.Message, "body is empty") {
		return e
	}
	return nil
}

// MaxCancelReason is how many bytes of a cancel's reason are kept (cut on
// a character boundary).
const MaxCancelReason = 500

// CancelBody is the optional body of POST /v1/batches/{id}:cancel.
type CancelBody struct {
	Reason string `json:"reason,omitempty"`
}

// Cancelled is the answer to a cancel.
type Cancelled struct {
	BatchID string        `json:"batch_id"`
	TaskID  string        `json:"task_id"`
	State   model.State   `json:"state"`
	Cancel  *store.Cancel `json:"cancel,omitempty"`
	// Settled is true when the patches that were already in flight when the
	// cancel was recorded have finished: from then on, no patch of the
	// batch is in flight or will start.
	Settled bool `json:"settled"`
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	p, e := principal(r)
	if e != nil {
		e.Write(w)
		return
	}
	var body CancelBody
	if e := h.decodeOptional(w, r, &body); e != nil {
		e.Write(w)
		return
	}
	body.Reason = request.Truncate(body.Reason, MaxCancelReason)
	if h.visible(w, ctx, p, id) == nil {
		return
	}
	reason := "cancelled by " + p.Subject
	if body.Reason != "" {
		reason += ": " + body.Reason
	}
	b, did, err := h.Store.RecordCancel(ctx, id, store.Cancel{RequestedAt: h.now(), By: p.Subject, Reason: reason})
	if err != nil {
		h.fail(w, "record cancel", err)
		return
	}
	log := h.logger().With("batch_id", id, "by", p.Subject)
	if b.State.Final() && b.State != model.StateCancelled && b.Cancel == nil {
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s already ended %s; nothing to cancel", id, b.State).Write(w)
		return
	}
	if did {
		log.Info("batch cancel recorded")
	}
	settled := b.State.Final() || h.settle(ctx, b)
	code := http.StatusOK
	if !settled {
		code = http.StatusAccepted
	}
	if nb, err := h.Store.Batch(ctx, id); err == nil {
		b = nb
	}
	writeJSON(w, code, Cancelled{BatchID: id, TaskID: id, State: b.State, Cancel: b.Cancel, Settled: settled})
}

// settle waits until every lane of b's current attempt has finished the
// writes it may have had in flight when the cancel was recorded: each
// unfinished lane must have moved past the count of the first read (taken
// after the cancel committed) and hold no pending intent. Why this is
// enough: every write is preceded by its intent, recorded on the lane with
// the update time the call read together with the batch as precondition. A
// call that read the batch before the cancel therefore either recorded its
// intent before the lane moved (then settle waits until the node is
// counted, which removes the intent) or finds the lane moved, reads the
// batch again and sees the cancel — whichever path moved the lane (the
// lane's next node, a dead letter, a duplicate). It returns false when ctx
// ends or CancelWait passes first.
func (h *Handler) settle(ctx context.Context, b *store.BatchDoc) bool {
	wait := h.CancelWait
	if wait <= 0 {
		wait = DefaultCancelWait
	}
	ctx, stop := context.WithTimeout(ctx, wait)
	defer stop()
	var first map[int]int
	for {
		lanes, err := h.Store.Lanes(ctx, b.ID, b.Attempt)
		if err == nil {
			if first == nil {
				first = map[int]int{}
				for _, l := range lanes {
					first[l.Lane] = l.Counts.Done()
				}
			}
			if settled(lanes, first) {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settled reports whether every lane is complete, or has moved past the
// count it had at the first read and has no write pending (an intent
// recorded and not yet resolved by its node's count).
func settled(lanes []store.LaneDoc, first map[int]int) bool {
	for _, l := range lanes {
		if d := l.Counts.Done(); d < l.Size && (d <= first[l.Lane] || len(l.Pending) > 0) {
			return false
		}
	}
	return true
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

func (h *Handler) retry(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	p, e := principal(r)
	if e != nil {
		e.Write(w)
		return
	}
	var body RetryBody
	if e := h.decodeOptional(w, r, &body); e != nil {
		e.Write(w)
		return
	}
	b := h.visible(w, ctx, p, id)
	if b == nil {
		return
	}
	if !b.State.Final() {
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s is still %s; retry it once it ends", id, b.State).Write(w)
		return
	}
	states := []model.NodeState{model.NodeFailed}
	if body.IncludeCancelled {
		states = append(states, model.NodeCancelled)
	}
	var adj model.Counts
	var names []string
	for _, st := range states {
		docs, err := h.Store.NodesWhere(ctx, id, "state", string(st))
		if err != nil {
			h.fail(w, "list nodes to retry", err)
			return
		}
		for _, d := range docs {
			names = append(names, d.Node)
		}
		if st == model.NodeFailed {
			adj.Failed = len(docs)
		} else {
			adj.Cancelled = len(docs)
		}
	}
	if len(names) == 0 {
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s has no failed%s node to retry", id, map[bool]string{true: " or cancelled"}[body.IncludeCancelled]).Write(w)
		return
	}
	slices.Sort(names)
	sets, err := h.nodeSets(ctx, b, names)
	if err != nil {
		h.fail(w, "read change set", err)
		return
	}
	// The retry runs as the person asking for it, if Kubernetes lets them.
	if e := h.authorizeSets(ctx, p, names, sets); e != nil {
		e.Write(w)
		return
	}
	attempt := b.Attempt + 1
	c := min(max(b.Concurrency, 1), len(names))
	now := h.now()
	lanes, evs := lay(b.ID, attempt, names, c, setOf(sets), nil, b.DryRun, now)
	nb, err := h.Store.StartAttempt(ctx, id, store.Attempt{Number: attempt, Lanes: c, Total: len(names), Adjust: adj, StartedAt: now, Names: names, RequestedBy: requester(p, attempt, now)}, lanes)
	switch {
	case errors.Is(err, store.ErrNotFinal) || errors.Is(err, store.ErrMoved):
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s changed meanwhile (another retry?); reload it", id).Write(w)
		return
	case err != nil:
		h.fail(w, "start retry attempt", err)
		return
	}
	log := h.logger().With("batch_id", id, "attempt", attempt, "by", p.Subject)
	log.Info("retry started", "nodes", len(names), "failed", adj.Failed, "cancelled", adj.Cancelled)
	answer := Retried{BatchID: id, TaskID: id, Attempt: attempt, Total: len(names), Concurrency: c, State: nb.State, Nodes: names[:min(len(names), 1000)]}
	if h.InlineMax > 0 && len(names) <= h.InlineMax {
		h.runInline(context.WithoutCancel(ctx), log, evs)
		h.answer(w, r, id, http.StatusOK)
		return
	}
	if !h.fanOut(w, ctx, log, id, evs) {
		return
	}
	writeJSON(w, http.StatusAccepted, answer)
}

// fanOut publishes evs under a context of its own (a client that goes away
// must not leave a half-published attempt). On failure it records the batch
// failed (with a cancel, so events already out patch nothing), answers 503
// and returns false.
func (h *Handler) fanOut(w http.ResponseWriter, ctx context.Context, log *slog.Logger, id string, evs []events.Node) bool {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := h.publish(pctx, evs); err != nil {
		reason := "publishing the node events failed: " + err.Error()
		log.Error("publish", "error", err)
		if ferr := h.Store.Fail(context.WithoutCancel(ctx), id, reason, h.now()); ferr != nil {
			log.Error("mark batch failed", "error", ferr)
		}
		request.Errorf(http.StatusServiceUnavailable, request.CodeUnavailable, "batch %s failed: %s", id, reason).Write(w)
		return false
	}
	return true
}

// lay spreads names over c lanes of attempt (node i: lane i mod c, position
// i div c) and builds each node's event with its change set and, when
// observed has it, the node as listed (nil: the patch path reads it).
func lay(id string, attempt int, names []string, c int, set func(node string) change.Set, observed map[string]*change.Observed, dryRun bool, now time.Time) ([]store.LaneDoc, []events.Node) {
	total := len(names)
	lanes := make([]store.LaneDoc, c)
	for l := range lanes {
		lanes[l] = store.LaneDoc{Attempt: attempt, Lane: l, Size: (total - l + c - 1) / c, UpdatedAt: now,
			DoneBits: []byte{}, Failures: []model.Failure{}, LatencyHist: map[string]int64{}}
	}
	evs := make([]events.Node, total)
	for i, n := range names {
		evs[i] = events.Node{
			BatchID: id, Attempt: attempt, Node: n, Lane: i % c, Position: i / c,
			LaneSize: lanes[i%c].Size, Lanes: c, Total: total, Changes: set(n), DryRun: dryRun,
			Observed: observed[n],
		}
	}
	return lanes, evs
}

// setOf returns the change set of each node from sets.
func setOf(sets map[string]change.Set) func(string) change.Set {
	return func(n string) change.Set { return sets[n] }
}

// nodeSets returns the change set of each named node of b: the batch's one
// set, or, for a revert batch, each node's own set derived again from the
// reverted batch's results (deterministically, so a retry re-applies exactly
// what the revert first sent).
func (h *Handler) nodeSets(ctx context.Context, b *store.BatchDoc, names []string) (map[string]change.Set, error) {
	out := make(map[string]change.Set, len(names))
	if b.Reverts != "" {
		all, err := h.revertSets(ctx, b.Reverts)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			out[n] = all[n]
		}
		return out, nil
	}
	var set change.Set
	if err := json.Unmarshal([]byte(b.ChangeSet), &set); err != nil {
		return nil, fmt.Errorf("decode change set of %s: %w", b.ID, err)
	}
	for _, n := range names {
		out[n] = set
	}
	return out, nil
}

// revertSets derives, for every node batch src changed, the change that
// restores each touched key to its value before src — guarded by an Expect
// that the key still holds the value src set, so a node someone changed
// since is skipped (with the key and the value found) instead of being
// overwritten. A node whose before-values are unknown (store.NodeDoc.Unknown)
// gets an empty set: the patch path skips it with the reason
// (runner.RevertSet), it never restores a guess.
func (h *Handler) revertSets(ctx context.Context, src string) (map[string]change.Set, error) {
	docs, err := h.Store.NodesWhere(ctx, src, "changed", true)
	if err != nil {
		return nil, err
	}
	out := map[string]change.Set{}
	for _, d := range docs {
		if d.DryRun || (d.State != model.NodeSucceeded && len(d.Unknown) == 0) {
			continue
		}
		s, skip := runner.RevertSet(d)
		if skip != "" || len(s.Labels)+len(s.Taints) > 0 {
			out[d.Node] = s
		}
	}
	return out, nil
}

// RevertBody is the optional body of POST /v1/batches/{id}:revert: an
// empty object. A body is still decoded strictly, so a field a client
// thinks means something (there is none yet) is refused, not ignored.
type RevertBody struct{}

func (h *Handler) revert(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	p, e := principal(r)
	if e != nil {
		e.Write(w)
		return
	}
	var body RevertBody
	if e := h.decodeOptional(w, r, &body); e != nil {
		e.Write(w)
		return
	}
	src := h.visible(w, ctx, p, id)
	if src == nil {
		return
	}
	switch {
	case !src.State.Final():
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s is still %s; cancel it or wait, then revert", id, src.State).Write(w)
		return
	case src.DryRun:
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s was a dry run: it changed nothing to revert", id).Write(w)
		return
	case src.RevertedBy != "":
		h.existing(w, r, src.RevertedBy, submitAsync)
		return
	}
	sets, err := h.revertSets(ctx, id)
	if err != nil {
		h.fail(w, "read node results", err)
		return
	}
	if len(sets) == 0 {
		request.Errorf(http.StatusConflict, request.CodeConflict, "batch %s changed no node: nothing to revert", id).Write(w)
		return
	}
	names := slices.Sorted(maps.Keys(sets))
	if e := h.authorizeSets(ctx, p, names, sets); e != nil {
		e.Write(w)
		return
	}
	c := min(max(src.Concurrency, 1), len(names))
	now := h.now()
	b := &store.BatchDoc{
		ID: h.newID(), Owner: p.Subject, Reverts: id,
		Total: len(names), Concurrency: c, Lanes: c, AttemptTotal: len(names), Attempt: 1,
		State: model.StateRunning, CreatedAt: now, StartedAt: now, AttemptStartedAt: now,
		Inline:     h.InlineMax > 0 && len(names) <= h.InlineMax,
		Names:      names,
		Requesters: []store.Requester{requester(p, 1, now)},
	}
	b.Action, b.Changes = summarize(sets)
	b.ChangeSet = "" // per node: derived from the reverted batch (nodeSets)
	lanes, evs := lay(b.ID, 1, names, c, setOf(sets), nil, false, now)
	if existing, err := h.Store.CreateRevert(ctx, b, lanes); errors.Is(err, store.ErrExists) {
		h.existing(w, r, existing, submitAsync)
		return
	} else if err != nil {
		h.fail(w, "record revert batch", err)
		return
	}
	log := h.logger().With("batch_id", b.ID, "reverts", id, "owner", p.Subject)
	log.Info("revert created", "total", b.Total, "concurrency", c)
	if b.Inline {
		h.runInline(context.WithoutCancel(ctx), log, evs)
		h.answer(w, r, b.ID, http.StatusOK)
		return
	}
	if !h.fanOut(w, ctx, log, b.ID, evs) {
		return
	}
	writeJSON(w, http.StatusAccepted, Created{BatchID: b.ID, TaskID: b.ID, Total: b.Total, Concurrency: c, State: b.State, Reverts: id})
}

// summarize describes per-node revert sets for the batch document: the
// action, and the distinct changes in kubectl syntax (at most 100).
func summarize(sets map[string]change.Set) (model.Action, store.Changes) {
	action := model.ActionLabel
	labels, taints := map[string]bool{}, map[string]bool{}
	for _, s := range sets {
		if s.Action() == model.ActionTaint {
			action = model.ActionTaint
		}
		for _, l := range s.Labels {
			labels[l.String()] = true
		}
		for _, t := range s.Taints {
			taints[t.String()] = true
		}
	}
	first := func(m map[string]bool) []string {
		s := slices.Sorted(maps.Keys(m))
		return s[:min(len(s), 100)]
	}
	return action, store.Changes{Labels: first(labels), Taints: first(taints)}
}
