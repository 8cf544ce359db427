package events

import (
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel/trace"
)

func TestTraceContextRoundTrip(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	m := &pubsub.Message{Attributes: map[string]string{"ce-id": "x"}}
	InjectTrace(trace.ContextWithSpanContext(context.Background(), sc), m)
	if m.Attributes[AttrTraceParent] == "" {
		t.Fatalf("InjectTrace set no %s: %v", AttrTraceParent, m.Attributes)
	}
	got := TraceContext(m.Attributes)
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() {
		t.Errorf("TraceContext(InjectTrace(%v)) = %v", sc, got)
	}
	// Without a span nothing is added; garbage yields no context.
	m2 := &pubsub.Message{}
	InjectTrace(context.Background(), m2)
	if len(m2.Attributes) != 0 {
		t.Errorf("InjectTrace without a span added %v", m2.Attributes)
	}
	if TraceContext(map[string]string{AttrTraceParent: "00-zz"}).IsValid() {
		t.Error("TraceContext of a malformed traceparent is valid")
	}
}

// FuzzTraceContext: any attribute value decodes without a panic.
func FuzzTraceContext(f *testing.F) {
	f.Add("00-0102030000000000000000000000000-0405000000000000-01", "k=v")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, tp, ts string) {
		_ = TraceContext(map[string]string{AttrTraceParent: tp, AttrTraceState: ts})
	})
}
