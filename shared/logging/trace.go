package logging

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Keys Cloud Logging reads to show a log line under its trace.
const (
	TraceKey   = "logging.googleapis.com/trace"
	SpanIDKey  = "logging.googleapis.com/spanId"
	SampledKey = "logging.googleapis.com/trace_sampled"
)

// TraceHandler adds the trace of the record's context to every record:
// logging.googleapis.com/trace as projects/PROJECT/traces/TRACE_ID (just
// the trace id when project is ""), logging.googleapis.com/spanId and
// logging.googleapis.com/trace_sampled. A record logged without a context,
// or outside a span, is passed on unchanged.
type TraceHandler struct {
	slog.Handler
	project string
}

// WithTrace wraps h so its records carry their span (TraceHandler).
func WithTrace(h slog.Handler, project string) *TraceHandler {
	return &TraceHandler{Handler: h, project: project}
}

// Handle adds the trace fields of ctx's span to r.
func (h *TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		tr := sc.TraceID().String()
		if h.project != "" {
			tr = "projects/" + h.project + "/traces/" + tr
		}
		r = r.Clone()
		r.AddAttrs(slog.String(TraceKey, tr), slog.String(SpanIDKey, sc.SpanID().String()), slog.Bool(SampledKey, sc.IsSampled()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the trace handler around the handler with attrs.
func (h *TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &TraceHandler{Handler: h.Handler.WithAttrs(attrs), project: h.project}
}

// WithGroup keeps the trace handler around the handler with a group.
// Records' trace fields then sit inside the group: log them at the top
// level (no group) for Cloud Logging to read them.
func (h *TraceHandler) WithGroup(name string) slog.Handler {
	return &TraceHandler{Handler: h.Handler.WithGroup(name), project: h.project}
}

// Traced returns logger with its records carrying their span.
func Traced(logger *slog.Logger, project string) *slog.Logger {
	if _, ok := logger.Handler().(*TraceHandler); ok {
		return logger
	}
	return slog.New(WithTrace(logger.Handler(), project))
}
