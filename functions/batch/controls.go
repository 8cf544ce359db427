package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/functions/runner"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// DefaultCancelWait bounds how long a cancel waits for the patches already
// in flight when it was recorded (see Handler.CancelWait).
const DefaultCancelWait = 30 * time.Second

// control routes POST /v1/batches/{id}:{action}. Go's ServeMux cannot put a
// wildcard and a literal in one segment, so the segment is split here on its
// last ':' (ids never contain one).
func (h *Handler) control(w http.ResponseWriter, r *http.Request) error {
	id, action, ok := splitAction(r.PathValue("idaction"))
	if !ok {
		return apierror.New(apierror.NotFound, "no route POST %s", r.URL.Path)
	}
	if err := validID(id); err != nil {
		return err
	}
	switch action {
	case "cancel":
		return h.cancel(w, r, id)
	case "retry":
		return h.retry(w, r, id)
	case "revert":
		return h.revert(w, r, id)
	}
	return apierror.New(apierror.NotFound, "unknown batch action %q (cancel, retry, revert)", action)
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

// visible reads batch id for p: 404 when it is missing or not p's to see
// (someone else's batch is answered exactly like a missing one).
func (h *Handler) visible(ctx context.Context, p auth.Principal, id string) (*store.BatchDoc, error) {
	b, err := h.Store.Batch(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.CanSee(b.Owner)) {
		return nil, apierror.New(apierror.NotFound, "batch %q not found", id)
	}
	if err != nil {
		return nil, failed("read batch", err)
	}
	return b, nil
}

// decodeOptional decodes a JSON body into v when there is one; an empty body
// leaves v at its zero value.
func (h *Handler) decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	if err := h.decode(w, r, v); err != nil && !errors.Is(err, request.ErrEmptyBody) {
		return err
	}
	return nil
}

// MaxCancelReason is how many bytes of a cancel's reason are kept (cut on
// a character boundary).
const MaxCancelReason = 500

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body CancelBody
	if err := h.decodeOptional(w, r, &body); err != nil {
		return err
	}
	body.Reason = request.Truncate(body.Reason, MaxCancelReason)
	if _, err := h.visible(ctx, p, id); err != nil {
		return err
	}
	reason := "cancelled by " + p.Subject
	if body.Reason != "" {
		reason += ": " + body.Reason
	}
	b, did, err := h.Store.RecordCancel(ctx, id, store.Cancel{RequestedAt: h.now(), By: p.Subject, Reason: reason})
	if err != nil {
		return failed("record cancel", err)
	}
	log := h.logger().With("batch_id", id, "by", p.Subject)
	if b.State.Final() && b.State != model.StateCancelled && b.Cancel == nil {
		return apierror.New(apierror.Conflict, "batch %s already ended %s; nothing to cancel", id, b.State)
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
	writeJSON(w, code, cancelledOf(b, settled))
	return nil
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

func (h *Handler) retry(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body RetryBody
	if err := h.decodeOptional(w, r, &body); err != nil {
		return err
	}
	b, err := h.visible(ctx, p, id)
	if err != nil {
		return err
	}
	ctx, span := h.linkBatch(ctx, "retry", b)
	defer span.End()
	if !b.State.Final() {
		return apierror.New(apierror.Conflict, "batch %s is still %s; retry it once it ends", id, b.State)
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
			return failed("list nodes to retry", err)
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
		return apierror.New(apierror.Conflict, "batch %s has no failed%s node to retry", id, map[bool]string{true: " or cancelled"}[body.IncludeCancelled])
	}
	slices.Sort(names)
	sets, err := h.nodeSets(ctx, b, names)
	if err != nil {
		return failed("read change set", err)
	}
	// The retry runs as the person asking for it, if Kubernetes lets them.
	if e := h.authorizeSets(ctx, p, names, sets); e != nil {
		return e
	}
	attempt := b.Attempt + 1
	c := min(max(b.Concurrency, 1), len(names))
	now := h.now()
	lanes, evs := assignLanes(b.ID, attempt, names, c, lookupSet(sets), nil, b.DryRun, now)
	nb, err := h.Store.StartAttempt(ctx, id, store.Attempt{Number: attempt, Lanes: c, Total: len(names), Adjust: adj, StartedAt: now, Names: names, RequestedBy: requester(p, attempt, now)}, lanes)
	switch {
	case errors.Is(err, store.ErrNotFinal) || errors.Is(err, store.ErrMoved):
		return apierror.Wrap(apierror.Conflict, err, "batch %s changed meanwhile (another retry?); reload it", id)
	case err != nil:
		return failed("start retry attempt", err)
	}
	log := h.logger().With("batch_id", id, "attempt", attempt, "by", p.Subject)
	log.InfoContext(ctx, "retry started", "nodes", len(names), "failed", adj.Failed, "cancelled", adj.Cancelled)
	h.started(ctx, h.InlineMax > 0 && len(names) <= h.InlineMax, "retry")
	answer := Retried{BatchID: id, TaskID: id, Attempt: attempt, Total: len(names), Concurrency: c, State: nb.State, Nodes: names[:min(len(names), 1000)]}
	if h.InlineMax > 0 && len(names) <= h.InlineMax {
		h.runInline(context.WithoutCancel(ctx), log, evs)
		return h.answer(w, r, id, http.StatusOK)
	}
	if err := h.fanOut(ctx, log, id, evs); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, answer)
	return nil
}

