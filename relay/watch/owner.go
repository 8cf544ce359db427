package watch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/store"
)

// OwnerSink learns which batches of an owner are active (pending or
// running). Active must not block; it is called with the feed's lock held.
type OwnerSink interface {
	Active(batchID string)
}

// AllOwners is the owner key of the feed of every user's batches (admins).
const AllOwners = ""

// SubscribeOwner tells sink about every active batch of owner (AllOwners:
// of everyone): first those active now, then each batch that becomes active
// (created, or retried). One query listener per owner is shared by all its
// subscribers; batch documents are written a few times per batch, so the
// query is cheap even on the emulator. Follow each batch with Subscribe.
func (r *Registry) SubscribeOwner(owner string, sink OwnerSink) (cancel func()) {
	r.mu.Lock()
	ow := r.owners[owner]
	if ow == nil {
		ctx, stop := context.WithCancel(context.Background())
		ow = &ownerWatcher{owner: owner, ctx: ctx, cancel: stop, sinks: map[*OwnerSink]bool{}, active: map[string]bool{}}
		r.owners[owner] = ow
		go ow.run(r.fs, r.log.With("owner", owner))
	}
	ow.refs++
	r.mu.Unlock()

	key := &sink
	ow.mu.Lock()
	ow.sinks[key] = true
	for id := range ow.active {
		sink.Active(id)
	}
	ow.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			ow.mu.Lock()
			delete(ow.sinks, key)
			ow.mu.Unlock()
			r.mu.Lock()
			ow.refs--
			last := ow.refs == 0
			if last {
				delete(r.owners, owner)
			}
			r.mu.Unlock()
			if last {
				ow.cancel()
			}
		})
	}
}

type ownerWatcher struct {
	owner  string
	ctx    context.Context
	cancel context.CancelFunc
	refs   int // guarded by Registry.mu

	mu     sync.Mutex
	sinks  map[*OwnerSink]bool
	active map[string]bool
}

func (ow *ownerWatcher) run(fs *firestore.Client, log *slog.Logger) {
	q := fs.Collection(store.BatchesCollection).
		Where("state", "in", []string{string(batch.StatePending), string(batch.StateRunning)})
	if ow.owner != AllOwners {
		q = q.Where("owner", "==", ow.owner)
	}
	backoff := 100 * time.Millisecond
	for ow.ctx.Err() == nil {
		it := q.Snapshots(ow.ctx)
		for {
			snap, err := it.Next()
			if err != nil {
				if ow.ctx.Err() == nil {
					log.Warn("owner query listener failed; reopening", "error", err)
				}
				break
			}
			backoff = 100 * time.Millisecond
			ow.update(snap.Changes)
		}
		it.Stop()
		select {
		case <-ow.ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// update applies a query snapshot's changes and tells the sinks about
// batches that became active.
func (ow *ownerWatcher) update(changes []firestore.DocumentChange) {
	ow.mu.Lock()
	defer ow.mu.Unlock()
	for _, ch := range changes {
		id := ch.Doc.Ref.ID
		switch ch.Kind {
		case firestore.DocumentRemoved:
			delete(ow.active, id)
		default:
			if ow.active[id] {
				continue
			}
			ow.active[id] = true
			for s := range ow.sinks {
				(*s).Active(id)
			}
		}
	}
}
