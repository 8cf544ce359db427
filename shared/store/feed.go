package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodebatch/nodebatch/shared/model"
)

// AllOwners is the owner that stands for every owner in Feed.WatchOwner.
const AllOwners = ""

// Feed is the relay's view of the batches: snapshot listeners on batch and
// lane documents, one read of earlier attempts' lanes, and the owner feed's
// two query listeners (relay/watch.Source). Each listener runs until its
// context ends and reopens itself with backoff when its stream fails; a
// snapshot that does not decode is logged and skipped. Its zero value is not
// usable; call NewFeed.
type Feed struct {
	fs  *firestore.Client
	log *slog.Logger
}

// NewFeed returns a feed reading from fs that logs to log (slog.Default()
// if nil).
func NewFeed(fs *firestore.Client, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	return &Feed{fs: fs, log: log}
}

// BatchChange is one batch entering, changing in or leaving the result of
// one of an owner feed's queries.
type BatchChange struct {
	ID         string
	Removed    bool      // the batch left the query's result
	FinishedAt time.Time // the batch's finished_at as the snapshot has it; zero if unset or Removed
}

// WatchBatch calls fn with batch id's document, nil while there is no such
// batch, first as it is now and then on every change, until ctx ends.
func (f *Feed) WatchBatch(ctx context.Context, id string, fn func(*BatchDoc)) {
	listen(ctx, f.log.With("batch_id", id), f.fs.Doc(BatchPath(id)), func(snap *firestore.DocumentSnapshot) error {
		if !snap.Exists() {
			fn(nil)
			return nil
		}
		var b BatchDoc
		if err := snap.DataTo(&b); err != nil {
			return fmt.Errorf("decode batch %q: %w", id, err)
		}
		if b.ID == "" {
			b.ID = id
		}
		fn(&b)
		return nil
	})
}

// WatchLane calls fn with lane laneID (LaneID) of batch batchID, nil while
// it is not written yet, first as it is now and then on every change,
// until ctx ends.
func (f *Feed) WatchLane(ctx context.Context, batchID, laneID string, fn func(*LaneDoc)) {
	ref := f.fs.Doc(BatchPath(batchID) + "/" + LanesCollection + "/" + laneID)
	listen(ctx, f.log.With("batch_id", batchID, "lane", laneID), ref, func(snap *firestore.DocumentSnapshot) error {
		if !snap.Exists() { // not started yet
			fn(nil)
			return nil
		}
		var l LaneDoc
		if err := snap.DataTo(&l); err != nil {
			return fmt.Errorf("decode lane %q of batch %q: %w", laneID, batchID, err)
		}
		fn(&l)
		return nil
	})
}

// LanesBefore reads the lanes of batch batchID's attempts before attempt,
// by lane id. A lane that does not decode is logged and left out.
func (f *Feed) LanesBefore(ctx context.Context, batchID string, attempt int) (map[string]LaneDoc, error) {
	docs, err := QueryLanesBefore.Apply(f.fs.Collection(BatchPath(batchID)+"/"+LanesCollection).Query, attempt).
		Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("read lanes of batch %q before attempt %d: %w", batchID, attempt, err)
	}
	lanes := map[string]LaneDoc{}
	for _, d := range docs {
		var l LaneDoc
		if err := d.DataTo(&l); err != nil {
			f.log.Error("decode lane", "batch_id", batchID, "lane", d.Ref.ID, "error", err)
			continue
		}
		lanes[d.Ref.ID] = l
	}
	return lanes, nil
}

// WatchOwner runs the two queries of owner's feed (AllOwners: of every
// owner's batches) until ctx ends: the batches active now (pending or
// running), and those finished since since. For each snapshot of either
// query it calls fn with the query (active true: the first) and the
// snapshot's changes, the first snapshot's being the whole result. The two
// queries call fn from two goroutines.
func (f *Feed) WatchOwner(ctx context.Context, owner string, since time.Time, fn func(active bool, changes []BatchChange)) {
	log := f.log.With("owner", owner)
	// The queries are declared in queries.go (their indexes are checked
	// against infra/firestore.tf).
	batches := f.fs.Collection(BatchesCollection).Query
	states := []string{string(model.StatePending), string(model.StateRunning)}
	active := QueryActive.Apply(batches, states)
	finished := QueryFinishedSince.Apply(batches, since)
	if owner != AllOwners {
		active = QueryActiveByOwner.Apply(batches, states, owner)
		finished = QueryFinishedSinceByOwner.Apply(batches, owner, since)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		listenQuery(ctx, log.With("query", "active"), active, func(c []BatchChange) { fn(true, c) })
	})
	wg.Go(func() {
		listenQuery(ctx, log.With("query", "finished"), finished, func(c []BatchChange) { fn(false, c) })
	})
	wg.Wait()
}

// Listeners reopen with backoff when their stream fails (the client library
// already retries transient errors itself): 100 ms, doubling to 10 s, back
// to 100 ms once a snapshot arrives.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
)

// listen runs a single-document snapshot listener until ctx ends, calling
// fn for each snapshot, and reopens it with backoff when the stream fails.
func listen(ctx context.Context, log *slog.Logger, ref *firestore.DocumentRef, fn func(*firestore.DocumentSnapshot) error) {
	if ref == nil { // an odd path; relay/watch.Registry.Subscribe refuses the ids that make one
		log.Error("snapshot listener not opened: not a document path")
		return
	}
	backoff := firstBackoff
	for ctx.Err() == nil {
		it := ref.Snapshots(ctx)
		for {
			snap, err := it.Next()
			if err != nil {
				if ctx.Err() == nil && status.Code(err) != codes.Canceled {
					log.Warn("snapshot listener failed; reopening", "doc", ref.Path, "error", err)
				}
				break
			}
			backoff = firstBackoff
			if err := fn(snap); err != nil {
				log.Error("snapshot", "doc", ref.Path, "error", err)
			}
		}
		it.Stop()
		backoff = wait(ctx, backoff)
	}
}

// listenQuery runs one query listener until ctx ends, calling fn with each
// snapshot's changes, and reopens it with backoff when it fails.
func listenQuery(ctx context.Context, log *slog.Logger, q firestore.Query, fn func([]BatchChange)) {
	backoff := firstBackoff
	for ctx.Err() == nil {
		it := q.Snapshots(ctx)
		for {
			snap, err := it.Next()
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("owner query listener failed; reopening", "error", err)
				}
				break
			}
			backoff = firstBackoff
			fn(batchChanges(snap.Changes))
		}
		it.Stop()
		backoff = wait(ctx, backoff)
	}
}

// wait waits backoff or until ctx ends, and returns the next backoff.
func wait(ctx context.Context, backoff time.Duration) time.Duration {
	select {
	case <-ctx.Done():
		return backoff
	case <-time.After(backoff):
		return min(2*backoff, maxBackoff)
	}
}

// batchChanges are a query snapshot's changes as plain values.
func batchChanges(changes []firestore.DocumentChange) []BatchChange {
	out := make([]BatchChange, 0, len(changes))
	for _, ch := range changes {
		c := BatchChange{ID: ch.Doc.Ref.ID, Removed: ch.Kind == firestore.DocumentRemoved}
		if !c.Removed {
			// DataAt decodes the one field (Data would decode the whole
			// document on every change of every batch the feed follows).
			if v, err := ch.Doc.DataAt("finished_at"); err == nil {
				if t, ok := v.(time.Time); ok {
					c.FinishedAt = t
				}
			}
		}
		out = append(out, c)
	}
	return out
}
