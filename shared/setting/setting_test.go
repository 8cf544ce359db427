package setting

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestInt(t *testing.T) {
	tests := []struct {
		val     string
		want    int
		wantErr bool
	}{
		{"", 7, false},
		{"0", 0, false},
		{"12", 12, false},
		{"-1", 0, true},
		{"many", 0, true},
	}
	for _, tt := range tests {
		got, err := Int(env(map[string]string{"N": tt.val}), "N", 7, 0)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("Int(N=%q) = %d, %v; want %d, error %v", tt.val, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "N=") {
			t.Errorf("Int(N=%q) error %q does not name the setting", tt.val, err)
		}
	}
}

func TestBool(t *testing.T) {
	tests := []struct {
		val     string
		want    bool
		wantErr bool
	}{
		{"", true, false},
		{"false", false, false},
		{"1", true, false},
		{"yes", false, true},
	}
	for _, tt := range tests {
		got, err := Bool(env(map[string]string{"B": tt.val}), "B", true)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("Bool(B=%q) = %v, %v; want %v, error %v", tt.val, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStringAndList(t *testing.T) {
	e := env(map[string]string{"S": "x", "L": " a, ,b ,"})
	if got := String(e, "S", "d"); got != "x" {
		t.Errorf("String(S) = %q, want x", got)
	}
	if got := String(e, "unset", "d"); got != "d" {
		t.Errorf("String(unset) = %q, want d", got)
	}
	if diff := cmp.Diff([]string{"a", "b"}, List(e, "L")); diff != "" {
		t.Errorf("List(L) (-want +got):\n%s", diff)
	}
	if got := List(e, "unset"); got != nil {
		t.Errorf("List(unset) = %q, want nil", got)
	}
}
