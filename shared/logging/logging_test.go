package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewWritesCloudLoggingKeys(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want []map[string]any
	}{
		{"info", func(l *slog.Logger) { l.Info("hello", "batch_id", "b1") }, []map[string]any{{"severity": "INFO", "message": "hello", "batch_id": "b1"}}},
		{"warn is WARNING", func(l *slog.Logger) { l.Warn("careful") }, []map[string]any{{"severity": "WARNING", "message": "careful"}}},
		{"groups keep their keys", func(l *slog.Logger) { l.WithGroup("g").Info("m", "level", "x") }, []map[string]any{{"severity": "INFO", "message": "m", "g": map[string]any{"level": "x"}}}},
		{"below level dropped", func(l *slog.Logger) { l.Debug("quiet") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(New(&buf, slog.LevelInfo))
			var got []map[string]any
			dec := json.NewDecoder(&buf)
			for dec.More() {
				var m map[string]any
				if err := dec.Decode(&m); err != nil {
					t.Fatal(err)
				}
				delete(m, "time")
				got = append(got, m)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError, "nonsense": slog.LevelInfo} {
		if got := ParseLevel(in); got != want {
			t.Errorf("ParseLevel(%q) = %v, want %v", in, got, want)
		}
	}
}
