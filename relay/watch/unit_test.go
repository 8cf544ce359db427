package watch

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

// memSource is an in-memory Source for the watchers' logic, without the
// emulator. The test writes documents with put and putLane; every listener
// open at that moment is called before the write returns, under mu, so the
// listeners hear the writes in the order they were made (a write a
// watcher's listener has not opened for yet is in its first snapshot
// instead). Its queries compute their results from the batches as the
// Firestore queries of store.Feed do.
type memSource struct {
	mu      sync.Mutex
	batches map[string]store.BatchDoc
	lanes   map[string]map[string]store.LaneDoc // batch id → lane id → lane
	docs    map[*docListener]bool
	queries map[*queryListener]bool
}

type docListener struct {
	batchID string
	laneID  string                // "": the batch document
	batch   func(*store.BatchDoc) // with laneID ""
	lane    func(*store.LaneDoc)  // with a laneID
}

type queryListener struct {
	owner  string
	active bool      // pending or running; else finished since since
	since  time.Time // of the finished query
	in     map[string]bool
	fn     func(active bool, changes []store.BatchChange)
}

func newMemSource() *memSource {
	return &memSource{
		batches: map[string]store.BatchDoc{},
		lanes:   map[string]map[string]store.LaneDoc{},
		docs:    map[*docListener]bool{},
		queries: map[*queryListener]bool{},
	}
}

// put writes batch b and tells the listeners.
func (m *memSource) put(b store.BatchDoc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches[b.ID] = b
	for l := range m.docs {
		if l.batchID == b.ID && l.laneID == "" {
			m.notify(l)
		}
	}
	for q := range m.queries {
		q.update(b)
	}
}

// putLane writes lane l of batch batchID and tells its listeners.
func (m *memSource) putLane(batchID string, l store.LaneDoc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := store.LaneID(l.Attempt, l.Lane)
	if m.lanes[batchID] == nil {
		m.lanes[batchID] = map[string]store.LaneDoc{}
	}
	m.lanes[batchID][id] = l
	for dl := range m.docs {
		if dl.batchID == batchID && dl.laneID == id {
			m.notify(dl)
		}
	}
}

// notify calls l with its document as it is now. m.mu must be held.
func (m *memSource) notify(l *docListener) {
	if l.laneID == "" {
		b, ok := m.batches[l.batchID]
		if !ok {
			l.batch(nil)
			return
		}
		l.batch(&b)
		return
	}
	lane, ok := m.lanes[l.batchID][l.laneID]
	if !ok {
		l.lane(nil)
		return
	}
	l.lane(&lane)
}

// watchDoc opens l, gives it its first snapshot and closes it when ctx ends.
func (m *memSource) watchDoc(ctx context.Context, l *docListener) {
	m.mu.Lock()
	m.docs[l] = true
	m.notify(l)
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	delete(m.docs, l)
	m.mu.Unlock()
}

func (m *memSource) WatchBatch(ctx context.Context, id string, fn func(*store.BatchDoc)) {
	m.watchDoc(ctx, &docListener{batchID: id, batch: fn})
}

func (m *memSource) WatchLane(ctx context.Context, batchID, laneID string, fn func(*store.LaneDoc)) {
	m.watchDoc(ctx, &docListener{batchID: batchID, laneID: laneID, lane: fn})
}

func (m *memSource) LanesBefore(_ context.Context, batchID string, attempt int) (map[string]store.LaneDoc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]store.LaneDoc{}
	for id, l := range m.lanes[batchID] {
		if l.Attempt < attempt {
			out[id] = l
		}
	}
	return out, nil
}

