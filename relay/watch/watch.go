// Package watch turns batch and lane documents into progress messages with
// listeners (a Source: store.Feed's Firestore snapshot listeners), never
// polling. Per watched batch there is ONE watcher, shared by every
// subscriber and closed when the last one leaves: it listens to the batch
// document and, with single-document listeners, to each lane document of
// the current attempt (the emulator's query listeners are slow and
// serialize commits; see docs/design.md), and recomputes the message with
// progress.Compute on every change.
//
// A subscriber first gets the current state, then every change. Delivery is
// a non-blocking call: coalescing for slow clients is the subscriber's job.
//
// Fan-out: each message is encoded once, as a WebSocket frame shared by
// every subscriber it goes to (Update.Frame), so a batch followed by many
// clients costs one JSON encoding per message, not one per client. Under a
// stream of changes a watcher with many subscribers publishes at most one
// message per interval (see pacing); the final message is never held back.
package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Source is what the watchers read. Each Watch call runs until ctx ends,
// calling fn first with the current state and then on every change, one
// call at a time (WatchOwner: one at a time per query); a listener that
// fails is reopened and a document that does not decode is skipped, both
// the Source's concern. store.Feed is the Firestore Source.
type Source interface {
	// WatchBatch calls fn with batch id's document; nil: no such batch.
	WatchBatch(ctx context.Context, id string, fn func(*store.BatchDoc))
	// WatchLane calls fn with lane laneID (store.LaneID) of batch batchID;
	// nil: not written yet.
	WatchLane(ctx context.Context, batchID, laneID string, fn func(*store.LaneDoc))
	// LanesBefore reads once the lanes of batch batchID's attempts before
	// attempt, by lane id.
	LanesBefore(ctx context.Context, batchID string, attempt int) (map[string]store.LaneDoc, error)
	// WatchOwner follows owner's (AllOwners: everyone's) batches: fn gets
	// the changes of the active ones (pending or running; active true) and
	// of those finished since since (active false), the first call of each
	// with the whole result.
	WatchOwner(ctx context.Context, owner string, since time.Time, fn func(active bool, changes []store.BatchChange))
}

// Sink receives a subscription's messages. Deliver must not block: it is
// called with the watcher's lock held, so that a new subscriber's first
// message (the current state) and the changes after it are never reordered
// or missed.
type Sink interface {
	Deliver(u Update)
}

// Update is one message for a subscriber. The same Frame goes to every
// subscriber of a change, so it must not be modified.
type Update struct {
	Message progress.Message
	// Frame is Message as a WebSocket text message (its JSON, as
	// websocket.Conn.WriteJSON would write it), encoded once for all
	// subscribers. Nil for a message meant for one subscriber only (a
	// refusal), or one that could not be encoded: write Message itself.
	Frame *websocket.PreparedMessage
}

// encode returns m as the JSON text frame a client receives: the bytes
// websocket.Conn.WriteJSON writes for it.
func encode(m progress.Message) (*websocket.PreparedMessage, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(m); err != nil {
		return nil, fmt.Errorf("encode progress message of %q: %w", m.TaskID, err)
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("prepare progress frame of %q: %w", m.TaskID, err)
	}
	return pm, nil
}

// Allow decides, once the batch's owner is known, whether a subscriber may
// see the batch. It is asked for every subscription.
type Allow func(owner string) bool

// Registry owns the shared watchers. Its zero value is not usable; call New.
type Registry struct {
	src Source
	log *slog.Logger
	now func() time.Time
	// pace is the least time between two messages of a watcher with n
	// subscribers (pacing; tests change it).
	pace func(n int) time.Duration

	mu      sync.Mutex
	batches map[string]*batchWatcher
	owners  map[string]*ownerWatcher
}

// New returns a registry reading from src. now is the clock (time.Now if nil).
func New(src Source, log *slog.Logger, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{src: src, log: log, now: now, pace: pacing, batches: map[string]*batchWatcher{}, owners: map[string]*ownerWatcher{}}
}

// Stats is a snapshot of the registry's size, for health and tests.
type Stats struct {
	Batches     int // batch watchers open
	Owners      int // owner feeds open
	Subscribers int // subscriptions to batches
}

// Stats reports how many watchers and subscriptions are open.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Batches: len(r.batches), Owners: len(r.owners)}
	for _, w := range r.batches {
		w.mu.Lock()
		s.Subscribers += len(w.subs)
		w.mu.Unlock()
	}
	return s
}

