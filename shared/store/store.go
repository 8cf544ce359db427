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
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodebatch/nodebatch/shared/model"
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

// ErrIdempotencyMismatch is returned by BatchForKey when the owner's key
// names a batch made from a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key used with a different request")

// IdempotencyID is the document id of an owner's idempotency key: the
// SHA-256 of an encoding from which owner and key can be read back, so two
// different (owner, key) pairs never share a document. An owner without
// '|' (every subject nodebatch has seen so far) keeps the original
// encoding "owner|key", which splits unambiguously at its first '|'; any
// other owner is written "|" + len(owner) + "|" + owner + "|" + key, which
// starts with '|' as no original encoding does (owners are never empty).
// Keys recorded before this change are thus still found.
func IdempotencyID(owner, key string) string {
	sum := sha256.Sum256([]byte(idempotencyInput(owner, key)))
	return hex.EncodeToString(sum[:])
}

// idempotencyInput is the injective encoding IdempotencyID hashes.
func idempotencyInput(owner, key string) string {
	if owner == "" || strings.Contains(owner, "|") {
		return "|" + strconv.Itoa(len(owner)) + "|" + owner + "|" + key
	}
	return owner + "|" + key
}

// MaxCommitLanes is the most lanes Create, StartAttempt and CreateRevert
// write with their batch: the lane documents go in the batch's one commit
// (Firestore takes 500 writes).
const MaxCommitLanes = 490

