package request

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	a499 := strings.Repeat("a", 499)
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 5, ""},
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{a499 + "é", 500, a499},       // é is 2 bytes: cutting at 500 would split it
		{a499 + "é", 501, a499 + "é"}, // fits exactly
		{"日本語", 4, "日"},               // 3-byte runes
		{"日本語", 6, "日本"},
		{"🙂🙂", 7, "🙂"},         // a 4-byte rune
		{"a\xffb", 2, "a\xff"}, // invalid bytes are not ours to fix
	}
	for _, tt := range tests {
		if got := Truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// FuzzTruncate: the result is a prefix of s, at most n bytes, and valid
// UTF-8 whenever s is.
func FuzzTruncate(f *testing.F) {
	f.Add(strings.Repeat("a", 499)+"é", 500)
	f.Add("日本語", 4)
	f.Add("🙂", 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := Truncate(s, n)
		if !strings.HasPrefix(s, got) || len(got) > max(n, 0) && len(got) != len(s) {
			t.Fatalf("Truncate(%q, %d) = %q: not a prefix of at most n bytes", s, n, got)
		}
		if len(s) > max(n, 0) && len(got) > max(n, 0) {
			t.Fatalf("Truncate(%q, %d) = %q: longer than n", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Truncate(%q, %d) = %q: split a character", s, n, got)
		}
		if len(s) > n && n >= 0 && len(got) < n-utf8.UTFMax+1 {
			t.Fatalf("Truncate(%q, %d) = %q: cut more than one character", s, n, got)
		}
	})
}
