package batch

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// attrBatch names the batch on spans (traces may; metrics may not).
const attrBatch = attribute.Key("nodebatch.batch.id")

// linkBatch starts a span (a retry of b, or a revert of it) that is a child
// of the request's span and linked to the trace of b's submit, as b's
// document recorded it; the node events it publishes carry its context.
func (h *Handler) linkBatch(ctx context.Context, name string, b *store.BatchDoc) (context.Context, trace.Span) {
	return h.Telemetry.StartLinked(ctx, name, telemetry.ParseTraceParent(b.TraceParent, ""), attrBatch.String(b.ID))
}

// started counts a batch attempt that starts now.
func (h *Handler) started(ctx context.Context, inline bool, kind string) {
	mode := telemetry.ModeFanOut
	if inline {
		mode = telemetry.ModeInline
	}
	h.Telemetry.Metrics().BatchStarted(ctx, mode, kind)
}
