// Package patch is the CloudEvent function of nodebatch: it receives one
// node's event (a Pub/Sub messagePublished CloudEvent, as Eventarc or the
// local push deliverer sends it), runs the per-node path of functions/runner,
// and answers so that Pub/Sub redelivers only what is worth retrying. A
// second entry point takes the dead-letter subscription's messages and
// records their nodes failed, so a batch always finishes.
package patch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/events"
)

// attrDeliveryCount is the attribute Pub/Sub adds to a message it forwards
// to a dead-letter topic: how many deliveries failed.
const attrDeliveryCount = "CloudPubSubDeadLetterSourceDeliveryCount"

// Handler holds the patch function's dependencies.
type Handler struct {
	Runner *runner.Runner
	Logger *slog.Logger // default slog.Default()
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Patch handles one node event. It returns an error (a non-2xx answer, so
// the event is delivered again) only for transient failures; an event that
// can never succeed is logged and acknowledged.
func (h *Handler) Patch(ctx context.Context, e event.Event) error {
	n, msg, err := events.FromMessagePublished(e)
	if err != nil {
		h.logger().Error("drop undecodable event", "event_id", e.ID(), "message_id", msg.MessageID, "error", err)
		return nil
	}
	_, err = h.Runner.Run(ctx, n)
	return h.outcome(n, err)
}

// DeadLetter handles an event from the dead-letter subscription: its node
// had every delivery attempt fail, so it is recorded failed (unless some
// attempt did count it meanwhile) and the batch can still finish.
func (h *Handler) DeadLetter(ctx context.Context, e event.Event) error {
	n, msg, err := events.FromMessagePublished(e)
	if err != nil {
		h.logger().Error("drop undecodable dead letter", "event_id", e.ID(), "error", err)
		return nil
	}
	reason := "delivery attempts exhausted"
	if c := msg.Attributes[attrDeliveryCount]; c != "" {
		reason = fmt.Sprintf("delivery attempts exhausted: %s deliveries failed with transient errors", c)
	}
	_, err = h.Runner.Fail(ctx, n, reason)
	return h.outcome(n, err)
}

func (h *Handler) outcome(n events.Node, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, runner.ErrTransient):
		return err
	default:
		h.logger().Error("acknowledge event that cannot succeed", "batch_id", n.BatchID, "node", n.Node, "error", err)
		return nil
	}
}

// HTTPHandler serves fn as a CloudEvent function over HTTP (binary or
// structured mode), as functions-framework-go does, without its global
// registry: for tests and for a main that wants several routes.
func HTTPHandler(ctx context.Context, fn func(context.Context, event.Event) error) (http.Handler, error) {
	p, err := cloudevents.NewHTTP()
	if err != nil {
		return nil, fmt.Errorf("cloudevents http protocol: %w", err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(ctx, p, fn)
	if err != nil {
		return nil, fmt.Errorf("cloudevents receive handler: %w", err)
	}
	return h, nil
}

// Mux serves Patch at / and DeadLetter at /deadletter.
func (h *Handler) Mux(ctx context.Context) (*http.ServeMux, error) {
	patch, err := HTTPHandler(ctx, h.Patch)
	if err != nil {
		return nil, err
	}
	dead, err := HTTPHandler(ctx, h.DeadLetter)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/deadletter", dead)
	mux.Handle("/", patch)
	return mux, nil
}
