// Package ticket issues single-use, short-lived tickets that stand in for a
// bearer token in a WebSocket URL: a browser cannot set an Authorization
// header on a WebSocket upgrade, and a long-lived token in a URL ends up in
// proxy and access logs. A ticket is useless once redeemed or expired.
//
// Tickets live in the memory of the relay instance that issued them, so a
// client must redeem its ticket on the same instance (one instance locally;
// on Cloud Run, session affinity, or the Sec-WebSocket-Protocol bearer form,
// which needs no shared state).
//
// The store is bounded twice: in all (max) and per key (perKey, the
// caller's identity), so one caller cannot fill the store and lock every
// other caller out.
package ticket

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultTTL is how long a ticket stays redeemable.
const DefaultTTL = 30 * time.Second

// Store holds issued tickets until they are redeemed or expire. Its zero
// value is not usable; call New.
type Store[P any] struct {
	ttl    time.Duration
	now    func() time.Time
	max    int
	perKey int

	mu      sync.Mutex
	tickets map[string]entry[P]
	byKey   map[string][]string // live ticket ids per key, oldest first
}

type entry[P any] struct {
	principal P
	key       string
	expires   time.Time
}

// New returns a store whose tickets live ttl (DefaultTTL if 0), holding at
// most max unredeemed tickets in all and perKey per key (0: no bound).
// Expired ones are swept when a bound is reached. now is the clock
// (time.Now if nil).
func New[P any](ttl time.Duration, max, perKey int, now func() time.Time) *Store[P] {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Store[P]{ttl: ttl, now: now, max: max, perKey: perKey, tickets: map[string]entry[P]{}, byKey: map[string][]string{}}
}

// ErrFull is returned by Issue when the store holds max live tickets.
var ErrFull = errors.New("ticket store full")

// ErrKeyFull is wrapped by Issue's *KeyFullError when the key holds perKey
// live tickets.
var ErrKeyFull = errors.New("too many unredeemed tickets for this caller")

// KeyFullError refuses a ticket to a key that holds perKey live tickets;
// RetryAfter is when its oldest one expires.
type KeyFullError struct {
	Max        int
	RetryAfter time.Duration
}

func (e *KeyFullError) Error() string {
	return fmt.Sprintf("%v (at most %d)", ErrKeyFull, e.Max)
}

// Unwrap makes errors.Is(err, ErrKeyFull) true.
func (e *KeyFullError) Unwrap() error { return ErrKeyFull }

// Issue returns a fresh ticket for p, issued to key, and when it expires.
func (s *Store[P]) Issue(key string, p P) (string, time.Time, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("issue ticket: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perKey > 0 && len(s.byKey[key]) >= s.perKey {
		s.sweepKey(key, now)
		if ids := s.byKey[key]; len(ids) >= s.perKey {
			return "", time.Time{}, fmt.Errorf("issue ticket: %w", &KeyFullError{Max: s.perKey, RetryAfter: s.tickets[ids[0]].expires.Sub(now)})
		}
	}
	if s.max > 0 && len(s.tickets) >= s.max {
		s.sweep(now)
		if len(s.tickets) >= s.max {
			return "", time.Time{}, fmt.Errorf("issue ticket: %w", ErrFull)
		}
	}
	exp := now.Add(s.ttl)
	s.tickets[id] = entry[P]{principal: p, key: key, expires: exp}
	s.byKey[key] = append(s.byKey[key], id)
	return id, exp, nil
}

// Redeem returns the principal a ticket was issued to and forgets the
// ticket; ok is false for an unknown, already redeemed or expired ticket.
func (s *Store[P]) Redeem(id string) (p P, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, found := s.tickets[id]
	if !found {
		return p, false
	}
	s.forget(id, e.key)
	if !now.Before(e.expires) {
		return p, false
	}
	return e.principal, true
}

// Len is the number of tickets held (for tests and health).
func (s *Store[P]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tickets)
}

// forget drops ticket id of key. s.mu must be held.
func (s *Store[P]) forget(id, key string) {
	delete(s.tickets, id)
	ids := slices.DeleteFunc(s.byKey[key], func(x string) bool { return x == id })
	if len(ids) == 0 {
		delete(s.byKey, key)
	} else {
		s.byKey[key] = ids
	}
}

// sweep forgets expired tickets. s.mu must be held.
func (s *Store[P]) sweep(now time.Time) {
	for id, e := range s.tickets {
		if !now.Before(e.expires) {
			s.forget(id, e.key)
		}
	}
}

// sweepKey forgets key's expired tickets (the oldest come first). s.mu
// must be held.
func (s *Store[P]) sweepKey(key string, now time.Time) {
	for ids := s.byKey[key]; len(ids) > 0 && !now.Before(s.tickets[ids[0]].expires); ids = s.byKey[key] {
		s.forget(ids[0], key)
	}
}
