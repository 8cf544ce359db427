package change

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKey(t *testing.T) {
	tests := []struct {
		s   string
		key Key
		ok  bool
	}{
		{"label:team", LabelKey("team"), true},
		{"label:example.com/team", LabelKey("example.com/team"), true},
		{"taint:gpu:NoSchedule", TaintKey("gpu", "NoSchedule"), true},
		{"taint:example.com/gpu:NoExecute", TaintKey("example.com/gpu", "NoExecute"), true},
		{"taint:gpu", TaintKey("gpu", ""), true},
		{"label:", Key{}, false},
		{"taint:", Key{}, false},
		{"taint:gpu:", Key{}, false},
		{"taint::NoSchedule", Key{}, false},
		{"annotation:x", Key{}, false},
		{"team", Key{}, false},
		{"", Key{}, false},
	}
	for _, tc := range tests {
		key, ok := ParseKey(tc.s)
		if ok != tc.ok {
			t.Errorf("ParseKey(%q) ok = %v, want %v", tc.s, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if diff := cmp.Diff(tc.key, key); diff != "" {
			t.Errorf("ParseKey(%q) (-want +got):\n%s", tc.s, diff)
		}
		if got := key.String(); got != tc.s {
			t.Errorf("ParseKey(%q).String() = %q, want %q", tc.s, got, tc.s)
		}
	}
}

// FuzzParseKey: whatever a stored result holds, ParseKey does not crash,
// and a key it accepts is written back exactly as it was read.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"label:team", "taint:gpu:NoSchedule", "taint:gpu", "taint:a:b:c", "label:", "taint::", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, ok := ParseKey(s)
		if ok && k.String() != s {
			t.Fatalf("ParseKey(%q) = %+v, whose String() is %q", s, k, k.String())
		}
	})
}
