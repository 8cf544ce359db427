package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/relay/watch"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/progress"
)

// conn is one client connection: its principal, its subscriptions and its
// outbox. readPump runs in the upgrade handler's goroutine, writePump in its
// own; they are the only goroutines touching the socket (besides
// WriteControl, which gorilla allows from anywhere).
type conn struct {
	s   *Server
	ws  *websocket.Conn
	p   auth.Principal
	log *slog.Logger
	out *outbox

	done      chan struct{} // closed when readPump ends
	closeOnce sync.Once
	closeReq  chan closeFrame // the write pump sends it and ends

	mu        sync.Mutex
	subs      map[string]*sub
	allCancel func() // owner feed of subscribe_all, if any
	ended     bool
}

type closeFrame struct {
	code int
	text string
}

func newConn(s *Server, ws *websocket.Conn, p auth.Principal) *conn {
	return &conn{
		s: s, ws: ws, p: p,
		log:      s.log.With("subject", p.Subject),
		out:      newOutbox(s.cfg.MaxQueued),
		done:     make(chan struct{}),
		closeReq: make(chan closeFrame, 1),
		subs:     map[string]*sub{},
	}
}

// closeWith asks the write pump to send a close frame and end.
func (c *conn) closeWith(code int, text string) {
	c.closeOnce.Do(func() { c.closeReq <- closeFrame{code, text} })
}

// readPump reads client messages until the connection ends, then releases
// every subscription.
func (c *conn) readPump() {
	defer c.end()
	c.ws.SetReadLimit(c.s.cfg.MaxMessageBytes)
	_ = c.ws.SetReadDeadline(c.s.cfg.Now().Add(c.s.cfg.PongTimeout))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(c.s.cfg.Now().Add(c.s.cfg.PongTimeout))
	})
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.log.Warn("client message too large; closing")
			}
			return
		}
		_ = c.ws.SetReadDeadline(c.s.cfg.Now().Add(c.s.cfg.PongTimeout))
		m, err := decodeClientMessage(data)
		if err != nil {
			c.out.push(watch.Update{Message: progress.Refusal("", err.Error(), c.s.cfg.Now())})
			continue
		}
		c.handle(m)
	}
}

// end releases the connection's subscriptions and unregisters it.
func (c *conn) end() {
	close(c.done)
	c.mu.Lock()
	c.ended = true
	subs := c.subs
	c.subs = map[string]*sub{}
	all := c.allCancel
	c.allCancel = nil
	c.mu.Unlock()
	for _, s := range subs {
		s.cancel()
	}
	if all != nil {
		all()
	}
	c.ws.Close()
	c.s.unregister(c)
}

// handle acts on one valid client message. Authorization is per
// subscription: the batch's owner is checked when its document is read.
func (c *conn) handle(m clientMessage) {
	now := c.s.cfg.Now()
	if !c.p.Expiry.IsZero() && !now.Before(c.p.Expiry) {
		c.out.pushFinal(watch.Update{Message: progress.Refusal(m.TaskID, "token expired; reconnect with a fresh token", now)})
		c.closeWith(websocket.ClosePolicyViolation, "token expired")
		return
	}
	switch m.Type {
	case msgSubscribe:
		c.subscribe(m.TaskID, false)
	case msgUnsubscribe:
		c.unsubscribe(m.TaskID)
	case msgSubscribeAll:
		c.subscribeAll(m.AllUsers)
	}
}

func (c *conn) subscribe(id string, auto bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if s, ok := c.subs[id]; ok {
		if !auto { // an explicit subscribe keeps it after the end
			s.auto.Store(false)
		}
		return
	}
	if !auto && c.explicitSubs() >= c.s.cfg.MaxSubscriptions {
		c.out.pushFinal(watch.Update{Message: progress.Refusal(id, "too many subscriptions on this connection", c.s.cfg.Now())})
		return
	}
	s := &sub{c: c, id: id}
	s.auto.Store(auto)
	cancel, err := c.s.reg.Subscribe(id, c.p.CanSee, s)
	if err != nil { // ids are checked at every entry point; this is the backstop
		c.log.Error("subscribe refused", "error", err)
		c.out.pushFinal(watch.Update{Message: progress.Refusal("", "bad message: task_id "+taskIDReason(id), c.s.cfg.Now())})
		return
	}
	s.cancel = cancel
	c.subs[id] = s
}

func (c *conn) explicitSubs() int {
	n := 0
	for _, s := range c.subs {
		if !s.auto.Load() {
			n++
		}
	}
	return n
}

func (c *conn) unsubscribe(id string) {
	c.mu.Lock()
	s := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if s != nil {
		s.cancel()
		c.out.forget(id)
	}
}

