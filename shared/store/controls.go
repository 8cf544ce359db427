package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodebatch/nodebatch/shared/model"
)

// ErrFinal is returned when a control needs a running batch and the batch
// is already final.
var ErrFinal = errors.New("batch is final")

// ErrNotFinal is returned when a control needs a final batch (retry,
// revert) and the batch still runs.
var ErrNotFinal = errors.New("batch is not final")

// ErrMoved is returned when a batch changed under a control (another retry
// started an attempt first).
var ErrMoved = errors.New("batch changed since read")

// RecordCancel records c on batch id unless the batch is final or already
// carries a cancel. It returns the batch as it stands after the call and
// whether this call recorded c. One transaction on the batch document: the
// per-node path reads that document before every node, so once this commits
// no node of the batch starts a patch it has not already started.
func (s *Store) RecordCancel(ctx context.Context, id string, c Cancel) (*BatchDoc, bool, error) {
	ref := s.client.Doc(BatchPath(id))
	var out *BatchDoc
	var did bool
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		did = false
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return err
		}
		out = &b
		if b.State.Final() || b.Cancel != nil {
			return nil
		}
		did = true
		b.Cancel = &c
		return tx.Update(ref, []firestore.Update{{Path: "cancel", Value: c}})
	})
	if status.Code(err) == codes.NotFound {
		return nil, false, fmt.Errorf("cancel batch %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	return out, did, nil
}

// Attempt describes a new attempt of a batch (a retry).
type Attempt struct {
	Number    int          // the new attempt number: previous + 1
	Lanes     int          // lanes of the new attempt
	Total     int          // nodes in the new attempt
	Adjust    model.Counts // the earlier results the new attempt re-runs
	StartedAt time.Time
	Names     []string // the new attempt's nodes in event order (stored as names documents)
	// RequestedBy is who asked for the retry (appended to the batch's
	// Requesters with Attempt = Number).
	RequestedBy Requester
}

// StartAttempt moves final batch id to a new attempt, atomically with the
// creation of its lane documents: state running, attempt/lanes/attempt_total
// of a, adjust increased by a.Adjust (so counts stay exact: the re-run nodes'
// earlier results are taken out of the sum of all lanes), cancel and reason
// cleared; then a.Names is stored as the attempt's names documents. It
// refuses with ErrNotFinal while the batch runs and ErrMoved
// when the batch is no longer at attempt a.Number-1.
func (s *Store) StartAttempt(ctx context.Context, id string, a Attempt, lanes []LaneDoc) (*BatchDoc, error) {
	if len(lanes) > MaxCommitLanes {
		return nil, fmt.Errorf("start attempt %d of %s: %d lanes exceed one commit", a.Number, id, len(lanes))
	}
	ref := s.client.Doc(BatchPath(id))
	var out *BatchDoc
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return err
		}
		if !b.State.Final() {
			return ErrNotFinal
		}
		if b.Attempt != a.Number-1 {
			return ErrMoved
		}
		for i := range lanes {
			if err := tx.Create(ref.Collection(LanesCollection).Doc(LaneID(lanes[i].Attempt, lanes[i].Lane)), &lanes[i]); err != nil {
				return err
			}
		}
		b.Attempt, b.Lanes, b.AttemptTotal, b.State = a.Number, a.Lanes, a.Total, model.StateRunning
		b.Adjust = b.Adjust.Add(a.Adjust)
		b.Cancel, b.Reason, b.AttemptStartedAt = nil, "", a.StartedAt
		req := a.RequestedBy
		req.Attempt = a.Number
		b.Requesters = append(b.Requesters, req)
		out = &b
		return tx.Update(ref, []firestore.Update{
			{Path: "attempt", Value: b.Attempt},
			{Path: "lanes", Value: b.Lanes},
			{Path: "attempt_total", Value: b.AttemptTotal},
			{Path: "state", Value: b.State},
			{Path: "adjust", Value: b.Adjust},
			{Path: "cancel", Value: nil},
			{Path: "reason", Value: ""},
			{Path: "attempt_started_at", Value: a.StartedAt},
			{Path: "requesters", Value: b.Requesters},
		})
	}, firestore.MaxAttempts(3))
	if err != nil && ctx.Err() == nil {
		// A commit whose answer was lost may have landed (see Create):
		// this attempt, started at this instant, is then the batch's.
		if b, rerr := s.Batch(ctx, id); rerr == nil && b.Attempt == a.Number && b.AttemptStartedAt.Equal(a.StartedAt.Truncate(time.Microsecond)) {
			return b, nil
		}
	}
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("start attempt %d of %s: %w", a.Number, id, ErrNotFound)
	}
	if status.Code(err) == codes.AlreadyExists {
		err = ErrMoved
	}
	if err != nil {
		return nil, fmt.Errorf("start attempt %d of %s: %w", a.Number, id, err)
	}
	// Only the retry that won the transaction writes the attempt's names
	// (two racing retries may list different nodes), before its events are
	// published. If that fails, the attempt can never run: fail the batch.
	if len(a.Names) > 0 {
		if err := s.WriteNames(ctx, id, a.Number, a.Names); err != nil {
			if ferr := s.Fail(context.WithoutCancel(ctx), id, "recording the retry's node names failed: "+err.Error(), a.StartedAt); ferr != nil {
				err = errors.Join(err, ferr)
			}
			return nil, fmt.Errorf("start attempt %d of %s: %w", a.Number, id, err)
		}
	}
	return out, nil
}