// Subscribe subscribes sink to batch id. Once the batch document is read,
// allow(owner) decides: refused (or no such batch) → the sink gets
// progress.Refusal(id, "not found") and the subscription ends by itself.
// Otherwise the sink gets the current state, then every change, until cancel
// is called. cancel is idempotent. An id that is not a batch id
// (model.ValidateID) is refused with an error before any listener opens:
// it would name no document (a '/' makes an odd path the Firestore client
// answers with a nil ref).
func (r *Registry) Subscribe(id string, allow Allow, sink Sink) (cancel func(), err error) {
	if err := model.ValidateID(id); err != nil {
		return nil, fmt.Errorf("subscribe to batch: %w", err)
	}
	s := &subscriber{allow: allow, sink: sink}
	r.mu.Lock()
	w := r.batches[id]
	if w == nil {
		w = newBatchWatcher(r, id)
		r.batches[id] = w
		go w.run()
	}
	w.refs++
	r.mu.Unlock()
	w.add(s)
	var once sync.Once
	return func() { once.Do(func() { r.release(w, s) }) }, nil
}

// release removes s from w and closes w when it was the last reference.
func (r *Registry) release(w *batchWatcher, s *subscriber) {
	w.remove(s)
	r.mu.Lock()
	w.refs--
	last := w.refs == 0
	if last {
		delete(r.batches, w.id)
	}
	r.mu.Unlock()
	if last {
		w.stop()
	}
}

type subscriber struct {
	allow   Allow
	sink    Sink
	allowed bool // decided and allowed
}

// batchWatcher is the one watcher of a batch.
type batchWatcher struct {
	r      *Registry
	id     string
	ctx    context.Context
	cancel context.CancelFunc
	refs   int // guarded by r.mu
	events chan event

	mu      sync.Mutex
	subs    map[*subscriber]bool
	known   bool // the batch doc has been read (exists or not)
	missing bool
	// A subscriber's first message must be the whole current state, so the
	// watcher is ready only once the batch doc and the first snapshot of
	// every lane it listens to (and the earlier attempts' lanes) are in.
	awaiting map[string]bool // lane ids without a first snapshot yet
	earlier  bool            // earlier attempts' lanes not read yet
	ready    bool
	batch    store.BatchDoc
	lanes    map[string]store.LaneDoc
	current  Update    // the last message published, with its shared frame
	dirty    bool      // the state changed since current was published
	sent     time.Time // when current was published (wall clock, for pacing)
}

// Pacing: every published message costs one write per subscriber, so a
// watcher waits at least perSubscriber × subscribers (at most maxInterval)
// between two messages and publishes the latest state when the wait is
// over. One subscriber: 50 µs, no visible wait; 1,000: 50 ms, at most 20
// messages per second instead of one per lane write (hundreds per second
// at c=50), so the fan-out's CPU stays bounded however fast lanes write
// (docs/design.md "Performance", item 5).
const (
	perSubscriber = 50 * time.Microsecond
	maxInterval   = 100 * time.Millisecond
)

// pacing is the least time between two messages of a watcher with n
// subscribers.
func pacing(n int) time.Duration {
	return min(maxInterval, time.Duration(n)*perSubscriber)
}

// event is a snapshot from one of the watcher's listeners.
type event struct {
	batch   *store.BatchDoc // batch doc changed (nil with missing: deleted/absent)
	missing bool
	laneID  string
	lane    *store.LaneDoc           // nil with laneID: the lane doc does not exist yet
	lanes   map[string]store.LaneDoc // earlier attempts, read once
	attempt int                      // the attempt lanes belongs to
}

func newBatchWatcher(r *Registry, id string) *batchWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &batchWatcher{
		r: r, id: id, ctx: ctx, cancel: cancel,
		events:   make(chan event, 64),
		subs:     map[*subscriber]bool{},
		lanes:    map[string]store.LaneDoc{},
		awaiting: map[string]bool{},
	}
}

func (w *batchWatcher) stop() { w.cancel() }

// add registers s; if the batch is known, s is decided and, when allowed,
// gets the current state at once.
func (w *batchWatcher) add(s *subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs[s] = true
	if w.ready {
		w.decide(s)
	}
}

func (w *batchWatcher) remove(s *subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs, s)
}

// decide applies s.allow once the batch is known. w.mu must be held.
func (w *batchWatcher) decide(s *subscriber) {
	if s.allowed {
		return
	}
	if w.missing || !s.allow(w.batch.Owner) {
		delete(w.subs, s)
		s.sink.Deliver(Update{Message: progress.Refusal(w.id, "not found", w.r.now())})
		return
	}
	s.allowed = true
	s.sink.Deliver(w.current)
}

// run listens to the batch doc and the current attempt's lanes until the
// watcher stops. All state changes happen here, one event at a time.
func (w *batchWatcher) run() {
	log := w.r.log.With("batch_id", w.id)
	go w.listenBatch()
	var laneCancel context.CancelFunc = func() {}
	attempt, lanes := 0, 0
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	paced := false // pace is armed: a change waits to be published
	wait := func(d time.Duration) {
		if d > 0 && !paced {
			pace.Reset(d)
			paced = true
		}
	}
	for {
		select {
		case <-w.ctx.Done():
			laneCancel()
			return
		case <-pace.C:
			paced = false
			wait(w.flush())
		case ev := <-w.events:
			if ev.batch != nil && (ev.batch.Attempt != attempt || ev.batch.Lanes != lanes) {
				// A new attempt (retry) has new lanes: listen to those, and
				// read the earlier attempts' (finished) lanes once.
				laneCancel()
				var ctx context.Context
				ctx, laneCancel = context.WithCancel(w.ctx)
				attempt, lanes = ev.batch.Attempt, ev.batch.Lanes
				w.mu.Lock()
				clear(w.awaiting)
				for lane := range lanes {
					w.awaiting[store.LaneID(attempt, lane)] = true
				}
				w.earlier = attempt > 1
				w.mu.Unlock()
				for lane := range lanes {
					go w.listenLane(ctx, store.LaneID(attempt, lane))
				}
				if attempt > 1 {
					go w.readEarlier(ctx, log, attempt)
				}
			}
			wait(w.apply(ev))
		}
	}
}

