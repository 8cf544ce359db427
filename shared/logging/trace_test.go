package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"
)

func TestTraced(t *testing.T) {
	var buf bytes.Buffer
	log := Traced(New(&buf, slog.LevelInfo), "proj").With("batch_id", "b1")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab}, SpanID: trace.SpanID{0xcd}, TraceFlags: trace.FlagsSampled})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "batch created")
	log.Info("no span")
	dec := json.NewDecoder(&buf)
	var with, without map[string]any
	if err := dec.Decode(&with); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&without); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{TraceKey: "projects/proj/traces/" + sc.TraceID().String(), SpanIDKey: sc.SpanID().String(), SampledKey: true, "batch_id": "b1", "message": "batch created"}
	got := map[string]any{}
	for k := range want {
		got[k] = with[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("traced line (-want +got):\n%s", diff)
	}
	if _, ok := without[TraceKey]; ok {
		t.Errorf("line without a span has %s: %v", TraceKey, without)
	}
}
