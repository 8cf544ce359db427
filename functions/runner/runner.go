// Package runner is the per-node path shared by the patch function and the
// batch function's inline mode: check that the node is not already counted,
// check for a cancel, patch the node, record its result document, count it in
// its lane exactly once, and, when the lane completes, finish the batch
// exactly once. docs/design.md "Pipeline" explains why it is shaped so.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Patcher applies one node's change against the API server.
type Patcher interface {
	Apply(ctx context.Context, node string, set change.Set, seen *change.Observed, dryRun bool) (nodepatch.Outcome, error)
}

// ErrTransient wraps an error worth a redelivery (conflict after retries,
// 429, 5xx, timeouts, Firestore unavailable).
var ErrTransient = errors.New("transient")

// ErrUnknownBatch means the event names a batch or lane that does not exist:
// permanent, acknowledged.
var ErrUnknownBatch = errors.New("unknown batch or lane")

// maxLaneRetries bounds re-reads when a lane document moved under us.
const maxLaneRetries = 20

// Runner runs the per-node path. Store and Patcher are required.
type Runner struct {
	Store   *store.Store
	Patcher Patcher
	// PatcherFor, when set, gives the patcher acting for the person who
	// asked for the node's attempt, as the batch document records them
	// (store.Requester; never what the event says), with the batch id:
	// Patcher is then not used. See Impersonating.
	PatcherFor func(user string, groups []string, batchID string) (Patcher, error)
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default slog.Default()
}

