package store

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestIdempotencyID: owners containing '|' do not collide with other
// owners, and owners without one keep the ids recorded before.
func TestIdempotencyID(t *testing.T) {
	pairs := [][2]string{
		{"a", "b|c"}, {"a|b", "c"}, {"a|b|", "c"}, {"a", "|b|c"},
		{"|1|a", "b"}, {"", "|1|a|b"}, {"", "a|b"}, {"a", ""}, {"", "a"},
		{"1|a", "b"}, {"|", ""}, {"", "|"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id := IdempotencyID(p[0], p[1])
		if other, ok := seen[id]; ok {
			t.Errorf("IdempotencyID%q = IdempotencyID%q = %s", p, other, id)
		}
		seen[id] = p
	}
	// Recorded before owners with '|' were told apart: the same id.
	sum := sha256.Sum256([]byte("alice@example.com|nightly-2026-11-27"))
	if got, want := IdempotencyID("alice@example.com", "nightly-2026-11-27"), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("IdempotencyID(alice@example.com, nightly-2026-11-27) = %s, want %s (the id keys were recorded under)", got, want)
	}
}

// FuzzIdempotencyInput: two different (owner, key) pairs never encode
// alike, so they never share an idempotency document.
func FuzzIdempotencyInput(f *testing.F) {
	f.Add("a", "b|c", "a|b", "c")
	f.Add("|1|a", "b", "", "|1|a|b")
	f.Add("x", "y", "x", "y")
	f.Fuzz(func(t *testing.T, o1, k1, o2, k2 string) {
		if o1 == o2 && k1 == k2 {
			return
		}
		if idempotencyInput(o1, k1) == idempotencyInput(o2, k2) {
			t.Fatalf("(%q, %q) and (%q, %q) both encode as %q", o1, k1, o2, k2, idempotencyInput(o1, k1))
		}
	})
}
