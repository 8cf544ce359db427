// Package ticket issues single-use, short-lived tickets that stand in for a
// bearer token in a WebSocket URL: a browser cannot set an Authorization
// header on a WebSocket upgrade, and a long-lived token in a URL ends up in
// proxy and access logs. A ticket is useless once redeemed or expired.
//
// Tickets live in the memory of the relay instance that issued them, so a
// client must redeem its ticket on the same instance (one instance locally;
// on Cloud Run, session affinity, or the Sec-WebSocket-Protocol bearer form,
// which needs no shared state).
package ticket

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// DefaultTTL is how long a ticket stays redeemable.
const DefaultTTL = 30 * time.Second

// Store holds issued tickets until they are redeemed or expire. Its zero
// value is not usable; call New.
type Store[P any] struct {
	ttl time.Duration
	now func() time.Time
	max int

	mu      sync.Mutex
	tickets map[string]entry[P]
}

type entry[P any] struct {
	principal P
	expires   time.Time
}

// New returns a store whose tickets live ttl (DefaultTTL if 0), holding at
// most max unredeemed tickets (expired ones are swept when it is full).
// now is the clock (time.Now if nil).
func New[P any](ttl time.Duration, max int, now func() time.Time) *Store[P] {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Store[P]{ttl: ttl, now: now, max: max, tickets: map[string]entry[P]{}}
}

// ErrFull is returned by Issue when the store holds max live tickets.
var ErrFull = fmt.Errorf("ticket store full")

// Issue returns a fresh ticket for p and when it expires.
func (s *Store[P]) Issue(p P) (string, time.Time, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("issue ticket: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && len(s.tickets) >= s.max {
		s.sweep(now)
		if len(s.tickets) >= s.max {
			return "", time.Time{}, fmt.Errorf("issue ticket: %w", ErrFull)
		}
	}
	exp := now.Add(s.ttl)
	s.tickets[id] = entry[P]{principal: p, expires: exp}
	return id, exp, nil
}

// Redeem returns the principal a ticket was issued to and forgets the
// ticket; ok is false for an unknown, already redeemed or expired ticket.
func (s *Store[P]) Redeem(id string) (p P, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, found := s.tickets[id]
	delete(s.tickets, id)
	if !found || !now.Before(e.expires) {
		return p, false
	}
	return e.principal, true
}

// sweep forgets expired tickets. s.mu must be held.
func (s *Store[P]) sweep(now time.Time) {
	for id, e := range s.tickets {
		if !now.Before(e.expires) {
			delete(s.tickets, id)
		}
	}
}
