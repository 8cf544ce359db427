// Package events is the per-node CloudEvent of a batch
// (dev.nodebatch.node.patch.v1): how the batch function encodes it to a
// Pub/Sub message (CloudEvents Pub/Sub protocol binding, binary mode) and how
// the patch function decodes it back from the messagePublished CloudEvent
// that Eventarc (or our push deliverer) delivers. docs/design.md §4.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nodebatch/nodebatch/shared/change"
)

// Type is the CloudEvent type of a per-node patch event.
const Type = "dev.nodebatch.node.patch.v1"

// MessagePublishedType is the CloudEvent type Eventarc uses for a Pub/Sub
// message.
const MessagePublishedType = "google.cloud.pubsub.topic.v1.messagePublished"

// MaxDataBytes bounds the event data we accept when decoding.
const MaxDataBytes = 256 << 10

// Node is the data of one per-node event: which node, where it sits in the
// batch (lane and position within the lane, for exactly-once counting), and
// the change to apply.
type Node struct {
	BatchID  string     `json:"batch_id"`
	Attempt  int        `json:"attempt"`
	Node     string     `json:"node"`
	Lane     int        `json:"lane"`
	Position int        `json:"position"`
	LaneSize int        `json:"lane_size"`
	Lanes    int        `json:"lanes"`
	Total    int        `json:"total"`
	Changes  change.Set `json:"changes"`
	DryRun   bool       `json:"dry_run"`
	// Observed is the node as listed at submit time (nil: read it first).
	Observed *change.Observed `json:"observed,omitempty"`
}

// Validate checks the event's own consistency (not the change: the patch
// path validates that against the node). Batch ids and node names are DNS
// subdomains, which also makes them safe Firestore document ids.
func (n *Node) Validate() error {
	switch {
	case len(validation.IsDNS1123Subdomain(n.BatchID)) > 0:
		return fmt.Errorf("invalid batch_id %q", n.BatchID)
	case len(validation.IsDNS1123Subdomain(n.Node)) > 0:
		return fmt.Errorf("invalid node %q", n.Node)
	case n.Attempt < 1:
		return fmt.Errorf("invalid attempt %d", n.Attempt)
	case n.Lanes < 1 || n.Lane < 0 || n.Lane >= n.Lanes:
		return fmt.Errorf("invalid lane %d of %d", n.Lane, n.Lanes)
	case n.LaneSize < 1 || n.Position < 0 || n.Position >= n.LaneSize:
		return fmt.Errorf("invalid position %d of lane size %d", n.Position, n.LaneSize)
	case n.Total < n.LaneSize:
		return fmt.Errorf("invalid total %d", n.Total)
	}
	return nil
}

// ID is the event id: {batch_id}/a{attempt}/{node}.
func (n *Node) ID() string { return fmt.Sprintf("%s/a%d/%s", n.BatchID, n.Attempt, n.Node) }

// Source is the event source: //nodebatch/batches/{batch_id}.
func Source(batchID string) string { return "//nodebatch/batches/" + batchID }

// OrderingKey is the Pub/Sub ordering key of a lane: {batch_id}/{lane}. All
// of a lane's events share it, so Pub/Sub delivers them one at a time.
func OrderingKey(batchID string, lane int) string { return batchID + "/" + strconv.Itoa(lane) }

// New builds the CloudEvent of n, stamped with now.
func New(n Node, now time.Time) (event.Event, error) {
	e := event.New()
	e.SetID(n.ID())
	e.SetType(Type)
	e.SetSource(Source(n.BatchID))
	e.SetSubject(n.Node)
	e.SetTime(now)
	if err := e.SetData(event.ApplicationJSON, n); err != nil {
		return e, fmt.Errorf("encode event %s: %w", n.ID(), err)
	}
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("encode event %s: %w", n.ID(), err)
	}
	return e, nil
}