// fanOut publishes evs under a context of its own (a client that goes away
// must not leave a half-published batch or attempt). On failure it records
// the batch failed (with a cancel, so events already out patch nothing) and
// returns the 503.
func (h *Handler) fanOut(ctx context.Context, log *slog.Logger, id string, evs []events.Node) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := h.publish(pctx, evs); err != nil {
		reason := "publishing the node events failed: " + err.Error()
		log.Error("publish", "error", err)
		if ferr := h.Store.Fail(context.WithoutCancel(ctx), id, reason, h.now()); ferr != nil {
			log.Error("mark batch failed", "error", ferr)
		}
		return apierror.New(apierror.Unavailable, "batch %s failed: %s", id, reason)
	}
	return nil
}

// assignLanes spreads names over c lanes of attempt (node i: lane i mod c, position
// i div c) and builds each node's event with its change set and, when
// observed has it, the node as listed (nil: the patch path reads it).
func assignLanes(id string, attempt int, names []string, c int, set func(node string) change.Set, observed map[string]*change.Observed, dryRun bool, now time.Time) ([]store.LaneDoc, []events.Node) {
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

// lookupSet returns the change set of each node from sets.
func lookupSet(sets map[string]change.Set) func(string) change.Set {
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
	set, ok, err := b.Change()
	if err != nil {
		return nil, fmt.Errorf("decode change set of %s: %w", b.ID, err)
	}
	if !ok {
		return nil, fmt.Errorf("batch %s records no change set (written before change_set existed)", b.ID)
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

func (h *Handler) revert(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body RevertBody
	if err := h.decodeOptional(w, r, &body); err != nil {
		return err
	}
	src, err := h.visible(ctx, p, id)
	if err != nil {
		return err
	}
	ctx, span := h.linkBatch(ctx, "revert", src)
	defer span.End()
	switch {
	case !src.State.Final():
		return apierror.New(apierror.Conflict, "batch %s is still %s; cancel it or wait, then revert", id, src.State)
	case src.DryRun:
		return apierror.New(apierror.Conflict, "batch %s was a dry run: it changed nothing to revert", id)
	case src.RevertedBy != "":
		return h.existing(w, r, src.RevertedBy, submitAsync)
	}
	sets, err := h.revertSets(ctx, id)
	if err != nil {
		return failed("read node results", err)
	}
	if len(sets) == 0 {
		return apierror.New(apierror.Conflict, "batch %s changed no node: nothing to revert", id)
	}
	names := slices.Sorted(maps.Keys(sets))
	if e := h.authorizeSets(ctx, p, names, sets); e != nil {
		return e
	}
	c := min(max(src.Concurrency, 1), len(names))
	now := h.now()
	b := &store.BatchDoc{
		ID: h.newID(), Owner: p.Subject, Reverts: id,
		Total: len(names), Concurrency: c, Lanes: c, AttemptTotal: len(names), Attempt: 1,
		State: model.StateRunning, CreatedAt: now, StartedAt: now, AttemptStartedAt: now,
		Inline:      h.InlineMax > 0 && len(names) <= h.InlineMax,
		Names:       names,
		Requesters:  []store.Requester{requester(p, 1, now)},
		TraceParent: telemetry.TraceParent(ctx),
	}
	b.SetNodeChanges(sets) // each node's set is derived from the reverted batch (nodeSets)
	lanes, evs := assignLanes(b.ID, 1, names, c, lookupSet(sets), nil, false, now)
	if existing, err := h.Store.CreateRevert(ctx, b, lanes); errors.Is(err, store.ErrExists) {
		return h.existing(w, r, existing, submitAsync)
	} else if err != nil {
		return failed("record revert batch", err)
	}
	log := h.logger().With("batch_id", b.ID, "reverts", id, "owner", p.Subject)
	log.InfoContext(ctx, "revert created", "total", b.Total, "concurrency", c)
	h.started(ctx, b.Inline, "revert")
	if b.Inline {
		h.runInline(context.WithoutCancel(ctx), log, evs)
		return h.answer(w, r, b.ID, http.StatusOK)
	}
	if err := h.fanOut(ctx, log, b.ID, evs); err != nil {
		return err
	}
	created := createdOf(b)
	created.Reverts = id
	writeJSON(w, http.StatusAccepted, created)
	return nil
}
