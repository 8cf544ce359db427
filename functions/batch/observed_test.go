package batch_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/functions/batch"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
)

// capture passes messages on and keeps the node events they carry.
type capture struct {
	next batch.Publisher
	mu   sync.Mutex
	evs  map[string][]events.Node // by batch id
}

func (c *capture) Publish(ctx context.Context, msgs []*pubsub.Message) error {
	for _, m := range msgs {
		var ev events.Node
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return err
		}
		c.mu.Lock()
		c.evs[ev.BatchID] = append(c.evs[ev.BatchID], ev)
		c.mu.Unlock()
	}
	return c.next.Publish(ctx, msgs)
}

func (c *capture) events(id string) []events.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evs[id]
}

// TestSubmitEventsCarryObserved: a submitted batch's events carry each
// node as listed: its resourceVersion, the touched label keys it has (no
// other), and its whole taint list only when the batch touches taints.
func TestSubmitEventsCarryObserved(t *testing.T) {
	c := &capture{evs: map[string][]events.Node{}}
	p := newPipeline(t, options{noDeliverer: true, publisher: func(next batch.Publisher) batch.Publisher {
		c.next = next
		return c
	}})
	prefix, names := p.env.SeedNodes(t, 4)
	nodes := p.nodes(t, prefix)
	tok := p.token(t, "olga")
	tests := []struct {
		name string
		body map[string]any
		want func(n corev1.Node) *change.Observed
	}{
		{
			name: "labels, explicit nodes",
			body: map[string]any{"labels": []string{"nodebatch.dev/obs=1", "pool-"}, "nodes": names[1:]},
			want: func(n corev1.Node) *change.Observed {
				return &change.Observed{ResourceVersion: n.ResourceVersion, Labels: map[string]string{"pool": n.Labels["pool"]}}
			},
		},
		{
			name: "taints, by selector",
			body: map[string]any{"taints": []string{"obs=1:NoSchedule"}, "selector": harness.TestLabel + "=" + prefix},
			want: func(n corev1.Node) *change.Observed {
				return &change.Observed{ResourceVersion: n.ResourceVersion, Taints: n.Spec.Taints}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := p.submit(t, tok, tt.body).BatchID
			got := map[string]*change.Observed{}
			for _, ev := range c.events(id) {
				got[ev.Node] = ev.Observed
			}
			want := map[string]*change.Observed{}
			for _, name := range names {
				if _, explicit := tt.body["nodes"]; explicit && name == names[0] {
					continue
				}
				want[name] = tt.want(nodes[name])
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Observed of the published events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOneAPICallPerNode: a fanned-out batch on nodes nobody else touches
// makes exactly one API request per node (its PATCH; no read), and the
// results still carry the exact before-values.
func TestOneAPICallPerNode(t *testing.T) {
	p := newPipeline(t, options{})
	prefix, names := p.env.SeedNodes(t, 12)
	nodes := p.nodes(t, prefix)
	tok := p.token(t, "pavel")
	for _, body := range []map[string]any{
		{"labels": []string{"nodebatch.dev/one=call", "pool-"}, "nodes": names, "concurrency": 3},
		{"taints": []string{"one=call:NoSchedule"}, "selector": harness.TestLabel + "=" + prefix, "concurrency": 3},
	} {
		p.proxy.Reset()
		c := p.submit(t, tok, body)
		st := p.wait(t, tok, c.BatchID)
		if st.State != "succeeded" {
			t.Fatalf("%v: state = %s, want succeeded; failures %v", body, st.State, st.Failures)
		}
		stats := p.proxy.Stats()
		if stats.Requests != len(names) {
			t.Errorf("%v: API requests = %d, want %d (one per node)", body, stats.Requests, len(names))
		}
		for _, r := range stats.Log {
			if r.Method != "PATCH" {
				t.Errorf("%v: request %s %s, want only PATCH", body, r.Method, r.Path)
			}
		}
		for _, r := range st.Results {
			if r.Conflicts != 0 || !r.Changed {
				t.Errorf("%v: node %s conflicts %d changed %v, want 0 true", body, r.Node, r.Conflicts, r.Changed)
			}
			if _, labels := body["labels"]; labels {
				pool := nodes[r.Node].Labels["pool"]
				if diff := cmp.Diff(map[string]*string{"label:nodebatch.dev/one": nil, "label:pool": &pool}, r.Before); diff != "" {
					t.Errorf("node %s before-values (-want +got):\n%s", r.Node, diff)
				}
			}
		}
	}
}
