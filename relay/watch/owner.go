package watch

import (
	"context"
	"sync"
	"time"

	"github.com/nodebatch/nodebatch/shared/store"
)

// OwnerSink learns which batches of an owner to follow. Active must not
// block; it is called with the feed's lock held.
type OwnerSink interface {
	Active(batchID string)
}

// AllOwners is the owner key of the feed of every user's batches (admins).
const AllOwners = store.AllOwners

// recent is how far before a subscription a batch may have finished and
// still be announced: a batch submitted just before subscribe_all that
// finished before the feed's listeners first reported is still streamed.
const recent = 10 * time.Second

// SubscribeOwner tells sink about the batches of owner (AllOwners: of
// everyone) to follow: first those active now (pending or running) and
// those that finished in the last few seconds, then every batch created or
// reactivated (retried) later, even one that finishes at once. One feed per
// owner is shared by all its subscribers. Follow each batch with Subscribe.
//
// A feed is two query listeners on batch documents, which are written a few
// times per batch, so they are cheap even on the emulator: state in
// (pending, running), and finished_at >= the feed's start (in production
// this needs the composite index owner + finished_at). Between them they
// see every batch that was active at any moment since the feed's start:
// one active when the feed starts but final before the active listener's
// first snapshot (it can take seconds on a loaded machine) has a
// finished_at after the start. (The second query used to be created_at >=
// start − 10 s, which missed such a batch when it was older than that: a
// lost final message.)
func (r *Registry) SubscribeOwner(owner string, sink OwnerSink) (cancel func()) {
	joined := r.now()
	r.mu.Lock()
	ow := r.owners[owner]
	if ow == nil {
		ctx, stop := context.WithCancel(context.Background())
		ow = &ownerWatcher{cancel: stop, sinks: map[*OwnerSink]bool{}, known: map[string]known{}}
		r.owners[owner] = ow
		go r.src.WatchOwner(ctx, owner, joined.Add(-recent), ow.update)
	}
	ow.refs++
	r.mu.Unlock()

	key := &sink
	ow.mu.Lock()
	ow.sinks[key] = true
	for id, k := range ow.known {
		if k.active || !k.finished.Before(joined.Add(-recent)) {
			sink.Active(id)
		}
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
	cancel context.CancelFunc // stops the feed's listeners
	refs   int                // guarded by Registry.mu

	mu    sync.Mutex
	sinks map[*OwnerSink]bool
	known map[string]known
}

// known is what the feed knows of one batch.
type known struct {
	active   bool      // in the active query's result now
	finished time.Time // in the finished query's result, finished then
}

// update applies the changes of one of the feed's queries (activeQuery:
// the active batches; else those finished since the feed's start) and
// tells the sinks about batches that became active or are new.
func (ow *ownerWatcher) update(activeQuery bool, changes []store.BatchChange) {
	ow.mu.Lock()
	defer ow.mu.Unlock()
	for _, ch := range changes {
		id := ch.ID
		k, seen := ow.known[id]
		if activeQuery {
			if ch.Removed {
				k.active = false
				ow.known[id] = k
				continue
			}
			wasActive := k.active
			k.active = true
			ow.known[id] = k
			if seen && wasActive {
				continue
			}
		} else {
			if ch.Removed {
				continue
			}
			k.finished = ch.FinishedAt
			ow.known[id] = k
			if seen { // told when it became active
				continue
			}
		}
		for s := range ow.sinks {
			(*s).Active(id)
		}
	}
}
