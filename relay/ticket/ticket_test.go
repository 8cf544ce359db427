package ticket

import (
	"errors"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRedeem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		advance time.Duration
		twice   bool
		id      string // redeem this instead of the issued ticket
		wantOK  bool
	}{
		{name: "fresh ticket works", wantOK: true},
		{name: "just before expiry", advance: DefaultTTL - time.Nanosecond, wantOK: true},
		{name: "expired", advance: DefaultTTL},
		{name: "second redeem refused", twice: true},
		{name: "unknown ticket", id: "not-a-ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			s := New[string](0, 10, 0, c.now)
			id, exp, err := s.Issue("k", "alice")
			if err != nil {
				t.Fatalf("Issue() error = %v", err)
			}
			if want := c.t.Add(DefaultTTL); !exp.Equal(want) {
				t.Errorf("Issue() expires = %v, want %v", exp, want)
			}
			c.t = c.t.Add(tt.advance)
			if tt.id != "" {
				id = tt.id
			}
			if tt.twice {
				if _, ok := s.Redeem(id); !ok {
					t.Fatalf("first Redeem() ok = false, want true")
				}
			}
			p, ok := s.Redeem(id)
			if ok != tt.wantOK {
				t.Fatalf("Redeem() ok = %v, want %v", ok, tt.wantOK)
			}
			if ok && p != "alice" {
				t.Errorf("Redeem() = %q, want %q", p, "alice")
			}
		})
	}
}

func TestIssueFull(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	s := New[string](time.Second, 2, 0, c.now)
	for range 2 {
		if _, _, err := s.Issue("k", "a"); err != nil {
			t.Fatalf("Issue() error = %v", err)
		}
	}
	if _, _, err := s.Issue("k", "a"); !errors.Is(err, ErrFull) {
		t.Fatalf("Issue() on a full store error = %v, want ErrFull", err)
	}
	c.t = c.t.Add(time.Second) // both expire; the sweep makes room
	if _, _, err := s.Issue("k", "a"); err != nil {
		t.Fatalf("Issue() after expiry error = %v", err)
	}
}

func TestTicketsDiffer(t *testing.T) {
	t.Parallel()
	s := New[int](0, 0, 0, nil)
	a, _, _ := s.Issue("k", 1)
	b, _, _ := s.Issue("k", 2)
	if a == b || len(a) < 40 {
		t.Errorf("Issue() gave %q and %q, want two distinct 256-bit tickets", a, b)
	}
}

// TestIssuePerKey: one key cannot hold more than perKey live tickets (one
// user filling the store locked everyone out); others still get theirs; a
// refusal says when the key's oldest ticket expires; redeeming or expiry
// makes room.
func TestIssuePerKey(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	s := New[string](10*time.Second, 100, 2, c.now)
	first, _, err := s.Issue("mallory", "m")
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(3 * time.Second)
	if _, _, err := s.Issue("mallory", "m"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Issue("mallory", "m")
	var kf *KeyFullError
	if !errors.As(err, &kf) || !errors.Is(err, ErrKeyFull) {
		t.Fatalf("third Issue() for one key error = %v, want a KeyFullError", err)
	}
	if want := 7 * time.Second; kf.RetryAfter != want || kf.Max != 2 {
		t.Errorf("KeyFullError = %+v, want RetryAfter %v (the oldest expires then), Max 2", kf, want)
	}
	if _, _, err := s.Issue("alice", "a"); err != nil {
		t.Errorf("Issue() for another key error = %v, want a ticket", err)
	}
	if _, ok := s.Redeem(first); !ok {
		t.Fatal("Redeem(first) ok = false")
	}
	if _, _, err := s.Issue("mallory", "m"); err != nil {
		t.Errorf("Issue() after a redeem error = %v, want a ticket", err)
	}
	c.t = c.t.Add(10 * time.Second) // all of mallory's expire
	for i := range 2 {
		if _, _, err := s.Issue("mallory", "m"); err != nil {
			t.Errorf("Issue() %d after expiry error = %v, want a ticket", i, err)
		}
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() = %d, want 3 (alice's and mallory's two new ones)", got)
	}
}