// CreateRevert writes revert batch b (b.Reverts names the source) with its
// lanes and marks the source reverted_by b.ID, atomically. When the source
// already has a revert, nothing is written and the existing revert's id is
// returned with ErrExists.
func (s *Store) CreateRevert(ctx context.Context, b *BatchDoc, lanes []LaneDoc) (string, error) {
	if len(lanes) > MaxCommitLanes {
		return "", fmt.Errorf("create revert %s: %d lanes exceed one commit", b.ID, len(lanes))
	}
	if err := s.prepareNames(ctx, b, 1); err != nil {
		return "", fmt.Errorf("create revert %s of %s: %w", b.ID, b.Reverts, err)
	}
	src := s.client.Doc(BatchPath(b.Reverts))
	ref := s.client.Doc(BatchPath(b.ID))
	var existing string
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		existing = ""
		snap, err := tx.Get(src)
		if err != nil {
			return err
		}
		var sb BatchDoc
		if err := snap.DataTo(&sb); err != nil {
			return err
		}
		if sb.RevertedBy != "" {
			existing = sb.RevertedBy
			return nil
		}
		if err := tx.Create(ref, b); err != nil {
			return err
		}
		for i := range lanes {
			l := &lanes[i]
			if err := tx.Set(ref.Collection(LanesCollection).Doc(LaneID(l.Attempt, l.Lane)), l); err != nil {
				return err
			}
		}
		return tx.Update(src, []firestore.Update{{Path: "reverted_by", Value: b.ID}})
	}, firestore.MaxAttempts(3))
	if err != nil && ctx.Err() == nil && s.landed(ctx, b) {
		return b.ID, nil // a commit whose answer was lost had landed (see Create)
	}
	if err != nil {
		return "", fmt.Errorf("create revert %s of %s: %w", b.ID, b.Reverts, err)
	}
	if existing == b.ID { // a re-run transaction found its own first commit
		return b.ID, nil
	}
	if existing != "" {
		return existing, fmt.Errorf("create revert of %s: reverted by %s: %w", b.Reverts, existing, ErrExists)
	}
	return b.ID, nil
}

// NodesWhere returns every node result of a batch whose field equals value
// (for example state == failed, or changed == true), in no particular order.
// Only the fields of a query declared in queries.go may be asked for.
func (s *Store) NodesWhere(ctx context.Context, batchID, field string, value any) ([]NodeDoc, error) {
	q, ok := nodesWhereQuery(field)
	if !ok {
		return nil, fmt.Errorf("list node results of %s where %s == %v: no such query is declared in shared/store/queries.go", batchID, field, value)
	}
	it := q.Apply(s.client.Doc(BatchPath(batchID)).Collection(NodesCollection).Query, value).Documents(ctx)
	defer it.Stop()
	var out []NodeDoc
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list node results of %s where %s == %v: %w", batchID, field, value, err)
		}
		var n NodeDoc
		if err := snap.DataTo(&n); err != nil {
			return nil, fmt.Errorf("decode node result %s/%s: %w", batchID, snap.Ref.ID, err)
		}
		out = append(out, n)
	}
}

// AddRedelivery counts one transient answer (a redelivery to come) on a lane.
// Only the call holding the lane's ordering key writes the lane, so this
// never contends.
func (s *Store) AddRedelivery(ctx context.Context, batchID string, attempt, lane int) error {
	_, err := s.client.Doc(LanePath(batchID, attempt, lane)).Update(ctx, []firestore.Update{{Path: "redeliveries", Value: firestore.Increment(1)}})
	if err != nil {
		return fmt.Errorf("count redelivery on lane %s/%s: %w", batchID, LaneID(attempt, lane), err)
	}
	return nil
}

// HistoryQuery selects batches for the history list.
type HistoryQuery struct {
	Owner string      // "" for every owner (admins)
	State model.State // "" for every state
	Limit int
	After *Cursor // the page starts after this batch
}

// Cursor is a position in the history list (newest first): the last batch
// of a page.
type Cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

// History lists batches newest first (created_at, then id, descending).
// next is the cursor of the following page, nil at the end. Filtering by
// owner and/or state needs the composite indexes declared in
// infra/firestore.tf (the queries are declared in queries.go).
func (s *Store) History(ctx context.Context, q HistoryQuery) (batches []BatchDoc, next *Cursor, err error) {
	var values []any
	if q.Owner != "" {
		values = append(values, q.Owner)
	}
	if q.State != "" {
		values = append(values, string(q.State))
	}
	fq := historyQuery(q.Owner != "", q.State != "").Apply(s.client.Collection(BatchesCollection).Query, values...)
	if q.After != nil {
		fq = fq.StartAfter(q.After.CreatedAt, q.After.ID)
	}
	it := fq.Limit(q.Limit + 1).Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list batches: %w", err)
		}
		if len(batches) == q.Limit {
			last := batches[len(batches)-1]
			next = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
			break
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return nil, nil, fmt.Errorf("decode batch %s: %w", snap.Ref.ID, err)
		}
		batches = append(batches, b)
	}
	return batches, next, nil
}
