package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("GOOGLE_CLOUD_PROJECT", "")
	t.Setenv("PUBSUB_EMULATOR_HOST", "")
	base := []string{"-project", "p", "-subscription", "s", "-endpoint", "http://127.0.0.1:8082/"}
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"minimal", base, false},
		{"missing all", nil, true},
		{"missing endpoint", []string{"-project", "p", "-subscription", "s"}, true},
		{"bad format", append(base[:6:6], "-format", "binary"), true},
		{"push format", append(base[:6:6], "-format", "push"), false},
		{"ensure without topic", append(base[:6:6], "-ensure"), true},
		{"both tokens", append(base[:6:6], "-bearer-token", "x", "-bearer-token-file", "f"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseFlags(%q) error = %v, want error %t", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestTokenFileIsReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"-project", "p", "-subscription", "s", "-endpoint", "http://x/", "-bearer-token-file", path})
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	for _, want := range []string{"one", "two"} {
		if err := os.WriteFile(path, []byte(want+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := o.cfg.Token(context.Background())
		if err != nil || got != want {
			t.Errorf("Token() = %q, %v, want %q", got, err, want)
		}
	}
}
