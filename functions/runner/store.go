package runner

import (
	"context"

	"github.com/nodebatch/nodebatch/shared/store"
)

// Store is what the per-node path reads and writes. The Firestore store
// (*store.Store) is the one production wires; shared/store/memstore is an
// in-memory one for unit tests. Both pass shared/store/storetest, which
// pins the semantics the runner relies on: exactly-once counting, the
// lane's update-time precondition (store.ErrLaneMoved), already-exists on
// a node's result (store.ErrExists), finish-once.
type Store interface {
	batchReader
	laneReader
	recorder
	finisher
}

// batchReader reads the batch, with its lane and names, before a node is
// touched, and the reverted batch's result of a node.
type batchReader interface {
	Batch(ctx context.Context, id string) (*store.BatchDoc, error)
	BatchAndLane(ctx context.Context, batchID string, attempt, lane, index int) (*store.BatchDoc, *store.Lane, []string, error)
	Node(ctx context.Context, batchID, node string) (*store.NodeDoc, error)
}

// laneReader reads lanes: one to count on again, all to finish, whether
// any is still open.
type laneReader interface {
	Lane(ctx context.Context, batchID string, attempt, lane int) (*store.Lane, error)
	Lanes(ctx context.Context, batchID string, attempt int) ([]store.LaneDoc, error)
	LaneOpen(ctx context.Context, batchID string, attempt int) (bool, error)
}

// recorder records a node: the intent before its write, its result and
// its count, a redelivery, a refused event.
type recorder interface {
	WriteIntent(ctx context.Context, batchID string, l *store.Lane, pos int, in store.Intent) error
	CountNode(ctx context.Context, batchID string, n *store.NodeDoc, l *store.Lane) error
	RecordNode(ctx context.Context, batchID string, n *store.NodeDoc) (*store.NodeDoc, error)
	UpdateLane(ctx context.Context, batchID string, l *store.Lane, pos int) error
	AddRedelivery(ctx context.Context, batchID string, attempt, lane int) error
	Refuse(ctx context.Context, id string, r store.Refusal) error
}

// finisher ends a batch: once when its last lane completes, or by the
// failure threshold's cancel.
type finisher interface {
	Finish(ctx context.Context, id string, final func(*store.BatchDoc) *store.BatchDoc) (bool, error)
	RecordCancel(ctx context.Context, id string, c store.Cancel) (*store.BatchDoc, bool, error)
}

var _ Store = (*store.Store)(nil)