// Message encodes n as a Pub/Sub message in binary mode: CloudEvent
// attributes as "ce-" message attributes, data as the message data, and the
// lane's ordering key.
func Message(n Node, now time.Time) (*pubsub.Message, error) {
	e, err := New(n, now)
	if err != nil {
		return nil, err
	}
	return &pubsub.Message{
		Data: e.Data(),
		Attributes: map[string]string{
			"ce-specversion": e.SpecVersion(),
			"ce-type":        e.Type(),
			"ce-source":      e.Source(),
			"ce-id":          e.ID(),
			"ce-subject":     e.Subject(),
			"ce-time":        e.Time().UTC().Format(time.RFC3339Nano),
			"content-type":   event.ApplicationJSON,
		},
		OrderingKey: OrderingKey(n.BatchID, n.Lane),
	}, nil
}

// PubSubMessage is a Pub/Sub message as carried in MessagePublishedData.
type PubSubMessage struct {
	Data        []byte            `json:"data"`
	Attributes  map[string]string `json:"attributes"`
	MessageID   string            `json:"messageId"`
	PublishTime string            `json:"publishTime"`
	OrderingKey string            `json:"orderingKey"`
}

// MessagePublishedData is the data of a messagePublished CloudEvent.
type MessagePublishedData struct {
	Message      PubSubMessage `json:"message"`
	Subscription string        `json:"subscription"`
}

// ErrNotOurs marks a message that is well-formed Pub/Sub but not a nodebatch
// node event (wrong type or spec version): permanent, never retried.
var ErrNotOurs = errors.New("not a nodebatch node event")

// FromMessagePublished decodes the node event carried by a messagePublished
// CloudEvent, along with the Pub/Sub message around it.
func FromMessagePublished(e event.Event) (Node, PubSubMessage, error) {
	if e.Type() != MessagePublishedType {
		return Node{}, PubSubMessage{}, fmt.Errorf("decode event %s: type %q: %w", e.ID(), e.Type(), ErrNotOurs)
	}
	var d MessagePublishedData
	if err := json.Unmarshal(e.Data(), &d); err != nil {
		return Node{}, PubSubMessage{}, fmt.Errorf("decode event %s: message published data: %w", e.ID(), err)
	}
	n, err := FromMessage(d.Message.Data, d.Message.Attributes)
	if err != nil {
		return Node{}, d.Message, fmt.Errorf("decode event %s: %w", e.ID(), err)
	}
	return n, d.Message, nil
}

// FromMessage decodes a node event from a Pub/Sub message's data and
// attributes (binary mode).
func FromMessage(data []byte, attrs map[string]string) (Node, error) {
	if v := attrs["ce-specversion"]; v != event.CloudEventsVersionV1 {
		return Node{}, fmt.Errorf("specversion %q: %w", v, ErrNotOurs)
	}
	if t := attrs["ce-type"]; t != Type {
		return Node{}, fmt.Errorf("type %q: %w", t, ErrNotOurs)
	}
	if len(data) > MaxDataBytes {
		return Node{}, fmt.Errorf("node event data of %d bytes exceeds %d", len(data), MaxDataBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var n Node
	if err := dec.Decode(&n); err != nil {
		return Node{}, fmt.Errorf("node event data: %w", err)
	}
	if dec.More() {
		return Node{}, errors.New("node event data: trailing data after the JSON value")
	}
	if err := n.Validate(); err != nil {
		return Node{}, fmt.Errorf("node event data: %w", err)
	}
	if s := attrs["ce-subject"]; s != "" && s != n.Node {
		return Node{}, fmt.Errorf("node event: subject %q != node %q", s, n.Node)
	}
	return n, nil
}

// ToMessagePublished wraps a Pub/Sub message the way Eventarc does, for
// in-process delivery and tests.
func ToMessagePublished(m PubSubMessage, subscription string) (event.Event, error) {
	e := event.New()
	e.SetID(m.MessageID)
	e.SetType(MessagePublishedType)
	e.SetSource("//pubsub.googleapis.com/" + subscription)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, MessagePublishedData{Message: m, Subscription: subscription}); err != nil {
		return e, fmt.Errorf("wrap message %s: %w", m.MessageID, err)
	}
	return e, nil
}
