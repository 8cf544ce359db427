package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// FuzzFromMessagePublished feeds arbitrary messagePublished bodies (what
// Eventarc or the push deliverer POSTs to the patch function) through
// FromMessagePublished: no panic, and an accepted body yields a valid
// event whose subject, when given, is its node.
func FuzzFromMessagePublished(f *testing.F) {
	m, err := Message(sample(), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(MessagePublishedData{
		Message:      PubSubMessage{Data: m.Data, Attributes: m.Attributes, MessageID: "1", OrderingKey: m.OrderingKey},
		Subscription: "projects/p/subscriptions/s",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"message":{"data":"e30=","attributes":{"ce-specversion":"1.0","ce-type":"dev.nodebatch.node.patch.v1"}}}`))
	f.Add([]byte(`{"message":{"data":"not base64!","attributes":null}}`))
	f.Add([]byte(`{"message":null,"subscription":7}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := event.New()
		e.SetID("fuzz")
		e.SetType(MessagePublishedType)
		e.SetSource("//pubsub.googleapis.com/projects/p/topics/t")
		e.DataEncoded = body
		n, msg, err := FromMessagePublished(e)
		if err != nil {
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("accepted an invalid event %+v: %v", n, err)
		}
		if s := msg.Attributes["ce-subject"]; s != "" && s != n.Node {
			t.Fatalf("accepted subject %q for node %q", s, n.Node)
		}
	})
}