func (m *memSource) WatchOwner(ctx context.Context, owner string, since time.Time, fn func(active bool, changes []store.BatchChange)) {
	qs := []*queryListener{
		{owner: owner, active: true, in: map[string]bool{}, fn: fn},
		{owner: owner, since: since, in: map[string]bool{}, fn: fn},
	}
	m.mu.Lock()
	ids := slices.Sorted(maps.Keys(m.batches))
	for _, q := range qs {
		m.queries[q] = true
		changes := []store.BatchChange{} // the first snapshot, even when empty
		for _, id := range ids {
			if b := m.batches[id]; q.match(b) {
				q.in[id] = true
				changes = append(changes, store.BatchChange{ID: id, FinishedAt: b.FinishedAt})
			}
		}
		q.fn(q.active, changes)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	for _, q := range qs {
		delete(m.queries, q)
	}
	m.mu.Unlock()
}

func (q *queryListener) match(b store.BatchDoc) bool {
	if q.owner != AllOwners && b.Owner != q.owner {
		return false
	}
	if q.active {
		return b.State == model.StatePending || b.State == model.StateRunning
	}
	return !b.FinishedAt.IsZero() && !b.FinishedAt.Before(q.since)
}

// update tells q's listener how b's write changed q's result.
func (q *queryListener) update(b store.BatchDoc) {
	match, was := q.match(b), q.in[b.ID]
	var ch store.BatchChange
	switch {
	case match:
		ch = store.BatchChange{ID: b.ID, FinishedAt: b.FinishedAt}
	case was:
		ch = store.BatchChange{ID: b.ID, Removed: true}
	default:
		return
	}
	q.in[b.ID] = match
	q.fn(q.active, []store.BatchChange{ch})
}

// t0 is the unit tests' clock.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newUnitRegistry is a registry on src that publishes every change at once
// (no pacing), with the clock standing at t0.
func newUnitRegistry(src Source) *Registry {
	r := New(src, slog.Default(), func() time.Time { return t0 })
	r.pace = func(int) time.Duration { return 0 }
	return r
}

// seen is what the unit tests compare of a message.
type seen struct {
	Type    progress.Type
	State   model.State
	Attempt int
	Current int
}

func view(m progress.Message) seen {
	return seen{Type: m.Type, State: m.State, Attempt: m.Attempt, Current: m.Current}
}

// write is one write of a unit test: a batch or a lane document.
type write struct {
	batch *store.BatchDoc
	lane  *store.LaneDoc
}

func (w write) to(m *memSource, batchID string) {
	if w.batch != nil {
		m.put(*w.batch)
	}
	if w.lane != nil {
		m.putLane(batchID, *w.lane)
	}
}

func batchWith(b store.BatchDoc, mutate func(*store.BatchDoc)) *store.BatchDoc {
	mutate(&b)
	return &b
}

func laneOf(attempt, lane int, c model.Counts) *store.LaneDoc {
	return &store.LaneDoc{Attempt: attempt, Lane: lane, Size: 2, Counts: c}
}

// TestUnitSubscribe: a subscriber gets the current state, then one message
// per change, and the final message once: a lane write that arrives after
// the batch went final repeats nothing, so the next message is the retry's.
// Every write produces a message here (no pacing), and the writes reach
// the watcher in order, so a message too many or too few shifts the list.
func TestUnitSubscribe(t *testing.T) {
	t.Parallel()
	running := store.BatchDoc{ID: "b1", Owner: "alice", Action: model.ActionLabel, Total: 4, Lanes: 2, Attempt: 1, State: model.StateRunning, StartedAt: t0.Add(-time.Minute)}
	partial := batchWith(running, func(b *store.BatchDoc) {
		b.State, b.Counts, b.FinishedAt = model.StatePartiallyFailed, model.Counts{Succeeded: 3, Failed: 1}, t0
	})
	retry := batchWith(running, func(b *store.BatchDoc) {
		b.State, b.Attempt, b.Lanes, b.AttemptTotal, b.Adjust, b.FinishedAt = model.StateRunning, 2, 1, 1, model.Counts{Failed: 1}, time.Time{}
	})
	tests := []struct {
		name   string
		before []write // written before the subscription
		writes []write // written one by one once the first message is in
		want   []seen
	}{
		{
			name:   "the current state, then every change, then the final state",
			before: []write{{batch: &running}, {lane: laneOf(1, 0, model.Counts{Succeeded: 1})}},
			writes: []write{
				{lane: laneOf(1, 1, model.Counts{Succeeded: 1})}, // lane 1 was not written yet
				{lane: laneOf(1, 0, model.Counts{Succeeded: 2})},
				{lane: laneOf(1, 1, model.Counts{Succeeded: 1, Failed: 1})},
				{batch: partial},
			},
			want: []seen{
				{progress.TypeProgress, model.StateRunning, 1, 1},
				{progress.TypeProgress, model.StateRunning, 1, 2},
				{progress.TypeProgress, model.StateRunning, 1, 3},
				{progress.TypeProgress, model.StateRunning, 1, 4},
				{progress.TypeComplete, model.StatePartiallyFailed, 1, 4},
			},
		},
		{
			name: "the final message once, then a retry",
			before: []write{
				{batch: partial},
				{lane: laneOf(1, 0, model.Counts{Succeeded: 2})},
				{lane: laneOf(1, 1, model.Counts{Succeeded: 1, Failed: 1})},
			},
			writes: []write{
				{lane: laneOf(1, 1, model.Counts{Succeeded: 1, Failed: 1})}, // after the final write
				{batch: retry}, // attempt 2: its lane is not written yet; attempt 1's are read
			},
			want: []seen{
				{progress.TypeComplete, model.StatePartiallyFailed, 1, 4},
				{progress.TypeProgress, model.StateRunning, 2, 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			for _, w := range tt.before {
				w.to(src, running.ID)
			}
			r := newUnitRegistry(src)
			s := make(sink, 100)
			cancel := mustSubscribe(t, r, running.ID, func(owner string) bool { return owner == "alice" }, s)
			defer cancel()
			got := []seen{view(next(t, s))}
			for _, w := range tt.writes {
				w.to(src, running.ID)
			}
			for len(got) < len(tt.want) {
				got = append(got, view(next(t, s)))
			}
			select {
			case u := <-s:
				got = append(got, view(u.Message))
			default:
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages received (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUnitRefusal: a batch that does not exist, and one the subscriber may
// not see, get the same "not found", and the subscription ends by itself.
func TestUnitRefusal(t *testing.T) {
	t.Parallel()
	anyone := func(string) bool { return true }
	alice := func(owner string) bool { return owner == "alice" }
	tests := []struct {
		name    string
		batches []store.BatchDoc
		allow   Allow
	}{
		{name: "no such batch", allow: anyone},
		{name: "another owner's batch", batches: []store.BatchDoc{{ID: "b1", Owner: "bob", Total: 1, Lanes: 1, Attempt: 1, State: model.StateRunning}}, allow: alice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			for _, b := range tt.batches {
				src.put(b)
			}
			r := newUnitRegistry(src)
			s := make(sink, 10)
			cancel := mustSubscribe(t, r, "b1", tt.allow, s)
			u := nextUpdate(t, s)
			if diff := cmp.Diff(progress.Refusal("b1", "not found", t0), u.Message); diff != "" || u.Frame != nil {
				t.Errorf("first update: shared frame %v, message (-want +got):\n%s", u.Frame != nil, diff)
			}
			if diff := cmp.Diff(Stats{Batches: 1}, r.Stats()); diff != "" {
				t.Errorf("Stats() after the refusal (-want +got):\n%s", diff)
			}
			cancel()
			if diff := cmp.Diff(Stats{}, r.Stats()); diff != "" {
				t.Errorf("Stats() after cancel (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUnitOwnerFeed: an owner feed tells its sink of a batch once when it
// becomes active, not again when it finishes, and again when a retry
// reactivates it; the all-owners feed also tells of other owners'
// batches. memSource delivers a write's changes before put returns, so
// what the sink holds after a write is all it was told of it.
func TestUnitOwnerFeed(t *testing.T) {
	t.Parallel()
	b0 := store.BatchDoc{ID: "b0", Owner: "alice", State: model.StateRunning} // before the subscription
	b1 := store.BatchDoc{ID: "b1", Owner: "alice", State: model.StateRunning, Attempt: 1}
	done := b1
	done.State, done.FinishedAt = model.StateSucceeded, t0.Add(time.Second)
	retried := done
	retried.State, retried.Attempt = model.StateRunning, 2
	bob := store.BatchDoc{ID: "x", Owner: "bob", State: model.StatePending}
	writes := []store.BatchDoc{b1, done, bob, retried}
	tests := []struct {
		name  string
		owner string
		want  [][]string // told after each write
	}{
		{name: "alice's", owner: "alice", want: [][]string{{"b1"}, nil, nil, {"b1"}}},
		{name: "all owners'", owner: AllOwners, want: [][]string{{"b1"}, nil, {"x"}, {"b1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			src.put(b0)
			r := newUnitRegistry(src)
			s := make(ownerSink, 10)
			defer r.SubscribeOwner(tt.owner, s)()
			// The feed's listeners have opened once their first snapshot
			// told of b0.
			select {
			case got := <-s:
				if got != b0.ID {
					t.Fatalf("first batch told = %q, want %q", got, b0.ID)
				}
			case <-time.After(60 * time.Second): // hang guard, not a timing assertion
				t.Fatal("the feed never told of the batch active before it started")
			}
			var got [][]string
			for _, b := range writes {
				src.put(b)
				var told []string
				for len(s) > 0 {
					told = append(told, <-s)
				}
				got = append(got, told)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batches told after each write (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUnitJoinLiveWatcher: a subscription to a batch whose watcher is live
// gets the current state at once (the shared frame of the last message),
// without another write, and shares the watcher.
func TestUnitJoinLiveWatcher(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.put(store.BatchDoc{ID: "b1", Owner: "alice", Total: 4, Lanes: 1, Attempt: 1, State: model.StateRunning})
	src.putLane("b1", *laneOf(1, 0, model.Counts{Succeeded: 1}))
	r := newUnitRegistry(src)
	alice := func(owner string) bool { return owner == "alice" }
	first, late := make(sink, 10), make(sink, 10)
	defer mustSubscribe(t, r, "b1", alice, first)()
	if got := next(t, first).Current; got != 1 {
		t.Fatalf("first subscriber's first message: current = %d, want 1", got)
	}
	src.putLane("b1", *laneOf(1, 0, model.Counts{Succeeded: 2}))
	change := nextUpdate(t, first)
	if change.Message.Current != 2 {
		t.Fatalf("first subscriber's change: current = %d, want 2", change.Message.Current)
	}
	defer mustSubscribe(t, r, "b1", alice, late)()
	u := nextUpdate(t, late)
	if diff := cmp.Diff(view(change.Message), view(u.Message)); diff != "" || u.Frame != change.Frame {
		t.Errorf("late subscriber's first message: same frame as the last change %v, (-want +got):\n%s", u.Frame == change.Frame, diff)
	}
	if diff := cmp.Diff(Stats{Batches: 1, Subscribers: 2}, r.Stats()); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
}
