package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodebatch/nodebatch/shared/batch"
)

// ErrNotFound is returned when a batch (or lane) does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned by Create when the idempotency key or batch id is
// already taken.
var ErrExists = errors.New("already exists")

// ErrLaneMoved is returned by UpdateLane when the lane document changed since
// it was read: the caller re-reads it and tries again.
var ErrLaneMoved = errors.New("lane changed since read")

// Store reads and writes batches in one Firestore database.
type Store struct {
	client *firestore.Client
}

// New returns a Store on client. The caller owns client.
func New(client *firestore.Client) *Store { return &Store{client: client} }

// Client is the underlying Firestore client (for listeners in the relay).
func (s *Store) Client() *firestore.Client { return s.client }

// IdempotencyID is the document id of an owner's idempotency key.
func IdempotencyID(owner, key string) string {
	sum := sha256.Sum256([]byte(owner + "|" + key))
	return hex.EncodeToString(sum[:])
}

// Create writes a new batch, its lane documents and (when b.IdempotencyKey is
// set) its idempotency key, atomically: either all exist afterwards or none
// does. It returns ErrExists when the key or batch id is taken.
func (s *Store) Create(ctx context.Context, b *BatchDoc, lanes []LaneDoc) error {
	if len(lanes) > 490 {
		return fmt.Errorf("create batch %s: %d lanes exceed one commit", b.ID, len(lanes))
	}
	batchRef := s.client.Doc(BatchPath(b.ID))
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if b.IdempotencyKey != "" {
			ref := s.client.Collection(IdempotencyCollection).Doc(IdempotencyID(b.Owner, b.IdempotencyKey))
			if err := tx.Create(ref, IdempotencyDoc{BatchID: b.ID, Owner: b.Owner, CreatedAt: b.CreatedAt}); err != nil {
				return err
			}
		}
		if err := tx.Create(batchRef, b); err != nil {
			return err
		}
		for i := range lanes {
			l := &lanes[i]
			if err := tx.Set(batchRef.Collection(LanesCollection).Doc(LaneID(l.Attempt, l.Lane)), l); err != nil {
				return err
			}
		}
		return nil
	}, firestore.MaxAttempts(1))
	if err != nil && ctx.Err() == nil && s.landed(ctx, b) {
		// A commit whose answer was lost (the emulator's "Canceled: call
		// already cancelled", retried as Unavailable by shared/fsclient)
		// may have been applied; its retry then fails although the batch
		// is there. The commit is atomic: this batch doc means all of it.
		return nil
	}
	if status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("create batch %s: %w", b.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create batch %s: %w", b.ID, err)
	}
	return nil
}

// laneIs reports whether the lane document at ref is d as its writer wrote
// it (same bits, counts and update stamp; Firestore keeps microseconds),
// and its update time.
func (s *Store) laneIs(ctx context.Context, ref *firestore.DocumentRef, d *LaneDoc) (time.Time, bool) {
	snap, err := ref.Get(ctx)
	if err != nil {
		return time.Time{}, false
	}
	var cur LaneDoc
	if err := snap.DataTo(&cur); err != nil {
		return time.Time{}, false
	}
	same := bytes.Equal(cur.DoneBits, d.DoneBits) && cur.Counts == d.Counts && cur.UpdatedAt.Equal(d.UpdatedAt.Truncate(time.Microsecond))
	return snap.UpdateTime, same
}

// landed reports whether batch b, as this caller wrote it, exists: ids are
// fresh random values, so the same id, owner and creation time (Firestore
// keeps microseconds) is this
// caller's own write.
func (s *Store) landed(ctx context.Context, b *BatchDoc) bool {
	cur, err := s.Batch(ctx, b.ID)
	return err == nil && cur.Owner == b.Owner && cur.CreatedAt.Equal(b.CreatedAt.Truncate(time.Microsecond)) && cur.IdempotencyKey == b.IdempotencyKey
}

