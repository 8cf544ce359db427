package relay

import (
	"slices"
	"sync"

	"github.com/nodebatch/nodebatch/shared/progress"
)

// outbox is a connection's bounded send buffer. Progress is coalesced per
// batch (latest wins), so a slow client costs one message per subscription;
// final messages (complete, error, refusals) are queued in order and never
// dropped: past maxFinal the outbox reports overflow and the connection is
// closed instead, so the client reconnects and gets the final state.
//
// It also keeps `current` monotonic per batch and attempt for this client:
// a progress message that would move it backwards is discarded.
type outbox struct {
	maxFinal int
	notify   chan struct{} // one token: "there is something to take"

	mu       sync.Mutex
	pending  map[string]progress.Message // coalesced progress, by task
	order    []string                    // tasks in pending, oldest first
	final    []progress.Message
	overflow bool
	last     map[string]mark // highest current sent, by task
}

type mark struct{ attempt, current int }

func newOutbox(maxFinal int) *outbox {
	return &outbox{
		maxFinal: maxFinal,
		notify:   make(chan struct{}, 1),
		pending:  map[string]progress.Message{},
		last:     map[string]mark{},
	}
}

// push queues a progress message, replacing an unsent one of its batch.
func (o *outbox) push(m progress.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.monotonic(&m) {
		return
	}
	if _, ok := o.pending[m.TaskID]; !ok {
		o.order = append(o.order, m.TaskID)
	}
	o.pending[m.TaskID] = m
	o.signal()
}

// pushFinal queues a message that must arrive: it supersedes unsent
// progress of its batch.
func (o *outbox) pushFinal(m progress.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.monotonic(&m)
	if _, ok := o.pending[m.TaskID]; ok {
		delete(o.pending, m.TaskID)
		o.order = slices.DeleteFunc(o.order, func(id string) bool { return id == m.TaskID })
	}
	if len(o.final) >= o.maxFinal {
		o.overflow = true
	} else {
		o.final = append(o.final, m)
	}
	o.signal()
}

// monotonic reports whether m may be sent; a final message always may, with
// current raised to what the client has seen (it never goes backwards).
// o.mu must be held.
func (o *outbox) monotonic(m *progress.Message) bool {
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

// take empties the outbox: final messages first (in order), then the latest
// progress of each batch, oldest batch first.
func (o *outbox) take() (msgs []progress.Message, overflow bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs = append(o.final, make([]progress.Message, 0, len(o.order))...)
	for _, id := range o.order {
		msgs = append(msgs, o.pending[id])
	}
	o.final, o.order = nil, nil
	clear(o.pending)
	return msgs, o.overflow
}
