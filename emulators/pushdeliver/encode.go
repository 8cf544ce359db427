package pushdeliver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// Format selects what a push request looks like on the wire.
type Format int

const (
	// FormatCloudEvent is what Eventarc sends to a Cloud Run function: a
	// binary-mode CloudEvent google.cloud.pubsub.topic.v1.messagePublished
	// whose body is MessagePublishedData.
	FormatCloudEvent Format = iota
	// FormatPushEnvelope is the plain Pub/Sub push body ({"message":…,
	// "subscription":…}) with no CloudEvent headers. functions-framework-go
	// turns it into the same CloudEvent when posted to /projects/P/topics/T.
	FormatPushEnvelope
)

// String returns the flag spelling of f.
func (f Format) String() string {
	switch f {
	case FormatCloudEvent:
		return "cloudevent"
	case FormatPushEnvelope:
		return "push"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat is the inverse of Format.String.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "cloudevent":
		return FormatCloudEvent, nil
	case "push":
		return FormatPushEnvelope, nil
	}
	return 0, fmt.Errorf("parse push format %q: want cloudevent or push", s)
}

// MessagePublishedEventType is the CloudEvent type Eventarc uses for a
// Pub/Sub message.
const MessagePublishedEventType = "google.cloud.pubsub.topic.v1.messagePublished"

// PubsubMessage is a Pub/Sub message as JSON in push and Eventarc bodies.
// Data is base64 in JSON, as encoding/json does for []byte.
type PubsubMessage struct {
	Data        []byte            `json:"data,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId"`
	PublishTime string            `json:"publishTime"`
	OrderingKey string            `json:"orderingKey,omitempty"`
}

// MessagePublishedData is the body of a messagePublished CloudEvent.
type MessagePublishedData struct {
	Message      PubsubMessage `json:"message"`
	Subscription string        `json:"subscription"`
}

// pushEnvelope is the plain push body; the cloud sends both the camelCase
// and the snake_case spellings of the id and time, so we do too.
type pushEnvelope struct {
	Message struct {
		PubsubMessage
		MessageIDSnake   string `json:"message_id"`
		PublishTimeSnake string `json:"publish_time"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt,omitempty"`
}

// formatTime renders a publish time the way Pub/Sub does (RFC 3339, UTC).
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// target names what a request is about: the subscription and its topic,
// both fully qualified.
type target struct {
	endpoint     string
	topic        string // projects/P/topics/T
	subscription string // projects/P/subscriptions/S
}

// newRequest builds one push request for m. attempt counts from 1.
func newRequest(ctx context.Context, f Format, tg target, m *pubsub.Message, attempt int) (*http.Request, error) {
	msg := PubsubMessage{
		Data:        m.Data,
		Attributes:  m.Attributes,
		MessageID:   m.ID,
		PublishTime: formatTime(m.PublishTime),
		OrderingKey: m.OrderingKey,
	}
	var body any
	switch f {
	case FormatCloudEvent:
		body = MessagePublishedData{Message: msg, Subscription: tg.subscription}
	case FormatPushEnvelope:
		var env pushEnvelope
		env.Message.PubsubMessage = msg
		env.Message.MessageIDSnake = msg.MessageID
		env.Message.PublishTimeSnake = msg.PublishTime
		env.Subscription = tg.subscription
		env.DeliveryAttempt = attempt
		body = env
	default:
		return nil, fmt.Errorf("build push request: unknown format %v", f)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode push body for message %s: %w", m.ID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.endpoint, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("build push request to %s: %w", tg.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if f == FormatCloudEvent {
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Type", MessagePublishedEventType)
		req.Header.Set("Ce-Source", "//pubsub.googleapis.com/"+tg.topic)
		req.Header.Set("Ce-Id", m.ID)
		req.Header.Set("Ce-Time", msg.PublishTime)
	}
	return req, nil
}
