package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Start starts a span of nodebatch's tracer as a child of ctx's span.
func (t *Telemetry) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Tracing() {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span: ending it ends nothing
	}
	return t.Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// StartLinked starts a span that is a child of ctx's span (on Cloud Run:
// the platform's request span) and is linked to batch, the span context of
// a batch's submit (not its child: a 10,000-node batch would make one
// unreadable trace). An invalid batch adds no link. BatchSampler samples it
// as the batch was sampled.
func (t *Telemetry) StartLinked(ctx context.Context, name string, batch trace.SpanContext, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Tracing() {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span: ending it ends nothing
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if batch.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: batch, Attributes: []attribute.KeyValue{LinkKey.String(LinkBatch)}}))
	}
	return t.Tracer().Start(ctx, name, opts...)
}

// TraceParent is the W3C traceparent of ctx's span ("" when there is
// none): what a batch document records so that retries and reverts link to
// the batch's trace.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// ParseTraceParent is the span context a W3C traceparent (and tracestate)
// names; invalid when it names none.
func ParseTraceParent(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
}

// End ends span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