// apply folds ev into the state and publishes the new message, at once or,
// when the last one went out less than the pacing interval ago, after the wait
// it returns (then call flush). The first full state decides pending
// subscribers.
func (w *batchWatcher) apply(ev event) (wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wasReady := w.ready
	switch {
	case ev.missing:
		w.known, w.missing = true, true
	case ev.batch != nil:
		w.known, w.missing, w.batch = true, false, *ev.batch
	case ev.laneID != "":
		delete(w.awaiting, ev.laneID)
		if ev.lane != nil {
			w.lanes[ev.laneID] = *ev.lane
		}
	case ev.lanes != nil:
		if ev.attempt == w.batch.Attempt {
			w.earlier = false
		}
		for id, l := range ev.lanes {
			if _, ok := w.lanes[id]; !ok {
				w.lanes[id] = l
			}
		}
	}
	w.ready = w.known && (w.missing || len(w.awaiting) == 0 && !w.earlier)
	if !w.ready {
		return 0
	}
	if w.missing { // refuse the undecided; the others keep their last state
		for s := range w.subs {
			w.decide(s)
		}
		return 0
	}
	w.dirty = true
	if !wasReady { // subscribers may be waiting for their first message
		w.publish()
		return 0
	}
	return w.flushLocked()
}

// flush publishes a pending change whose wait is over; see apply.
func (w *batchWatcher) flush() (wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// flushLocked publishes a pending change now if the batch is final or the
// last message is old enough, or returns how long to wait. w.mu must be
// held.
func (w *batchWatcher) flushLocked() (wait time.Duration) {
	if !w.dirty || !w.ready || w.missing {
		return 0
	}
	if !w.batch.State.Final() {
		if d := time.Until(w.sent.Add(w.r.pace(len(w.subs)))); d > 0 {
			return d
		}
	}
	w.publish()
	return 0
}

// publish computes the message from the state and sends it to every
// allowed subscriber, deciding the undecided. w.mu must be held.
func (w *batchWatcher) publish() {
	w.dirty = false
	lanes := make([]store.LaneDoc, 0, len(w.lanes))
	for _, l := range w.lanes {
		if l.Attempt <= w.batch.Attempt {
			lanes = append(lanes, l)
		}
	}
	next := progress.Compute(w.batch, lanes, w.r.now())
	if same(w.current.Message, next) {
		return // e.g. a lane snapshot arriving after the batch went final
	}
	frame, err := encode(next)
	if err != nil { // each subscriber's write fails on it too, and says so
		w.r.log.Error("encode progress message", "batch_id", w.id, "error", err)
	}
	w.current, w.sent = Update{Message: next, Frame: frame}, time.Now()
	for s := range w.subs {
		if s.allowed {
			s.sink.Deliver(w.current)
		} else {
			w.decide(s)
		}
	}
}

// send hands ev to run, unless the watcher stopped.
func (w *batchWatcher) send(ctx context.Context, ev event) bool {
	select {
	case w.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *batchWatcher) listenBatch() {
	w.r.src.WatchBatch(w.ctx, w.id, func(b *store.BatchDoc) {
		if b == nil {
			w.send(w.ctx, event{missing: true})
			return
		}
		w.send(w.ctx, event{batch: b})
	})
}

func (w *batchWatcher) listenLane(ctx context.Context, laneID string) {
	w.r.src.WatchLane(ctx, w.id, laneID, func(l *store.LaneDoc) {
		w.send(ctx, event{laneID: laneID, lane: l}) // nil: not started yet
	})
}

// readEarlier reads the lanes of attempts before attempt once: they no
// longer change, so they need no listener.
func (w *batchWatcher) readEarlier(ctx context.Context, log *slog.Logger, attempt int) {
	lanes, err := w.r.src.LanesBefore(ctx, w.id, attempt)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("read earlier attempts' lanes", "error", err)
		}
		return
	}
	if lanes == nil { // an event with lanes set: the read is done
		lanes = map[string]store.LaneDoc{}
	}
	w.send(ctx, event{lanes: lanes, attempt: attempt})
}

// same reports whether two messages say the same thing. A running batch's
// rate changes with the clock, so only a final message can repeat.
func same(a, b progress.Message) bool {
	if !a.Final() || !b.Final() {
		return false
	}
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
