// Package runner is the per-node path shared by the patch function and the
// batch function's inline mode: check that the node is not already counted,
// check for a cancel, patch the node, record its result document, count it in
// its lane exactly once, and, when the lane completes, finish the batch
// exactly once. docs/design.md "Pipeline" explains why it is shaped so.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Patcher applies one node's change against the API server. Write calls
// before with every write it is about to send (the per-node path records
// its intent there); ResourceVersion reads the node's current one (to
// resolve an earlier delivery's intent); Apply is Write without a hook
// (the batch function's preview).
type Patcher interface {
	Apply(ctx context.Context, node string, set change.Set, seen *change.Observed, dryRun bool) (nodepatch.Outcome, error)
	Write(ctx context.Context, node string, set change.Set, seen *change.Observed, dryRun bool, before nodepatch.BeforeWrite) (nodepatch.Outcome, error)
	ResourceVersion(ctx context.Context, node string) (string, error)
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
	Store   Store
	Patcher Patcher
	// PatcherFor, when set, gives the patcher acting for the person who
	// asked for the node's attempt, as the batch document records them
	// (store.Requester; never what the event says), with the batch id:
	// Patcher is then not used. See Impersonating.
	PatcherFor func(user string, groups []string, batchID string) (Patcher, error)
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default slog.Default()
	// Telemetry records the node and batch metrics; nil: none.
	Telemetry *telemetry.Telemetry
}

