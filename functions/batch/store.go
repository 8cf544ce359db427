package batch

import (
	"context"
	"time"

	"github.com/nodebatch/nodebatch/shared/store"
)

// Store is what the API's handlers read and write. The Firestore store
// (*store.Store) is the one production wires; shared/store/memstore is an
// in-memory one for unit tests (handler_unit_test.go). Both pass
// shared/store/storetest.
type Store interface {
	reader
	submitter
	controller
	History(ctx context.Context, q store.HistoryQuery) ([]store.BatchDoc, *store.Cursor, error)
}

// reader reads a batch, its lanes and its node results (GET, controls).
type reader interface {
	Batch(ctx context.Context, id string) (*store.BatchDoc, error)
	Lanes(ctx context.Context, batchID string, attempt int) ([]store.LaneDoc, error)
	Nodes(ctx context.Context, batchID, after string, limit int) ([]store.NodeDoc, string, error)
	NodesWhere(ctx context.Context, batchID, field string, value any) ([]store.NodeDoc, error)
}

// submitter records a new batch (with its idempotency key), and fails one
// whose publishing broke off.
type submitter interface {
	Create(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) error
	BatchForKey(ctx context.Context, owner, key, fingerprint string) (string, error)
	Fail(ctx context.Context, id, reason string, now time.Time) error
}

// controller records the controls: cancel, retry, revert.
type controller interface {
	RecordCancel(ctx context.Context, id string, c store.Cancel) (*store.BatchDoc, bool, error)
	StartAttempt(ctx context.Context, id string, a store.Attempt, lanes []store.LaneDoc) (*store.BatchDoc, error)
	CreateRevert(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) (string, error)
}

var _ Store = (*store.Store)(nil)
