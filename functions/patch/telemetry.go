package patch

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/events"
)

// Span attributes of a node's patch span (traces may name nodes and
// batches; metrics may not).
const (
	attrBatch   = attribute.Key("nodebatch.batch.id")
	attrNode    = attribute.Key("nodebatch.node")
	attrAttempt = attribute.Key("nodebatch.attempt")
	attrLane    = attribute.Key("nodebatch.lane")
	attrMessage = attribute.Key("messaging.message.id")
)

// startNode starts the span of one node's event: a child of ctx's span
// (the push request's; on Cloud Run the platform's own request span), and
// linked to the batch's submit span that msg's ce-traceparent names. Its
// Kubernetes and Firestore calls are its children.
func (h *Handler) startNode(ctx context.Context, name string, n events.Node, msg events.PubSubMessage) (context.Context, trace.Span) {
	return h.Telemetry.StartLinked(ctx, name, events.TraceContext(msg.Attributes),
		attrBatch.String(n.BatchID), attrNode.String(n.Node), attrAttempt.Int(n.Attempt), attrLane.Int(n.Lane),
		attrMessage.String(msg.MessageID))
}

// endNode ends a node's span with err's status, and counts a transient
// answer (the event is delivered again).
func (h *Handler) endNode(ctx context.Context, span trace.Span, err error) {
	if errors.Is(err, runner.ErrTransient) {
		h.Telemetry.Metrics().Redelivery(ctx)
		span.SetStatus(codes.Error, err.Error())
	} else if err != nil {
		span.RecordError(err)
	}
	span.End()
}
