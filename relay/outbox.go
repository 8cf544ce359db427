package relay

import (
	"slices"
	"sync"

	"github.com/nodebatch/nodebatch/relay/watch"
)

// outbox is a connection's bounded send buffer. Progress is coalesced per
// batch (latest wins), so a slow client costs one message per subscription;
// final messages (complete, error, refusals) are queued in order and never
// dropped: past maxFinal the outbox reports overflow and the connection is
// closed instead, so the client reconnects and gets the final state.
//
// It also keeps `current` monotonic per batch and attempt for this client:
// a progress message that would move it backwards is discarded.
//
// Entries are watch.Updates: a message with, usually, its frame encoded
// once for every client; a message the outbox changes (a raised final
// message) loses its frame and is encoded for this client alone.
type outbox struct {
	maxFinal int
	notify   chan struct{} // one token: "there is something to take"

	mu       sync.Mutex
	pending  map[string]watch.Update // coalesced progress, by task
	order    []string                // tasks in pending, oldest first
	final    []watch.Update
	overflow bool
	last     map[string]mark // highest current sent, by task
}

type mark struct{ attempt, current int }

func newOutbox(maxFinal int) *outbox {
	return &outbox{
		maxFinal: maxFinal,
		notify:   make(chan struct{}, 1),
		pending:  map[string]watch.Update{},
		last:     map[string]mark{},
	}
}

// push queues a progress message, replacing an unsent one of its batch.
func (o *outbox) push(u watch.Update) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.monotonic(&u) {
		return
	}
	id := u.Message.TaskID
	if _, ok := o.pending[id]; !ok {
		o.order = append(o.order, id)
	}
	o.pending[id] = u
	o.signal()
}

// pushFinal queues a message that must arrive: it supersedes unsent
// progress of its batch.
func (o *outbox) pushFinal(u watch.Update) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.monotonic(&u)
	id := u.Message.TaskID
	if _, ok := o.pending[id]; ok {
		delete(o.pending, id)
		o.order = slices.DeleteFunc(o.order, func(t string) bool { return t == id })
	}
	if len(o.final) >= o.maxFinal {
		o.overflow = true
	} else {
		o.final = append(o.final, u)
	}
	o.signal()
}

// monotonic reports whether u may be sent; a final message always may, with
// current raised to what the client has seen (it never goes backwards) and
// then without the shared frame, which no longer matches it. o.mu must be
// held.
func (o *outbox) monotonic(u *watch.Update) bool {
	m := &u.Message
	if m.State == "" { // not a batch message (a refusal)
		return true
	}
	last, seen := o.last[m.TaskID]
	if seen && m.Attempt < last.attempt && !m.Final() {
		return false
	}
	if seen && m.Attempt == last.attempt && m.Current < last.current {
		if !m.Final() {
			return false
		}
		m.Current = last.current
		u.Frame = nil
		if m.Total > 0 {
			m.Progress = float64(m.Current) * 100 / float64(m.Total)
		}
	}
	o.last[m.TaskID] = mark{m.Attempt, m.Current}
	return true
}

// forget drops what the outbox knows of a batch the client unsubscribed.
func (o *outbox) forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.last, id)
	if _, ok := o.pending[id]; ok {
		delete(o.pending, id)
		o.order = slices.DeleteFunc(o.order, func(t string) bool { return t == id })
	}
}

func (o *outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// take empties the outbox into dst (reusing its space): final messages
// first (in order), then the latest progress of each batch, oldest batch
// first.
func (o *outbox) take(dst []watch.Update) (msgs []watch.Update, overflow bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs = append(dst[:0], o.final...)
	for _, id := range o.order {
		msgs = append(msgs, o.pending[id])
	}
	clear(o.final)
	o.final, o.order = o.final[:0], o.order[:0]
	clear(o.pending)
	return msgs, o.overflow
}
