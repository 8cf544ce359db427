package events

import (
	"context"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The CloudEvents distributed-tracing extension (traceparent, tracestate)
// as Pub/Sub message attributes in binary mode: every CloudEvent attribute
// is a "ce-" attribute.
const (
	AttrTraceParent = "ce-traceparent"
	AttrTraceState  = "ce-tracestate"
)

// ceCarrier maps the W3C propagator's keys onto "ce-" attributes.
type ceCarrier map[string]string

func (c ceCarrier) Get(key string) string { return c["ce-"+key] }
func (c ceCarrier) Set(key, value string) { c["ce-"+key] = value }
func (c ceCarrier) Keys() []string        { return []string{"traceparent", "tracestate"} }

// InjectTrace stamps m with the W3C trace context of ctx's span (the
// batch's submit), so the patch function can link each node's span to it.
// Without a valid span it adds nothing.
func InjectTrace(ctx context.Context, m *pubsub.Message) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if m.Attributes == nil {
		m.Attributes = map[string]string{}
	}
	propagation.TraceContext{}.Inject(ctx, ceCarrier(m.Attributes))
}

// TraceContext is the span context a node event's attributes carry (the
// batch's submit span); invalid when they carry none or a malformed one.
func TraceContext(attrs map[string]string) trace.SpanContext {
	if attrs[AttrTraceParent] == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), ceCarrier(attrs)))
}