// drop ends s if it is still the connection's subscription to its batch.
func (c *conn) drop(s *sub) {
	c.mu.Lock()
	if c.subs[s.id] != s {
		c.mu.Unlock()
		return
	}
	delete(c.subs, s.id)
	c.mu.Unlock()
	s.cancel()
}

// subscribeAll follows every active batch of the caller (all users' for an
// admin asking so), replacing an earlier subscribe_all.
func (c *conn) subscribeAll(allUsers bool) {
	if allUsers && !c.p.Admin {
		c.out.pushFinal(watch.Update{Message: progress.Refusal("", "all_users requires the admin role", c.s.cfg.Now())})
		return
	}
	if c.p.Subject == "" {
		c.out.pushFinal(watch.Update{Message: progress.Refusal("", "no subject in token", c.s.cfg.Now())})
		return
	}
	owner := c.p.Subject
	if allUsers {
		owner = watch.AllOwners
	}
	c.mu.Lock()
	old := c.allCancel
	c.allCancel = nil
	ended := c.ended
	c.mu.Unlock()
	if old != nil {
		old()
	}
	if ended {
		return
	}
	cancel := c.s.reg.SubscribeOwner(owner, ownerSink{c})
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		cancel()
		return
	}
	c.allCancel = cancel
	c.mu.Unlock()
}

// ownerSink turns "batch became active" into an automatic subscription.
type ownerSink struct{ c *conn }

// Active subscribes the connection to a batch of the feed.
func (o ownerSink) Active(id string) { o.c.subscribe(id, true) }

// sub is one subscription of a connection to a batch.
type sub struct {
	c  *conn
	id string
	// auto: from subscribe_all, ends by itself with the batch. Atomic:
	// Deliver reads it under the watcher's lock, not c.mu.
	auto   atomic.Bool
	cancel func()
}

// Deliver queues u for the client. It runs under the watcher's lock, so it
// only touches the outbox; ending the subscription happens elsewhere.
func (s *sub) Deliver(u watch.Update) {
	m := &u.Message
	refused := m.Type == progress.TypeError && m.State == ""
	if refused || m.Final() {
		s.c.out.pushFinal(u)
	} else {
		s.c.out.push(u)
	}
	if refused || (m.Final() && s.auto.Load()) {
		go s.c.drop(s)
	}
}

// writePump writes the outbox, pings, and the close frame; it is the only
// writer of data frames.
func (c *conn) writePump() {
	// Ping at half the pong timeout: a pong then has half of it to come
	// back. At 9/10 (gorilla's example) it had 6 s of 60, and on a loaded
	// machine (deliveries taking up to 12 s in TestManyClients) live
	// clients were dropped as dead, never seeing the 1012 of a restart.
	ping := time.NewTicker(c.s.cfg.PongTimeout / 2)
	defer ping.Stop()
	var expired <-chan time.Time // the token's end ends the connection
	if !c.p.Expiry.IsZero() {
		t := time.NewTimer(c.p.Expiry.Sub(c.s.cfg.Now()))
		defer t.Stop()
		expired = t.C
	}
	defer c.ws.Close() // unblocks readPump if the write side failed

	var msgs []watch.Update // reused between wake-ups
	for {
		select {
		case <-c.out.notify:
			var overflow bool
			msgs, overflow = c.out.take(msgs)
			for i, u := range msgs {
				if err := c.write(u); err != nil {
					c.log.Info("write failed; closing", "error", err)
					return
				}
				c.sent(u)
				msgs[i] = watch.Update{} // hold no message longer than needed
			}
			if overflow {
				c.log.Warn("client too slow: final-message queue full; closing so it resubscribes")
				c.s.cfg.Telemetry.Metrics().SlowClientClose(context.Background())
				c.writeClose(websocket.CloseTryAgainLater, "too slow; reconnect")
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, c.s.cfg.Now().Add(c.s.cfg.WriteTimeout)); err != nil {
				return
			}
		case <-expired:
			c.writeClose(websocket.ClosePolicyViolation, "token expired")
			return
		case f := <-c.closeReq:
			c.writeClose(f.code, f.text)
			// Give the client a moment to answer the close, then drop it.
			select {
			case <-c.done:
			case <-time.After(c.s.cfg.WriteTimeout):
			}
			return
		case <-c.done:
			return
		}
	}
}

// write sends one message: its shared frame, or, for a message of this
// client alone, its own encoding.
func (c *conn) write(u watch.Update) error {
	_ = c.ws.SetWriteDeadline(c.s.cfg.Now().Add(c.s.cfg.WriteTimeout))
	if u.Frame != nil {
		return c.ws.WritePreparedMessage(u.Frame)
	}
	return c.ws.WriteJSON(u.Message)
}

func (c *conn) writeClose(code int, text string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), c.s.cfg.Now().Add(c.s.cfg.WriteTimeout))
}