// Result is what Run did.
type Result struct {
	Node     store.NodeDoc // the recorded result (zero when AlreadyCounted)
	Already  bool          // the node was counted before: nothing done
	Finished bool          // this call moved the batch to its final state
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Run processes one node event. It returns an error wrapping ErrTransient
// when the event should be delivered again; every other error is permanent
// and the event should be acknowledged.
func (r *Runner) Run(ctx context.Context, ev events.Node) (Result, error) {
	log := r.logger().With("batch_id", ev.BatchID, "node", ev.Node, "lane", ev.Lane, "position", ev.Position)
	// One read for both: read after the previous node of the lane was
	// counted, so a cancel recorded before that is seen here (the
	// guarantee of :cancel rests on this read; functions/batch settle).
	b, lane, err := r.Store.BatchAndLane(ctx, ev.BatchID, ev.Attempt, ev.Lane)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("run %s: %w", ev.ID(), ErrUnknownBatch)
	}
	if err != nil {
		return Result{}, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	if lane.Doc.Has(ev.Position) {
		return r.already(ctx, ev, lane, b)
	}

	start := r.now()
	doc := store.NodeDoc{
		Node: ev.Node, Lane: ev.Lane, Position: ev.Position, Attempt: ev.Attempt,
		StartedAt: start, DryRun: ev.DryRun,
	}
	switch {
	case b.Cancel != nil:
		doc.State, doc.Reason = batch.NodeCancelled, "cancelled before this node was reached: "+b.Cancel.Reason
	case b.State.Final():
		doc.State, doc.Reason = batch.NodeCancelled, fmt.Sprintf("batch already %s before this node was reached", b.State)
	default:
		pt, perr := r.patcher(b, ev.Attempt)
		if perr != nil {
			doc.State, doc.Reason = batch.NodeFailed, perr.Error()
			break
		}
		out, err := pt.Apply(ctx, ev.Node, ev.Changes, ev.Observed, ev.DryRun)
		if err != nil && nodepatch.Classify(err) == nodepatch.Transient {
			log.Warn("transient patch error, redelivery wanted", "error", err)
			// For the timing figures; this call holds the lane's key.
			if cerr := r.Store.AddRedelivery(ctx, ev.BatchID, ev.Attempt, ev.Lane); cerr != nil {
				log.Warn("count redelivery", "error", cerr)
			}
			return Result{}, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
		}
		if err != nil {
			doc.State, doc.Reason = batch.NodeFailed, err.Error()
		} else {
			fill(&doc, out)
		}
	}
	doc.FinishedAt = r.now()
	doc.LatencyMS = doc.FinishedAt.Sub(start).Milliseconds()
	return r.record(ctx, log, ev, lane, doc, b)
}

// already acknowledges an event whose node is counted. When the lane is
// complete the batch (as read with the lane) may still be waiting for the
// finish a failed call could not make, so it is tried again.
func (r *Runner) already(ctx context.Context, ev events.Node, lane *store.Lane, b *store.BatchDoc) (Result, error) {
	res := Result{Already: true}
	if !lane.Doc.Complete() || b.State.Final() {
		return res, nil
	}
	var err error
	if res.Finished, err = r.finish(ctx, ev.BatchID); err != nil {
		return res, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	return res, nil
}

// fill copies a patch outcome into a node result.
func fill(doc *store.NodeDoc, out nodepatch.Outcome) {
	doc.State = batch.NodeSucceeded
	if out.Skipped {
		doc.State, doc.Reason = batch.NodeSkipped, out.SkipReason
	}
	doc.Changed = out.Changed
	doc.ResourceVersion = out.ResourceVersion
	doc.Conflicts = out.Conflicts
	if len(out.Changes) > 0 {
		doc.Before = make(map[string]*string, len(out.Changes))
		doc.After = make(map[string]*string, len(out.Changes))
		for _, kc := range out.Changes {
			doc.Before[kc.Key] = kc.Before
			doc.After[kc.Key] = kc.After
		}
	}
}

// Fail records ev's node as failed with reason, without touching the node:
// the dead-letter path ("delivery attempts exhausted"), so the batch still
// finishes.
func (r *Runner) Fail(ctx context.Context, ev events.Node, reason string) (Result, error) {
	log := r.logger().With("batch_id", ev.BatchID, "node", ev.Node, "lane", ev.Lane, "position", ev.Position)
	b, lane, err := r.Store.BatchAndLane(ctx, ev.BatchID, ev.Attempt, ev.Lane)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("fail %s: %w", ev.ID(), ErrUnknownBatch)
	}
	if err != nil {
		return Result{}, fmt.Errorf("fail %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	if lane.Doc.Has(ev.Position) {
		return r.already(ctx, ev, lane, b)
	}
	now := r.now()
	doc := store.NodeDoc{
		Node: ev.Node, Lane: ev.Lane, Position: ev.Position, Attempt: ev.Attempt, DryRun: ev.DryRun,
		State: batch.NodeFailed, Reason: reason, StartedAt: now, FinishedAt: now,
	}
	return r.record(ctx, log, ev, lane, doc, b)
}

// record writes the node's result document and counts it in its lane
// (once: the lane's bitset), then finishes the batch if this completed the
// lane and every lane of the attempt is complete. Common case: both writes in
// one commit (Store.CountNode). When a result is already recorded (a
// duplicate delivery or dead letter raced this one, or an earlier attempt's
// result is there) the slow path settles which result stands and counts that
// one. b is the batch as read before the node was handled (for its failure
// threshold).
func (r *Runner) record(ctx context.Context, log *slog.Logger, ev events.Node, lane *store.Lane, doc store.NodeDoc, b *store.BatchDoc) (Result, error) {
	for try := 0; ; try++ {
		if lane.Doc.Has(ev.Position) {
			return Result{Already: true}, nil
		}
		count(&lane.Doc, ev.Position, &doc, r.now())
		err := r.Store.CountNode(ctx, ev.BatchID, &doc, lane)
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrExists) {
			return r.recordSlow(ctx, log, ev, doc, b)
		}
		if !errors.Is(err, store.ErrLaneMoved) || try >= maxLaneRetries {
			return Result{}, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
		}
		// Nothing was written; count again on the lane as it is now.
		if lane, err = r.Store.Lane(ctx, ev.BatchID, ev.Attempt, ev.Lane); err != nil {
			return Result{}, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
		}
	}
	return r.counted(ctx, log, ev, lane, doc, b)
}

// recordSlow is record when the node already has a result document: it
// writes doc unless a result of the same (or a later) attempt stands, then
// counts the standing result in the lane. A crash between those two writes
// is healed by the redelivery: it finds the recorded result and counts it.
func (r *Runner) recordSlow(ctx context.Context, log *slog.Logger, ev events.Node, doc store.NodeDoc, b *store.BatchDoc) (Result, error) {
	stand, err := r.Store.RecordNode(ctx, ev.BatchID, &doc)
	if err != nil {
		return Result{}, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	// When another delivery recorded first, its result is the one counted.
	doc = *stand
	var lane *store.Lane
	for try := 0; ; try++ {
		if lane, err = r.Store.Lane(ctx, ev.BatchID, ev.Attempt, ev.Lane); err != nil {
			return Result{}, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
		}
		if lane.Doc.Has(ev.Position) {
			return Result{Already: true}, nil
		}
		count(&lane.Doc, ev.Position, &doc, r.now())
		err := r.Store.UpdateLane(ctx, ev.BatchID, lane)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrLaneMoved) || try >= maxLaneRetries {
			return Result{}, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
		}
	}
	return r.counted(ctx, log, ev, lane, doc, b)
}

// counted runs what follows a node's count: the failure threshold and, when
// the lane is complete, the batch's finish.
func (r *Runner) counted(ctx context.Context, log *slog.Logger, ev events.Node, lane *store.Lane, doc store.NodeDoc, b *store.BatchDoc) (Result, error) {
	log.Info("node recorded", "state", doc.State, "changed", doc.Changed, "latency_ms", doc.LatencyMS)
	res := Result{Node: doc}
	if doc.State == batch.NodeFailed && b.MaxFailures != "" && b.Cancel == nil {
		// Before finishing: a threshold crossed by the last node still
		// makes the batch fail.
		if err := r.threshold(ctx, log, ev.BatchID); err != nil {
			// The node is counted; the next failure checks again.
			log.Warn("failure threshold check", "error", err)
		}
	}
	if !lane.Doc.Complete() {
		return res, nil
	}
	if open, err := r.Store.LaneOpen(ctx, ev.BatchID, ev.Attempt); err == nil && open {
		return res, nil // a lane still running will finish the batch
	}
	finished, err := r.finish(ctx, ev.BatchID)
	if err != nil {
		// The node is counted. A redelivery finds its bit set and, the lane
		// being complete, tries finishing again (see already).
		return res, fmt.Errorf("record %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	res.Finished = finished
	if finished {
		log.Info("batch finished")
	}
	return res, nil
}

// count adds doc to lane: marks the position, tallies the state, remembers
// the failure and the latency.
func count(l *store.LaneDoc, pos int, doc *store.NodeDoc, now time.Time) {
	l.Mark(pos)
	switch doc.State {
	case batch.NodeSucceeded:
		l.Counts.Succeeded++
		if !doc.Changed {
			l.Counts.Unchanged++
		}
	case batch.NodeFailed:
		l.Counts.Failed++
		if len(l.Failures) < store.MaxLaneFailures {
			l.Failures = append(l.Failures, batch.Failure{Node: doc.Node, Reason: doc.Reason})
		}
	case batch.NodeSkipped:
		l.Counts.Skipped++
	case batch.NodeCancelled:
		l.Counts.Cancelled++
	}
	l.Conflicts += doc.Conflicts
	l.CurrentNode = doc.Node
	l.UpdatedAt = now
	if doc.State == batch.NodeSucceeded || doc.State == batch.NodeFailed {
		l.AddLatency(doc.LatencyMS)
	}
}

// finish moves batchID to its final state if every node of its current
// attempt has a result. It reads O(lanes) documents, then the batch, and
// writes it only when the attempt is done and the batch not yet final
// (Store.Finish: a compare-and-swap, so lanes completing at once do not
// contend in transactions).
func (r *Runner) finish(ctx context.Context, batchID string) (bool, error) {
	lanes, err := r.Store.Lanes(ctx, batchID, 0)
	if err != nil {
		return false, err
	}
	now := r.now()
	return r.Store.Finish(ctx, batchID, func(cur *store.BatchDoc) *store.BatchDoc {
		if !store.AttemptDone(cur, lanes) {
			return nil
		}
		return store.Finalize(cur, lanes, now)
	})
}

// Finish is finish for callers outside the per-node path (GET reconciling a
// batch whose last finishing call failed).
func (r *Runner) Finish(ctx context.Context, batchID string) (bool, error) {
	return r.finish(ctx, batchID)
}

// threshold stops batchID like a cancel, marked as a threshold stop (final
// state failed, with the reason), once the failures of its current attempt
// reach max_failures. Events still queued then record their nodes
// cancelled without patching them, as after a cancel.
func (r *Runner) threshold(ctx context.Context, log *slog.Logger, batchID string) error {
	b, err := r.Store.Batch(ctx, batchID)
	if err != nil {
		return err
	}
	if b.MaxFailures == "" || b.Cancel != nil || b.State.Final() {
		return nil
	}
	limit, err := request.Threshold(b.MaxFailures).Limit(b.AttemptTotal)
	if err != nil || limit == 0 {
		return nil // validated at submit; an unreadable threshold stops nothing
	}
	lanes, err := r.Store.Lanes(ctx, batchID, b.Attempt)
	if err != nil {
		return err
	}
	failed := 0
	for _, l := range lanes {
		failed += l.Counts.Failed
	}
	if failed < limit {
		return nil
	}
	reason := fmt.Sprintf("failure threshold reached: %d of %d nodes failed (max_failures %s)", failed, b.AttemptTotal, b.MaxFailures)
	_, did, err := r.Store.RecordCancel(ctx, batchID, store.Cancel{RequestedAt: r.now(), By: "nodebatch", Reason: reason, Threshold: true})
	if err != nil {
		return err
	}
	if did {
		log.Warn("failure threshold reached: batch stopped", "failed", failed, "max_failures", b.MaxFailures)
	}
	return nil
}
