package kubeproxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// Gate holds mutating requests while it is closed, so that a test can act
// on a batch (cancel it, kill the patch function, restart the relay) while
// the batch is certainly still running, however fast the pipeline is: a
// node whose write is held cannot finish, so neither can its batch. Reads
// pass. A held request counts as in flight and is logged from its arrival;
// it is released by Open, or dropped when its client goes away.
//
// A new Gate is open. Its methods are safe for concurrent use.
type Gate struct {
	mu      sync.Mutex
	closed  bool
	pass    int           // requests still let through while closed
	release chan struct{} // closed by Open: the requests held until then go
	held    int
	changed chan struct{} // closed and replaced whenever held changes
}

// NewGate returns an open gate.
func NewGate() *Gate {
	return &Gate{release: make(chan struct{}), changed: make(chan struct{})}
}

// CloseAfter lets the next n mutating requests through and holds every one
// after them until Open. Calling it on a closed gate resets n; requests
// already held stay held.
func (g *Gate) CloseAfter(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.release = make(chan struct{})
	}
	g.closed, g.pass = true, max(n, 0)
}

// Open releases every held request and lets all requests through until the
// next CloseAfter.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.release)
	}
}

// Held is the number of requests waiting at the gate now.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// WaitHeld blocks until at least n requests are waiting at the gate, or ctx
// ends.
func (g *Gate) WaitHeld(ctx context.Context, n int) error {
	for {
		g.mu.Lock()
		held, changed := g.held, g.changed
		g.mu.Unlock()
		if held >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("kubeproxy: wait for %d held requests (%d held): %w", n, held, ctx.Err())
		}
	}
}

// wait lets one mutating request through, or holds it until the gate opens
// or its client goes away; it reports whether the request may go on.
func (g *Gate) wait(r *http.Request) bool {
	g.mu.Lock()
	if !g.closed || g.pass > 0 {
		if g.closed {
			g.pass--
		}
		g.mu.Unlock()
		return true
	}
	release := g.release
	g.mu.Unlock()
	// The proxy has read the body already (bufferBody), so a client that
	// hangs up ends r's context while it is held.
	g.mu.Lock()
	g.addHeldLocked(1)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.addHeldLocked(-1)
		g.mu.Unlock()
	}()
	select {
	case <-release:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (g *Gate) addHeldLocked(d int) {
	g.held += d
	close(g.changed)
	g.changed = make(chan struct{})
}
