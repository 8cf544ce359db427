package patch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/functions/patch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
)

// TestPushEnvelopeReachesFunction: a Pub/Sub push subscription posts the
// plain envelope (Cloud Run entry points receive it so); the handler must
// hand the same node event to the function as a CloudEvent push would.
func TestPushEnvelopeReachesFunction(t *testing.T) {
	want := events.Node{
		BatchID: "b-1", Attempt: 1, Node: "node-7", Lane: 2, Position: 3, LaneSize: 4, Lanes: 5, Total: 20,
		Changes: change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}},
	}
	msg, err := events.Message(want, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	envelope, err := json.Marshal(events.MessagePublishedData{
		Message:      events.PubSubMessage{Data: msg.Data, Attributes: msg.Attributes, MessageID: "42", OrderingKey: msg.OrderingKey},
		Subscription: "projects/p/subscriptions/s",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.Node, 1)
	h, err := patch.HTTPHandler(t.Context(), func(_ context.Context, e event.Event) error {
		n, _, err := events.FromMessagePublished(e)
		if err != nil {
			return err
		}
		got <- n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/projects/p/topics/t", "application/json", strings.NewReader(string(envelope)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST envelope = %d, want 200", resp.StatusCode)
	}
	select {
	case n := <-got:
		if diff := cmp.Diff(want, n); diff != "" {
			t.Errorf("node event (-want +got):\n%s", diff)
		}
	default:
		t.Fatal("the function was not called")
	}
}
