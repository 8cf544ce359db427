// Package patch is the CloudEvent function of nodebatch: it receives one
// node's event (a Pub/Sub messagePublished CloudEvent, as Eventarc or the
// local push deliverer sends it), runs the per-node path of functions/runner,
// and answers so that Pub/Sub redelivers only what is worth retrying. A
// second entry point takes the dead-letter subscription's messages and
// records their nodes failed, so a batch always finishes.
package patch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// attrDeliveryCount is the attribute Pub/Sub adds to a message it forwards
// to a dead-letter topic: how many deliveries failed.
const attrDeliveryCount = "CloudPubSubDeadLetterSourceDeliveryCount"

// Handler holds the patch function's dependencies.
type Handler struct {
	Runner *runner.Runner
	Logger *slog.Logger // default slog.Default()
	// Telemetry traces each node (linked to its batch's submit), counts
	// redeliveries and dead letters, and serves /metrics; nil: none.
	Telemetry *telemetry.Telemetry
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
	ctx, span := h.startNode(ctx, "patch node", n, msg)
	_, err = h.Runner.Run(ctx, n)
	h.endNode(ctx, span, err)
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
	h.Telemetry.Metrics().DeadLettered(ctx)
	ctx, span := h.startNode(ctx, "dead letter", n, msg)
	_, err = h.Runner.Fail(ctx, n, reason)
	h.endNode(ctx, span, err)
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

// maxPushBytes bounds one push request; Pub/Sub messages are at most 10 MB.
const maxPushBytes = 10 << 20

// HTTPHandler serves fn over HTTP for both shapes a push can take: a
// CloudEvent (binary or structured mode, as Eventarc and the local push
// deliverer send it) or Pub/Sub's plain push envelope (what a push
// subscription sends), which it turns into the messagePublished CloudEvent
// functions-framework-go would build. 2xx acknowledges; 5xx asks for a
// redelivery.
//
// It deliberately does not use the sdk's NewHTTPReceiveHandler (nor
// functions.CloudEvent, built on it): that pairs requests with consumers over
// one shared channel, and a request whose caller hung up can wedge a later
// one forever (cloudevents/sdk-go issue 1224; see emulators/e2e
// TestPatchHandlerSurvivesCancelledRequests).
func HTTPHandler(_ context.Context, fn func(context.Context, event.Event) error) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a CloudEvent or a Pub/Sub push envelope", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxPushBytes)
		e, err := decodePush(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := fn(r.Context(), *e); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}), nil
}

// decodePush reads a CloudEvent, or a push envelope as a messagePublished
// CloudEvent.
func decodePush(r *http.Request) (*event.Event, error) {
	if r.Header.Get("ce-specversion") != "" || strings.HasPrefix(r.Header.Get("Content-Type"), "application/cloudevents") {
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			return nil, fmt.Errorf("decode CloudEvent: %w", err)
		}
		return e, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("read push envelope: %w", err)
	}
	var env events.MessagePublishedData
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode push envelope: %w", err)
	}
	e := event.New()
	e.SetID(env.Message.MessageID)
	e.SetType(events.MessagePublishedType)
	e.SetSource("//pubsub.googleapis.com/" + env.Subscription) // the envelope names no topic
	if err := e.SetData(event.ApplicationJSON, json.RawMessage(body)); err != nil {
		return nil, fmt.Errorf("wrap push envelope: %w", err)
	}
	return &e, nil
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
	mux.Handle("/deadletter", h.Telemetry.Handler(dead, "dead letter"))
	mux.Handle("/", h.Telemetry.Handler(patch, "patch")) // and GET /metrics
	return mux, nil
}
