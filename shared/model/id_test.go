package model

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"20261201t101010-0a1b2c3d4e", true},
		{"a_B-9", true},
		{strings.Repeat("a", MaxIDLen), true},
		{strings.Repeat("a", MaxIDLen+1), false},
		{"", false},
		{"a/b", false},
		{"a%2Fb", false},
		{"..", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
		// Firestore reserves document ids matching __.*__.
		{"__x__", false},
		{"____", false},
		{"__name__", false},
		{"___", true},
		{"__x", true},
		{"x__", true},
		{"_x__", true},
		{"__x_", true},
	} {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want it to wrap ErrInvalidID", tc.id, err)
		}
	}
}

func FuzzValidateID(f *testing.F) {
	f.Add("a/b")
	f.Add("ok-id")
	f.Add("__x__")
	f.Add("___")
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID(id) == nil && strings.ContainsAny(id, "/.\x00 ") {
			t.Fatalf("ValidateID(%q) accepted a path-unsafe id", id)
		}
		if ValidateID(id) == nil && regexp.MustCompile(`(?s)^__.*__$`).MatchString(id) {
			t.Fatalf("ValidateID(%q) accepted an id Firestore reserves", id)
		}
	})
}