// Idempotent returns the batch id recorded for owner's key, or ErrNotFound.
func (s *Store) Idempotent(ctx context.Context, owner, key string) (string, error) {
	snap, err := s.client.Collection(IdempotencyCollection).Doc(IdempotencyID(owner, key)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return "", fmt.Errorf("idempotency key of %q: %w", owner, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("idempotency key of %q: %w", owner, err)
	}
	var d IdempotencyDoc
	if err := snap.DataTo(&d); err != nil {
		return "", fmt.Errorf("decode idempotency key of %q: %w", owner, err)
	}
	return d.BatchID, nil
}

// Batch reads a batch document.
func (s *Store) Batch(ctx context.Context, id string) (*BatchDoc, error) {
	snap, err := s.client.Doc(BatchPath(id)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("get batch %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get batch %s: %w", id, err)
	}
	var b BatchDoc
	if err := snap.DataTo(&b); err != nil {
		return nil, fmt.Errorf("decode batch %s: %w", id, err)
	}
	return &b, nil
}

// Fail moves a non-final batch to failed with reason and records a cancel,
// so events already published stop patching. Used when publishing fails
// part-way. It is a no-op on a final batch.
func (s *Store) Fail(ctx context.Context, id, reason string, now time.Time) error {
	ref := s.client.Doc(BatchPath(id))
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return err
		}
		if b.State.Final() {
			return nil
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "state", Value: batch.StateFailed},
			{Path: "reason", Value: reason},
			{Path: "finished_at", Value: now},
			{Path: "cancel", Value: Cancel{RequestedAt: now, By: "nodebatch", Reason: reason}},
		})
	})
	if err != nil {
		return fmt.Errorf("fail batch %s: %w", id, err)
	}
	return nil
}

// Lane is a lane document and the update time it was read at, the
// precondition of the next UpdateLane.
type Lane struct {
	Doc        LaneDoc
	UpdateTime time.Time
}