// Result is what Run did.
type Result struct {
	Node      store.NodeDoc // the recorded result (zero when Duplicate)
	Duplicate bool          // the node was counted before: nothing done
	Finished  bool          // this call moved the batch to its final state
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

// ErrRefused means the event does not match its batch (attempt, lane,
// position, node or change set): nothing was changed or counted, the
// refusal is recorded on the batch, and the event is acknowledged.
var ErrRefused = errors.New("event refused")

// errStopped and errCounted end a write before it is sent: the intent's
// re-read found a cancel (or a final batch), or the node already counted.
var (
	errStopped = errors.New("stopped before the write: the batch is cancelled or final")
	errCounted = errors.New("counted by another delivery before the write")
)

// Run processes one node event. It returns an error wrapping ErrTransient
// when the event should be delivered again; every other error is permanent
// and the event should be acknowledged.
//
// The recording protocol (docs/design.md "Pipeline"): read the batch and
// the lane (one round trip); refuse an event the batch does not vouch for;
// resolve an intent an earlier delivery left on the lane for this node; then,
// before every write, record the write's intent on the lane (its
// resourceVersion and before/after values, with the lane's update time as
// precondition); write; and count the node with one commit that creates
// its result and removes the intent. A record that fails after a landed
// write therefore leaves the intent behind, and whoever handles the node
// next learns from it what may have been written.
func (r *Runner) Run(ctx context.Context, ev events.Node) (Result, error) {
	log := r.logger().With("batch_id", ev.BatchID, "node", ev.Node, "lane", ev.Lane, "position", ev.Position, "attempt", ev.Attempt)
	// One read for both: read after the previous node of the lane was
	// counted, so a cancel recorded before that is seen here (the
	// guarantee of :cancel rests on this read and on the intent's
	// precondition; functions/batch settle).
	b, lane, names, done, err := r.read(ctx, log, ev)
	if done {
		return Result{}, err
	}
	if lane.Doc.Has(ev.Position) {
		return r.already(ctx, ev, lane, b)
	}
	set, skip, err := r.vouch(ctx, ev, b, names)
	if errors.Is(err, ErrRefused) {
		return Result{}, r.refuse(ctx, log, ev, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
	}

	start := r.now()
	doc := store.NodeDoc{
		Node: ev.Node, Lane: ev.Lane, Position: ev.Position, Attempt: ev.Attempt,
		StartedAt: start, DryRun: ev.DryRun,
	}
	prior, err := r.resolve(ctx, ev, b, lane)
	if err != nil {
		return Result{}, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	switch {
	case prior != nil && (b.Cancel != nil || b.State.Final()):
		unknown(&doc, model.NodeFailed, prior, "not written after the batch stopped")
	case b.Cancel != nil:
		doc.State, doc.Reason = model.NodeCancelled, "cancelled before this node was reached: "+b.Cancel.Reason
	case b.State.Final():
		doc.State, doc.Reason = model.NodeCancelled, fmt.Sprintf("batch already %s before this node was reached", b.State)
	case skip != "":
		doc.State, doc.Reason = model.NodeSkipped, skip
	default:
		pt, perr := r.patcher(b, ev.Attempt)
		if perr != nil {
			doc.State, doc.Reason = model.NodeFailed, perr.Error()
			break
		}
		out, err := pt.Write(ctx, ev.Node, set, ev.Observed, ev.DryRun, r.intent(ev, &b, &lane))
		switch {
		case errors.Is(err, errCounted):
			return Result{Duplicate: true}, nil
		case errors.Is(err, errStopped) && prior != nil:
			unknown(&doc, model.NodeFailed, prior, "not written after the batch stopped")
		case errors.Is(err, errStopped) && b.Cancel != nil:
			doc.State, doc.Reason = model.NodeCancelled, "cancelled before this node was reached: "+b.Cancel.Reason
		case errors.Is(err, errStopped):
			doc.State, doc.Reason = model.NodeCancelled, fmt.Sprintf("batch already %s before this node was reached", b.State)
		case err != nil && nodepatch.Classify(err) == nodepatch.Transient:
			log.Warn("transient patch error, redelivery wanted", "error", err)
			// For the timing figures; this call holds the lane's key.
			if cerr := r.Store.AddRedelivery(ctx, ev.BatchID, ev.Attempt, ev.Lane); cerr != nil {
				log.Warn("count redelivery", "error", cerr)
			}
			return Result{}, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
		case err != nil:
			doc.State, doc.Reason = model.NodeFailed, err.Error()
			merge(&doc, prior)
		default:
			fill(&doc, out)
			merge(&doc, prior)
		}
	}
	doc.FinishedAt = r.now()
	doc.LatencyMS = doc.FinishedAt.Sub(start).Milliseconds()
	return r.record(ctx, log, ev, lane, doc, b)
}

// read reads ev's batch, its lane and the names document of its node (one
// round trip) and refuses an event whose attempt or lane the batch does not
// have. done means the event is handled (err says how).
func (r *Runner) read(ctx context.Context, log *slog.Logger, ev events.Node) (*store.BatchDoc, *store.Lane, []string, bool, error) {
	index := -1
	if ev.Lanes > 0 && ev.Lane >= 0 && ev.Position >= 0 {
		index = store.NameIndex(ev.Lanes, ev.Lane, ev.Position)
	}
	b, lane, names, err := r.Store.BatchAndLane(ctx, ev.BatchID, ev.Attempt, ev.Lane, index)
	if errors.Is(err, store.ErrNotFound) {
		if _, berr := r.Store.Batch(ctx, ev.BatchID); berr == nil {
			// The batch exists, the lane does not: a forged attempt or lane.
			return nil, nil, nil, true, r.refuse(ctx, log, ev, fmt.Errorf("%w: batch %s has no lane %s", ErrRefused, ev.BatchID, store.LaneID(ev.Attempt, ev.Lane)))
		}
		return nil, nil, nil, true, fmt.Errorf("run %s: %w", ev.ID(), ErrUnknownBatch)
	}
	if err != nil {
		return nil, nil, nil, true, fmt.Errorf("run %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	return b, lane, names, false, nil
}

// vouch checks ev against its batch: the batch's current attempt, its lane
// layout, its node at ev's position (names: the names document read with
// the batch; for batches from before those existed, the explicit list of
// attempt 1) and its change set
// (for a revert batch, the one derived from the reverted batch's result of
// the node, read here: one more read per node, for reverts only). It returns
// the set to apply, or a skip reason (a revert that cannot be exact), or an
// error wrapping ErrRefused.
func (r *Runner) vouch(ctx context.Context, ev events.Node, b *store.BatchDoc, names []string) (change.Set, string, error) {
	refuse := func(format string, args ...any) (change.Set, string, error) {
		return change.Set{}, "", fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	switch {
	case ev.Attempt != b.Attempt:
		return refuse("attempt %d is not the batch's current attempt %d", ev.Attempt, b.Attempt)
	case ev.Lanes != b.Lanes || ev.Total != b.AttemptTotal:
		return refuse("layout %d lanes / %d nodes is not the batch's %d / %d", ev.Lanes, ev.Total, b.Lanes, b.AttemptTotal)
	case ev.DryRun != b.DryRun:
		return refuse("dry_run %v is not the batch's %v", ev.DryRun, b.DryRun)
	}
	i := store.NameIndex(b.Lanes, ev.Lane, ev.Position)
	switch {
	case b.Named:
		if k := i % store.NamesPerChunk; k >= len(names) || names[k] != ev.Node {
			return refuse("node %q is not the batch's node at lane %d position %d", ev.Node, ev.Lane, ev.Position)
		}
	case b.Attempt == 1 && len(b.Nodes) > 0 && b.Reverts == "":
		listed := slices.Sorted(slices.Values(b.Nodes))
		if i >= len(listed) || listed[i] != ev.Node {
			return refuse("node %q is not the batch's node at lane %d position %d", ev.Node, ev.Lane, ev.Position)
		}
	}
	var want change.Set
	skip := ""
	if b.Reverts != "" {
		src, err := r.Store.Node(ctx, b.Reverts, ev.Node)
		if errors.Is(err, store.ErrNotFound) {
			return refuse("node %q has no result in the reverted batch %s", ev.Node, b.Reverts)
		}
		if err != nil {
			return change.Set{}, "", err
		}
		want, skip = RevertSet(*src)
		if skip != "" {
			skip = fmt.Sprintf("not reverted: %s in batch %s", skip, b.Reverts)
		}
	} else if set, ok, err := b.Change(); err != nil {
		return refuse("the batch's change set is unreadable: %v", err)
	} else if ok {
		want = set
	} else {
		want = ev.Changes // batches written before change_set existed
	}
	if !sameSet(want, ev.Changes) {
		if b.Reverts != "" && skip == "" && b.Named {
			// The node is the revert's (its names say so), but the reverted
			// batch's result of it changed since the revert was made (a
			// retry of that batch re-ran it): restore nothing, and say so,
			// so the revert still finishes.
			return change.Set{}, fmt.Sprintf("not reverted: the result of this node in batch %s changed since the revert was created", b.Reverts), nil
		}
		return refuse("change set %s is not the batch's %s", ev.Changes, want)
	}
	return want, skip, nil
}

// sameSet compares change sets by their JSON form (nil and empty lists
// alike).
func sameSet(a, b change.Set) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	if erra != nil || errb != nil {
		return false
	}
	norm := func(j []byte) string {
		return strings.NewReplacer(`"labels":null`, `"labels":[]`, `"taints":null`, `"taints":[]`).Replace(string(j))
	}
	return norm(ja) == norm(jb)
}

// refuse records on the batch that ev was refused (cause wraps ErrRefused)
// and returns the permanent error that acknowledges it. A failure to record
// the refusal is logged, not retried: the event changed nothing.
func (r *Runner) refuse(ctx context.Context, log *slog.Logger, ev events.Node, cause error) error {
	log.Warn("event refused", "reason", cause.Error())
	if err := r.Store.Refuse(ctx, ev.BatchID, store.Refusal{EventID: ev.ID(), Reason: cause.Error(), At: r.now()}); err != nil {
		log.Warn("record refused event", "error", err)
	}
	return fmt.Errorf("run %s: %w", ev.ID(), cause)
}

// intent returns the hook that records each write's intent on the lane
// before the write is sent. When the lane moved since it was read (a dead
// letter or a duplicate counted on it, or a cancel's settle is waiting on
// it), the batch and lane are read again and the write is not sent if the
// batch is now cancelled or final, or the node already counted.
func (r *Runner) intent(ev events.Node, b **store.BatchDoc, lane **store.Lane) nodepatch.BeforeWrite {
	return func(ctx context.Context, p nodepatch.Plan) error {
		in := store.Intent{Node: ev.Node, Attempt: ev.Attempt, ResourceVersion: p.ResourceVersion, DryRun: p.DryRun, At: r.now(),
			Before: map[string]*string{}, After: map[string]*string{}}
		for _, kc := range p.Result.Changes {
			if kc.Changed() {
				in.Before[kc.Key], in.After[kc.Key] = kc.Before, kc.After
			}
		}
		for try := 0; ; try++ {
			err := r.Store.WriteIntent(ctx, ev.BatchID, *lane, ev.Position, in)
			if err == nil {
				return nil
			}
			if !errors.Is(err, store.ErrLaneMoved) || try >= maxLaneRetries {
				return fmt.Errorf("%w: %w", ErrTransient, err)
			}
			nb, nl, _, err := r.Store.BatchAndLane(ctx, ev.BatchID, ev.Attempt, ev.Lane, -1)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrTransient, err)
			}
			*b, *lane = nb, nl
			switch {
			case nl.Doc.Has(ev.Position):
				return errCounted
			case nb.Cancel != nil || nb.State.Final():
				return errStopped
			}
		}
	}
}

// resolve learns what an earlier delivery of ev's node did when it left an
// intent on the lane: nothing, when the node is still at the intent's
// resourceVersion (the write was conditional on it, and any write moves
// it); otherwise it may have landed, and the intent is returned so that
// its keys are recorded unknown (never guessed from the node's values,
// which another writer may have set). One GET, only when an intent is
// there (a redelivery after a lost record or a failed write).
func (r *Runner) resolve(ctx context.Context, ev events.Node, b *store.BatchDoc, lane *store.Lane) (*store.Intent, error) {
	in := lane.Doc.PendingAt(ev.Position, ev.Node)
	if in == nil || in.Attempt != ev.Attempt || in.DryRun || len(in.After) == 0 {
		return nil, nil
	}
	pt, err := r.patcher(b, ev.Attempt)
	if err != nil {
		return in, nil // nobody to read as: whether our write landed is unknown
	}
	rv, err := pt.ResourceVersion(ctx, ev.Node)
	switch {
	case err == nil && rv == in.ResourceVersion:
		return nil, nil
	case err == nil || nodepatch.Classify(err) == nodepatch.Permanent:
		return in, nil // moved, or gone: whether our write landed is unknown
	default:
		return nil, err
	}
}

// unknown records doc as state with every key of prior unknown: an earlier
// delivery sent prior's write, its result was lost, and the node moved
// since, so the batch may have changed it.
func unknown(doc *store.NodeDoc, state model.NodeState, prior *store.Intent, what string) {
	doc.State = state
	doc.Changed = true
	doc.After = maps.Clone(prior.After)
	doc.Before = nil
	doc.Unknown = slices.Sorted(maps.Keys(prior.After))
	doc.Reason = fmt.Sprintf("an earlier delivery sent a write whose result was not recorded, and the node has moved since resourceVersion %s: whether it landed is unknown (%s); the values before this batch of %s are unknown",
		prior.ResourceVersion, what, strings.Join(doc.Unknown, ", "))
}

// merge folds an earlier delivery's unresolved intent into doc, the result
// of the write this delivery made: a key that write changed has an exact
// before-value; a key it found already at the target may have been set by
// the earlier write, so its before-value is unknown.
func merge(doc *store.NodeDoc, prior *store.Intent) {
	if prior == nil {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(prior.After)) {
		if b, ok := doc.Before[k]; ok && (change.KeyChange{Before: b, After: doc.After[k]}).Changed() {
			continue
		}
		doc.Unknown = append(doc.Unknown, k)
		delete(doc.Before, k)
		if doc.After == nil {
			doc.After = map[string]*string{}
		}
		doc.After[k] = prior.After[k]
	}
	if len(doc.Unknown) > 0 {
		doc.Changed = true
		note := fmt.Sprintf("an earlier delivery's write (at resourceVersion %s) was not recorded: the values before this batch of %s are unknown", prior.ResourceVersion, strings.Join(doc.Unknown, ", "))
		if doc.Reason == "" {
			doc.Reason = note
		} else {
			doc.Reason += "; " + note
		}
	}
}

// RevertSet returns the change that restores the keys node result d
// changed to their values before d's batch, each expecting the value that
// batch set (so a node someone changed since is skipped, naming the key
// and the value found). skip is not empty when d cannot be reverted
// exactly: a key's value before the batch is unknown (store.NodeDoc.Unknown).
func RevertSet(d store.NodeDoc) (set change.Set, skip string) {
	if len(d.Unknown) > 0 {
		return change.Set{}, fmt.Sprintf("the value of %s before the batch is unknown (an earlier delivery's write was not recorded)", strings.Join(d.Unknown, ", "))
	}
	var s change.Set
	for _, k := range slices.Sorted(maps.Keys(d.After)) {
		b, a := d.Before[k], d.After[k]
		if !(change.KeyChange{Before: b, After: a}).Changed() {
			continue
		}
		exp := &change.Expect{Present: a != nil}
		if a != nil {
			exp.Value = *a
		}
		key, ok := change.ParseKey(k)
		switch {
		case !ok:
			continue
		case key.Kind == change.KindLabel:
			l := change.Label{Key: key.Name, Expect: exp, Remove: b == nil}
			if b != nil {
				l.Value = *b
			}
			s.Labels = append(s.Labels, l)
			continue
		case key.Effect == "":
			continue // "taint:KEY": a remove-all that found nothing
		}
		t := change.Taint{Key: key.Name, Effect: key.Effect, Expect: exp, Remove: b == nil}
		if b != nil {
			t.Value = *b
		}
		s.Taints = append(s.Taints, t)
	}
	return s, ""
}

// already acknowledges an event whose node is counted. When the lane is
// complete the batch (as read with the lane) may still be waiting for the
// finish a failed call could not make, so it is tried again.
func (r *Runner) already(ctx context.Context, ev events.Node, lane *store.Lane, b *store.BatchDoc) (Result, error) {
	res := Result{Duplicate: true}
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
	doc.State = model.NodeSucceeded
	if out.Skipped {
		doc.State, doc.Reason = model.NodeSkipped, out.SkipReason
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
// finishes. When an earlier delivery left an intent that may have landed,
// the node is recorded failed with those keys unknown, not as unchanged.
func (r *Runner) Fail(ctx context.Context, ev events.Node, reason string) (Result, error) {
	log := r.logger().With("batch_id", ev.BatchID, "node", ev.Node, "lane", ev.Lane, "position", ev.Position, "attempt", ev.Attempt)
	b, lane, names, done, err := r.read(ctx, log, ev)
	if done {
		return Result{}, err
	}
	if lane.Doc.Has(ev.Position) {
		return r.already(ctx, ev, lane, b)
	}
	if _, _, err := r.vouch(ctx, ev, b, names); errors.Is(err, ErrRefused) {
		return Result{}, r.refuse(ctx, log, ev, err)
	} else if err != nil {
		return Result{}, fmt.Errorf("fail %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	prior, err := r.resolve(ctx, ev, b, lane)
	if err != nil {
		return Result{}, fmt.Errorf("fail %s: %w: %w", ev.ID(), ErrTransient, err)
	}
	now := r.now()
	doc := store.NodeDoc{
		Node: ev.Node, Lane: ev.Lane, Position: ev.Position, Attempt: ev.Attempt, DryRun: ev.DryRun,
		State: model.NodeFailed, Reason: reason, StartedAt: now, FinishedAt: now,
	}
	if prior != nil {
		unknown(&doc, model.NodeFailed, prior, reason)
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
			return Result{Duplicate: true}, nil
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
			return Result{Duplicate: true}, nil
		}
		count(&lane.Doc, ev.Position, &doc, r.now())
		err := r.Store.UpdateLane(ctx, ev.BatchID, lane, ev.Position)
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
	log.InfoContext(ctx, "node recorded", "state", doc.State, "changed", doc.Changed, "latency_ms", doc.LatencyMS)
	r.observeNode(ctx, doc)
	res := Result{Node: doc}
	if doc.State == model.NodeFailed && b.MaxFailures != "" && b.Cancel == nil {
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
	case model.NodeSucceeded:
		l.Counts.Succeeded++
		if !doc.Changed {
			l.Counts.Unchanged++
		}
	case model.NodeFailed:
		l.Counts.Failed++
		l.AddFailure(model.Failure{Node: doc.Node, Reason: doc.Reason})
	case model.NodeSkipped:
		l.Counts.Skipped++
	case model.NodeCancelled:
		l.Counts.Cancelled++
	}
	l.Conflicts += doc.Conflicts
	l.CurrentNode = doc.Node
	l.UpdatedAt = now
	if doc.State == model.NodeSucceeded || doc.State == model.NodeFailed {
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
	var final *store.BatchDoc
	done, err := r.Store.Finish(ctx, batchID, func(cur *store.BatchDoc) *store.BatchDoc {
		if !store.AttemptDone(cur, lanes) {
			return nil
		}
		final = store.Finalize(cur, lanes, now)
		return final
	})
	if done && err == nil {
		r.observeFinish(ctx, final)
	}
	return done, err
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
	limit, err := model.Threshold(b.MaxFailures).Limit(b.AttemptTotal)
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