// Create writes a new batch, its lane documents and (when b.IdempotencyKey is
// set) its idempotency key, atomically: either all exist afterwards or none
// does. It returns ErrExists when the key or batch id is taken.
//
// When b.Names is set, the names documents of attempt 1 are written first
// (they are inert until the batch exists) and b is marked Named; an explicit
// list longer than MaxListedNodes is kept only there.
func (s *Store) Create(ctx context.Context, b *BatchDoc, lanes []LaneDoc) error {
	if len(lanes) > MaxCommitLanes {
		return fmt.Errorf("create batch %s: %d lanes exceed one commit", b.ID, len(lanes))
	}
	if err := s.prepareNames(ctx, b, 1); err != nil {
		return fmt.Errorf("create batch %s: %w", b.ID, err)
	}
	b.Impact.Bound()
	batchRef := s.client.Doc(BatchPath(b.ID))
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if b.IdempotencyKey != "" {
			ref := s.client.Collection(IdempotencyCollection).Doc(IdempotencyID(b.Owner, b.IdempotencyKey))
			doc := IdempotencyDoc{BatchID: b.ID, Owner: b.Owner, Key: b.IdempotencyKey, Fingerprint: b.IdempotencyFingerprint, CreatedAt: b.CreatedAt}
			if err := tx.Create(ref, doc); err != nil {
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

// prepareNames writes b.Names as attempt's names documents, marks b Named,
// and drops an explicit list too long to store in the batch document.
func (s *Store) prepareNames(ctx context.Context, b *BatchDoc, attempt int) error {
	if len(b.Nodes) > MaxListedNodes {
		b.Nodes = nil
	}
	if len(b.Names) == 0 {
		return nil
	}
	if err := s.WriteNames(ctx, b.ID, attempt, b.Names); err != nil {
		return err
	}
	b.Named = true
	return nil
}

// WriteNames stores names (in event order) as attempt's names documents of
// batch id, in commits of at most 400 documents.
func (s *Store) WriteNames(ctx context.Context, id string, attempt int, names []string) error {
	const perCommit = 400
	chunks := (len(names) + NamesPerChunk - 1) / NamesPerChunk
	for first := 0; first < chunks; first += perCommit {
		wb := s.client.Batch()
		for c := first; c < min(chunks, first+perCommit); c++ {
			part := names[c*NamesPerChunk : min(len(names), (c+1)*NamesPerChunk)]
			wb.Set(s.client.Doc(NamesPath(id, attempt, c)), NamesDoc{Attempt: attempt, Chunk: c, Names: part})
		}
		if _, err := wb.Commit(ctx); err != nil {
			return fmt.Errorf("write node names of %s attempt %d: %w", id, attempt, err)
		}
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

// BatchForKey returns the batch id recorded for owner's key, or ErrNotFound.
// fingerprint identifies the request now made with the key (see
// BatchDoc.IdempotencyFingerprint): when the key was recorded for another
// request, it returns the batch id with an error wrapping
// ErrIdempotencyMismatch. A key recorded without a fingerprint (before
// fingerprints existed) matches any request.
func (s *Store) BatchForKey(ctx context.Context, owner, key, fingerprint string) (string, error) {
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
	if d.Fingerprint != "" && d.Fingerprint != fingerprint {
		return d.BatchID, fmt.Errorf("idempotency key of %q (batch %s): %w", owner, d.BatchID, ErrIdempotencyMismatch)
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
			{Path: "state", Value: model.StateFailed},
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

// UpdateLane writes l.Doc's progress fields, having counted position pos
// (whose pending intent it removes), if the lane is unchanged since it
// was read; otherwise it returns ErrLaneMoved. One writer holds a lane at a
// time (its ordering key), so the precondition only fails when a dead-letter
// record or a duplicate delivery raced with it.
func (s *Store) UpdateLane(ctx context.Context, batchID string, l *Lane, pos int) error {
	d := &l.Doc
	ref := s.client.Doc(LanePath(batchID, d.Attempt, d.Lane))
	wr, err := ref.Update(ctx, laneProgress(d, pos), firestore.LastUpdateTime(l.UpdateTime))
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

// laneProgress is the part of a lane document the per-node path writes
// when it counts position pos: the progress fields, and the removal of
// pos's pending intent (the count resolves it).
func laneProgress(d *LaneDoc, pos int) []firestore.Update {
	delete(d.Pending, PositionKey(pos))
	return []firestore.Update{
		{FieldPath: firestore.FieldPath{"pending", PositionKey(pos)}, Value: firestore.Delete},
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

// BatchAndLane reads a batch document, one of its lanes and the names
// document holding node index of the attempt (index < 0: none) in one round
// trip: what the per-node path needs before it touches a node (the lane's
// bitset, the batch's cancel and state, the node the batch has at the
// event's position). ErrNotFound when the batch or the lane is missing;
// names is nil when its document is.
func (s *Store) BatchAndLane(ctx context.Context, batchID string, attempt, lane, index int) (*BatchDoc, *Lane, []string, error) {
	refs := []*firestore.DocumentRef{
		s.client.Doc(BatchPath(batchID)),
		s.client.Doc(LanePath(batchID, attempt, lane)),
	}
	if index >= 0 {
		refs = append(refs, s.client.Doc(NamesPath(batchID, attempt, index/NamesPerChunk)))
	}
	snaps, err := s.client.GetAll(ctx, refs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("get batch %s and lane %s: %w", batchID, LaneID(attempt, lane), err)
	}
	if !snaps[0].Exists() || !snaps[1].Exists() {
		return nil, nil, nil, fmt.Errorf("get batch %s and lane %s: %w", batchID, LaneID(attempt, lane), ErrNotFound)
	}
	var b BatchDoc
	if err := snaps[0].DataTo(&b); err != nil {
		return nil, nil, nil, fmt.Errorf("decode batch %s: %w", batchID, err)
	}
	l := &Lane{UpdateTime: snaps[1].UpdateTime}
	if err := snaps[1].DataTo(&l.Doc); err != nil {
		return nil, nil, nil, fmt.Errorf("decode lane %s/%s: %w", batchID, LaneID(attempt, lane), err)
	}
	var names []string
	if len(snaps) > 2 && snaps[2].Exists() {
		var nd NamesDoc
		if err := snaps[2].DataTo(&nd); err != nil {
			return nil, nil, nil, fmt.Errorf("decode node names of %s: %w", batchID, err)
		}
		names = nd.Names
	}
	return &b, l, names, nil
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
	n.Reason = Clip(n.Reason)
	laneRef := s.client.Doc(LanePath(batchID, d.Attempt, d.Lane))
	// WriteBatch is deprecated in favour of transactions, but a transaction
	// costs a BeginTransaction round trip more, and nothing here is read:
	// the preconditions (create, last update time) make the commit safe.
	wb := s.client.Batch()
	wb.Create(s.client.Doc(NodePath(batchID, n.Node)), n)
	wb.Update(laneRef, laneProgress(d, n.Position), firestore.LastUpdateTime(l.UpdateTime))
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

// WriteIntent records in on lane l (at position pos) before its write is
// sent, if the lane is unchanged since it was read (else ErrLaneMoved:
// re-read the batch and the lane, and decide again). The precondition is
// what makes a cancel's settle exact: a call that read the batch before the
// cancel and the lane before the lane moved on cannot record an intent, and
// so cannot send a write, after the settle saw the lane move.
func (s *Store) WriteIntent(ctx context.Context, batchID string, l *Lane, pos int, in Intent) error {
	d := &l.Doc
	ref := s.client.Doc(LanePath(batchID, d.Attempt, d.Lane))
	wr, err := ref.Update(ctx, []firestore.Update{{FieldPath: firestore.FieldPath{"pending", PositionKey(pos)}, Value: in}},
		firestore.LastUpdateTime(l.UpdateTime))
	if c := status.Code(err); c == codes.FailedPrecondition || c == codes.Aborted {
		return fmt.Errorf("record intent on lane %s/%s: %w", batchID, LaneID(d.Attempt, d.Lane), ErrLaneMoved)
	}
	if err != nil {
		return fmt.Errorf("record intent on lane %s/%s: %w", batchID, LaneID(d.Attempt, d.Lane), err)
	}
	if d.Pending == nil {
		d.Pending = map[string]Intent{}
	}
	d.Pending[PositionKey(pos)] = in
	l.UpdateTime = wr.UpdateTime
	return nil
}

// Refuse records on batch id that the event eventID was refused and why
// (Refusal). Only for events that do not match their batch: never on the
// normal per-node path.
func (s *Store) Refuse(ctx context.Context, id string, r Refusal) error {
	r = ClipRefusal(r)
	_, err := s.client.Doc(BatchPath(id)).Update(ctx, []firestore.Update{
		{Path: "refused", Value: firestore.Increment(1)},
		{Path: "last_refusal", Value: r},
	})
	if err != nil {
		return fmt.Errorf("record refused event %s on batch %s: %w", r.EventID, id, err)
	}
	return nil
}

// MaxRefusalReason bounds Refusal.Reason, so the batch document stays
// small whatever a forged event carries.
const MaxRefusalReason = 1000

// ClipRefusal is r with its reason cut to MaxRefusalReason bytes (a forged
// event's change set may be large), as Refuse stores it.
func ClipRefusal(r Refusal) Refusal {
	if len(r.Reason) > MaxRefusalReason {
		r.Reason = r.Reason[:MaxRefusalReason] + "…"
	}
	return r
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
	n.Reason = Clip(n.Reason)
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
			Supersede(&cur, n)
		}
		stand = n
		return tx.Set(ref, n)
	})
	if err != nil {
		return nil, fmt.Errorf("record result of node %q in %s: %w", n.Node, batchID, err)
	}
	return stand, nil
}

// Supersede makes n, a later attempt's result of a node, the one that
// replaces cur: n keeps what the earlier attempts did (its History, the
// newest MaxHistory of them) and the keys whose value before the batch cur
// left unknown. RecordNode calls it; every Store implementation does the
// same.
func Supersede(cur, n *NodeDoc) {
	n.History = append(slices.Clone(cur.History), PriorResult{
		Attempt: cur.Attempt, State: cur.State, Reason: cur.Reason, Changed: cur.Changed,
		Before: cur.Before, After: cur.After, Unknown: cur.Unknown, FinishedAt: cur.FinishedAt,
	})
	if len(n.History) > MaxHistory { // keep the newest: the document must stay under 1 MiB
		n.History = n.History[len(n.History)-MaxHistory:]
	}
	carryUnknown(cur, n)
}

// carryUnknown keeps in n (a later attempt's result) the keys whose value
// before the batch cur (the earlier result) left unknown, unless n's own
// write changed them: finding such a key already at the target proves
// nothing about its value before the batch.
func carryUnknown(cur, n *NodeDoc) {
	for _, k := range cur.Unknown {
		if b, ok := n.Before[k]; ok && differ(b, n.After[k]) {
			continue // written again by n: exact
		}
		if slices.Contains(n.Unknown, k) {
			continue
		}
		n.Unknown = append(n.Unknown, k)
		delete(n.Before, k)
		if _, ok := n.After[k]; !ok {
			if n.After == nil {
				n.After = map[string]*string{}
			}
			n.After[k] = cur.After[k]
		}
		n.Changed = true
	}
}

// differ reports whether two optional values differ (nil = absent).
func differ(a, b *string) bool { return (a == nil) != (b == nil) || a != nil && *a != *b }

// SetNode writes (overwrites) a node's result document.
func (s *Store) SetNode(ctx context.Context, batchID string, n *NodeDoc) error {
	n.Reason = Clip(n.Reason)
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