// Lane reads one lane document.
func (s *Store) Lane(ctx context.Context, batchID string, attempt, lane int) (*Lane, error) {
	snap, err := s.client.Doc(LanePath(batchID, attempt, lane)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("get lane %s/%s: %w", batchID, LaneID(attempt, lane), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get lane %s/%s: %w", batchID, LaneID(attempt, lane), err)
	}
	l := &Lane{UpdateTime: snap.UpdateTime}
	if err := snap.DataTo(&l.Doc); err != nil {
		return nil, fmt.Errorf("decode lane %s/%s: %w", batchID, LaneID(attempt, lane), err)
	}
	return l, nil
}

// UpdateLane writes l.Doc's progress fields if the lane is unchanged since it
// was read; otherwise it returns ErrLaneMoved. One writer holds a lane at a
// time (its ordering key), so the precondition only fails when a dead-letter
// record or a duplicate delivery raced with it.
func (s *Store) UpdateLane(ctx context.Context, batchID string, l *Lane) error {
	d := &l.Doc
	ref := s.client.Doc(LanePath(batchID, d.Attempt, d.Lane))
	wr, err := ref.Update(ctx, laneProgress(d), firestore.LastUpdateTime(l.UpdateTime))
	if c := status.Code(err); c == codes.FailedPrecondition || c == codes.Aborted {
		if ut, ok := s.laneIs(ctx, ref, d); ok { // a retry of an update that landed
			l.UpdateTime = ut
			return nil
		}
		return fmt.Errorf("update lane %s/%s: %w", batchID, LaneID(d.Attempt, d.Lane), ErrLaneMoved)
	}
	if err != nil {
		return fmt.Errorf("update lane %s/%s: %w", batchID, LaneID(d.Attempt, d.Lane), err)
	}
	l.UpdateTime = wr.UpdateTime
	return nil
}

// laneProgress is the part of a lane document the per-node path writes.
func laneProgress(d *LaneDoc) []firestore.Update {
	return []firestore.Update{
		{Path: "done_bits", Value: d.DoneBits},
		{Path: "counts", Value: d.Counts},
		{Path: "current_node", Value: d.CurrentNode},
		{Path: "updated_at", Value: d.UpdatedAt},
		{Path: "failures", Value: d.Failures},
		{Path: "latency_hist", Value: d.LatencyHist},
		{Path: "latency_max_ms", Value: d.LatencyMaxMS},
		{Path: "conflicts", Value: d.Conflicts},
		{Path: "done", Value: d.Complete()},
	}
}

// LaneOpen reports whether some lane of attempt of the batch is not complete
// yet: one query reading at most one document, so that each lane completing
// does not read every lane (O(lanes²) reads per batch). A lane written
// before the done field existed does not match; callers treat "not open" as
// "read them all and check" (AttemptDone), never as "finished".
func (s *Store) LaneOpen(ctx context.Context, batchID string, attempt int) (bool, error) {
	q := QueryLaneOpen.Apply(s.client.Doc(BatchPath(batchID)).Collection(LanesCollection).Query, attempt, false).Limit(1)
	snaps, err := q.Documents(ctx).GetAll()
	if err != nil {
		return false, fmt.Errorf("find an open lane of %s attempt %d: %w", batchID, attempt, err)
	}
	return len(snaps) > 0, nil
}

// BatchAndLane reads a batch document and one of its lanes in one round
// trip: what the per-node path needs before it touches a node (the lane's
// bitset, the batch's cancel and state). ErrNotFound when either is missing.
func (s *Store) BatchAndLane(ctx context.Context, batchID string, attempt, lane int) (*BatchDoc, *Lane, error) {
	snaps, err := s.client.GetAll(ctx, []*firestore.DocumentRef{
		s.client.Doc(BatchPath(batchID)),
		s.client.Doc(LanePath(batchID, attempt, lane)),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("get batch %s and lane %s: %w", batchID, LaneID(attempt, lane), err)
	}
	if !snaps[0].Exists() || !snaps[1].Exists() {
		return nil, nil, fmt.Errorf("get batch %s and lane %s: %w", batchID, LaneID(attempt, lane), ErrNotFound)
	}
	var b BatchDoc
	if err := snaps[0].DataTo(&b); err != nil {
		return nil, nil, fmt.Errorf("decode batch %s: %w", batchID, err)
	}
	l := &Lane{UpdateTime: snaps[1].UpdateTime}
	if err := snaps[1].DataTo(&l.Doc); err != nil {
		return nil, nil, fmt.Errorf("decode lane %s/%s: %w", batchID, LaneID(attempt, lane), err)
	}
	return &b, l, nil
}

// CountNode records node result n and the lane progress l.Doc (which already
// counts n) in one atomic commit: the node document is created, and the lane
// is updated only if unchanged since it was read. It returns ErrExists when
// a result is already recorded for the node (a duplicate delivery, a dead
// letter, or an earlier attempt: the caller settles that with RecordNode),
// and ErrLaneMoved when the lane changed (re-read it; nothing was written).
// The common case of the per-node path: one round trip for both writes.
func (s *Store) CountNode(ctx context.Context, batchID string, n *NodeDoc, l *Lane) error {
	d := &l.Doc
	laneRef := s.client.Doc(LanePath(batchID, d.Attempt, d.Lane))
	// WriteBatch is deprecated in favour of transactions, but a transaction
	// costs a BeginTransaction round trip more, and nothing here is read:
	// the preconditions (create, last update time) make the commit safe.
	wb := s.client.Batch()
	wb.Create(s.client.Doc(NodePath(batchID, n.Node)), n)
	wb.Update(laneRef, laneProgress(d), firestore.LastUpdateTime(l.UpdateTime))
	res, err := wb.Commit(ctx)
	if c := status.Code(err); c == codes.AlreadyExists || c == codes.FailedPrecondition || c == codes.Aborted {
		// A retried commit whose first try landed (its answer lost) fails
		// its own preconditions: the lane as this commit wrote it says so
		// (the commit is atomic), and then the node is counted.
		if ut, ok := s.laneIs(ctx, laneRef, d); ok {
			l.UpdateTime = ut
			return nil
		}
	}
	switch status.Code(err) {
	case codes.OK:
	case codes.AlreadyExists:
		return fmt.Errorf("count node %q in %s: %w", n.Node, batchID, ErrExists)
	case codes.FailedPrecondition, codes.Aborted:
		return fmt.Errorf("count node %q in lane %s/%s: %w", n.Node, batchID, LaneID(d.Attempt, d.Lane), ErrLaneMoved)
	default:
		return fmt.Errorf("count node %q in %s: %w", n.Node, batchID, err)
	}
	l.UpdateTime = res[1].UpdateTime
	return nil
}

// Lanes reads the lane documents of a batch, of one attempt (attempt > 0) or
// of all attempts (attempt == 0), ordered by attempt then lane.
func (s *Store) Lanes(ctx context.Context, batchID string, attempt int) ([]LaneDoc, error) {
	q := QueryLanes.Apply(s.client.Doc(BatchPath(batchID)).Collection(LanesCollection).Query)
	if attempt > 0 {
		q = QueryLanesOfAttempt.Apply(s.client.Doc(BatchPath(batchID)).Collection(LanesCollection).Query, attempt)
	}
	snaps, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("list lanes of %s: %w", batchID, err)
	}
	lanes := make([]LaneDoc, len(snaps))
	for i, snap := range snaps {
		if err := snap.DataTo(&lanes[i]); err != nil {
			return nil, fmt.Errorf("decode lane %s/%s: %w", batchID, snap.Ref.ID, err)
		}
	}
	sort.Slice(lanes, func(i, j int) bool {
		if lanes[i].Attempt != lanes[j].Attempt {
			return lanes[i].Attempt < lanes[j].Attempt
		}
		return lanes[i].Lane < lanes[j].Lane
	})
	return lanes, nil
}

// RecordNode writes a node's result unless one is already recorded for the
// same (or a later) attempt, and returns the result that stands: the first
// recorded result of an attempt wins, so when a duplicate delivery or a dead
// letter races the node's own delivery, its document and its count agree.
// Common case: one Create. A later attempt (retry) replaces an earlier one in
// a transaction on the node's own document.
func (s *Store) RecordNode(ctx context.Context, batchID string, n *NodeDoc) (*NodeDoc, error) {
	ref := s.client.Doc(NodePath(batchID, n.Node))
	_, err := ref.Create(ctx, n)
	if err == nil {
		return n, nil
	}
	if status.Code(err) != codes.AlreadyExists {
		return nil, fmt.Errorf("record result of node %q in %s: %w", n.Node, batchID, err)
	}
	var stand *NodeDoc
	err = s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if err == nil {
			var cur NodeDoc
			if err := snap.DataTo(&cur); err != nil {
				return err
			}
			if cur.Attempt >= n.Attempt {
				stand = &cur
				return nil
			}
			// A retry re-ran the node: keep what the earlier attempts did.
			n.History = append(slices.Clone(cur.History), PriorResult{
				Attempt: cur.Attempt, State: cur.State, Reason: cur.Reason, Changed: cur.Changed,
				Before: cur.Before, After: cur.After, FinishedAt: cur.FinishedAt,
			})
		}
		stand = n
		return tx.Set(ref, n)
	})
	if err != nil {
		return nil, fmt.Errorf("record result of node %q in %s: %w", n.Node, batchID, err)
	}
	return stand, nil
}

