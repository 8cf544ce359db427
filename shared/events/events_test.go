package events

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/shared/change"
)

func sample() Node {
	return Node{
		BatchID: "20261127t050000-abcdef0123", Attempt: 1, Node: "node-0017", Lane: 2, Position: 3,
		LaneSize: 4, Lanes: 5, Total: 20, DryRun: true,
		Changes: change.Set{
			Labels: []change.Label{{Key: "team", Value: "ml"}, {Key: "old", Remove: true}},
			Taints: []change.Taint{{Key: "gpu", Value: "true", Effect: "NoSchedule"}},
		},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	n := sample()
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	m, err := Message(n, now)
	if err != nil {
		t.Fatalf("Message = %v", err)
	}
	wantAttrs := map[string]string{
		"ce-specversion": "1.0",
		"ce-type":        Type,
		"ce-source":      "//nodebatch/batches/20261127t050000-abcdef0123",
		"ce-id":          "20261127t050000-abcdef0123/a1/node-0017",
		"ce-subject":     "node-0017",
		"ce-time":        "2026-11-27T05:00:00Z",
		"content-type":   "application/json",
	}
	if diff := cmp.Diff(wantAttrs, m.Attributes); diff != "" {
		t.Errorf("Message attributes (-want +got):\n%s", diff)
	}
	if got, want := m.OrderingKey, "20261127t050000-abcdef0123/2"; got != want {
		t.Errorf("OrderingKey = %q, want %q", got, want)
	}
	e, err := ToMessagePublished(PubSubMessage{Data: m.Data, Attributes: m.Attributes, MessageID: "42", OrderingKey: m.OrderingKey}, "projects/p/subscriptions/s")
	if err != nil {
		t.Fatalf("ToMessagePublished = %v", err)
	}
	got, msg, err := FromMessagePublished(e)
	if err != nil {
		t.Fatalf("FromMessagePublished = %v", err)
	}
	if diff := cmp.Diff(n, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if msg.MessageID != "42" || msg.OrderingKey != m.OrderingKey {
		t.Errorf("message = %+v", msg)
	}
}

func TestFromMessageRefuses(t *testing.T) {
	good, err := Message(sample(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	attrs := func(k, v string) map[string]string {
		a := map[string]string{}
		for kk, vv := range good.Attributes {
			a[kk] = vv
		}
		if v == "" {
			delete(a, k)
		} else {
			a[k] = v
		}
		return a
	}
	data := func(f func(*Node)) []byte {
		n := sample()
		f(&n)
		b, _ := json.Marshal(n)
		return b
	}
	tests := []struct {
		name    string
		data    []byte
		attrs   map[string]string
		notOurs bool
	}{
		{"wrong type", good.Data, attrs("ce-type", "com.example.other"), true},
		{"no specversion", good.Data, attrs("ce-specversion", ""), true},
		{"subject mismatch", good.Data, attrs("ce-subject", "node-9999"), false},
		{"not json", []byte("{"), good.Attributes, false},
		{"unknown field", []byte(`{"batch_id":"b","extra":1}`), good.Attributes, false},
		{"trailing", append(append([]byte{}, good.Data...), []byte(` {}`)...), good.Attributes, false},
		{"no batch", data(func(n *Node) { n.BatchID = "" }), good.Attributes, false},
		{"slash in batch", data(func(n *Node) { n.BatchID = "a/b" }), good.Attributes, false},
		{"lane out of range", data(func(n *Node) { n.Lane = 5 }), good.Attributes, false},
		{"position out of range", data(func(n *Node) { n.Position = 4 }), good.Attributes, false},
		{"attempt 0", data(func(n *Node) { n.Attempt = 0 }), good.Attributes, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromMessage(tt.data, tt.attrs)
			if err == nil {
				t.Fatalf("FromMessage = nil error, want one")
			}
			if got := errors.Is(err, ErrNotOurs); got != tt.notOurs {
				t.Errorf("FromMessage error %v: ErrNotOurs = %v, want %v", err, got, tt.notOurs)
			}
		})
	}
}

// FuzzFromMessage decodes arbitrary data: never a panic, and whatever is
// accepted is a consistent event that encodes back to the same data.
func FuzzFromMessage(f *testing.F) {
	m, err := Message(sample(), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Data)
	f.Add([]byte(`{"batch_id":"b","attempt":1,"node":"n","lane":0,"position":0,"lane_size":1,"lanes":1,"total":1,"changes":{}}`))
	attrs := map[string]string{"ce-specversion": "1.0", "ce-type": Type}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := FromMessage(data, attrs)
		if err != nil {
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		again, err := Message(n, time.Now())
		if err != nil {
			t.Fatalf("Message of an accepted event = %v", err)
		}
		n2, err := FromMessage(again.Data, attrs)
		if err != nil {
			t.Fatalf("re-decode = %v", err)
		}
		if diff := cmp.Diff(n, n2); diff != "" {
			t.Fatalf("re-encode changed the event (-first +second):\n%s", diff)
		}
	})
}