// SetNode writes (overwrites) a node's result document.
func (s *Store) SetNode(ctx context.Context, batchID string, n *NodeDoc) error {
	if _, err := s.client.Doc(NodePath(batchID, n.Node)).Set(ctx, n); err != nil {
		return fmt.Errorf("set result of node %q in %s: %w", n.Node, batchID, err)
	}
	return nil
}

// Node reads a node's result document.
func (s *Store) Node(ctx context.Context, batchID, node string) (*NodeDoc, error) {
	snap, err := s.client.Doc(NodePath(batchID, node)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("get result of node %q in %s: %w", node, batchID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get result of node %q in %s: %w", node, batchID, err)
	}
	var n NodeDoc
	if err := snap.DataTo(&n); err != nil {
		return nil, fmt.Errorf("decode result of node %q in %s: %w", node, batchID, err)
	}
	return &n, nil
}

// Nodes returns up to limit node results of a batch ordered by node name,
// starting after the node named after ("" for the first page). next is the
// name to pass as after for the following page, "" at the end.
func (s *Store) Nodes(ctx context.Context, batchID, after string, limit int) (nodes []NodeDoc, next string, err error) {
	q := QueryNodesByName.Apply(s.client.Doc(BatchPath(batchID)).Collection(NodesCollection).Query)
	if after != "" {
		q = q.StartAfter(after)
	}
	it := q.Limit(limit + 1).Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("list node results of %s: %w", batchID, err)
		}
		if len(nodes) == limit {
			next = nodes[len(nodes)-1].Node
			break
		}
		var n NodeDoc
		if err := snap.DataTo(&n); err != nil {
			return nil, "", fmt.Errorf("decode node result %s/%s: %w", batchID, snap.Ref.ID, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, next, nil
}

// Finish moves the batch to its final state exactly once. It is a
// compare-and-swap, not a transaction: read the batch, compute the final
// document, write it with the read update time as precondition, and on a
// lost race read again (where the batch is usually final by then, and
// nothing is written). Several lanes completing at once would otherwise
// open contended transactions on the batch document, which the Firestore
// emulator serializes with lock waits of about 2 s (docs/design.md
// "Performance"). final computes the new document from the current one; it
// is called at most once per try. It reports whether this call made the
// batch final.
func (s *Store) Finish(ctx context.Context, id string, final func(*BatchDoc) *BatchDoc) (bool, error) {
	ref := s.client.Doc(BatchPath(id))
	for try := 0; ; try++ {
		snap, err := ref.Get(ctx)
		if status.Code(err) == codes.NotFound {
			return false, fmt.Errorf("finish batch %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return false, fmt.Errorf("finish batch %s: %w", id, err)
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return false, fmt.Errorf("finish batch %s: decode: %w", id, err)
		}
		if b.State.Final() {
			return false, nil
		}
		nb := final(&b)
		if nb == nil {
			return false, nil
		}
		_, err = ref.Update(ctx, []firestore.Update{
			{Path: "state", Value: nb.State},
			{Path: "reason", Value: nb.Reason},
			{Path: "finished_at", Value: nb.FinishedAt},
			{Path: "counts", Value: nb.Counts},
			{Path: "timing", Value: nb.Timing},
		}, firestore.LastUpdateTime(snap.UpdateTime))
		if c := status.Code(err); (c == codes.FailedPrecondition || c == codes.Aborted) && try < maxSwapTries {
			continue // another writer moved the batch: read it again
		}
		if err != nil {
			return false, fmt.Errorf("finish batch %s: %w", id, err)
		}
		return true, nil
	}
}

// maxSwapTries bounds the re-reads of a compare-and-swap that keeps losing.
const maxSwapTries = 20
