package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/nodebatch/nodebatch/shared/store"
)

// Breakdown splits one nodebatch run's wall time into its stages, from the
// node result documents the patch function wrote (same clock as the bench,
// the product runs in its process). Figures are milliseconds.
type Breakdown struct {
	// SubmitMS: POST /v1/batches until its answer (validate, list nodes,
	// write the batch and lane documents, publish one event per node).
	SubmitMS float64 `json:"submit_ms"`
	// FirstNodeMS: answer until the first node's patch started (pull and
	// push of the first message, lane and batch reads).
	FirstNodeMS float64 `json:"first_node_ms"`
	// APIP50MS: per node, the API calls (GET + write), median.
	APIP50MS float64 `json:"api_p50_ms"`
	// GapP50MS: per lane, from one node's patch finishing to the next
	// node's starting, median: record the result, count it in the lane,
	// answer and ack the push, push the next message of the key, read the
	// lane and the batch. A lane's wall time ≈ its size × (API + gap).
	GapP50MS float64 `json:"gap_p50_ms"`
	// TailMS: last node finished until `complete` was read (finish the
	// batch, relay listener, WebSocket).
	TailMS float64 `json:"tail_ms"`
}

// nodeTimes is what Breakdown reads of a node result.
type nodeTimes struct {
	lane, position    int
	started, finished time.Time
}

// ReadBreakdown reads the node results of tr's batch and splits its time.
func ReadBreakdown(ctx context.Context, fs *firestore.Client, tr Trace) (Breakdown, error) {
	docs, err := fs.Doc(store.BatchPath(tr.BatchID)).Collection(store.NodesCollection).
		Select("lane", "position", "started_at", "finished_at").Documents(ctx).GetAll()
	if err != nil {
		return Breakdown{}, fmt.Errorf("read node results of batch %s: %w", tr.BatchID, err)
	}
	nodes := make([]nodeTimes, 0, len(docs))
	for _, d := range docs {
		var n store.NodeDoc
		if err := d.DataTo(&n); err != nil {
			return Breakdown{}, fmt.Errorf("decode %s: %w", d.Ref.Path, err)
		}
		nodes = append(nodes, nodeTimes{lane: n.Lane, position: n.Position, started: n.StartedAt, finished: n.FinishedAt})
	}
	return breakdown(tr, nodes), nil
}

// breakdown computes the stages of tr from its nodes' times.
func breakdown(tr Trace, nodes []nodeTimes) Breakdown {
	b := Breakdown{SubmitMS: ms(tr.Submitted.Sub(tr.Begin))}
	if len(nodes) == 0 {
		return b
	}
	slices.SortFunc(nodes, func(x, y nodeTimes) int {
		if x.lane != y.lane {
			return x.lane - y.lane
		}
		return x.position - y.position
	})
	first, last := nodes[0].started, nodes[0].finished
	var api, gaps []time.Duration
	for i, n := range nodes {
		if n.started.Before(first) {
			first = n.started
		}
		if n.finished.After(last) {
			last = n.finished
		}
		api = append(api, n.finished.Sub(n.started))
		if i > 0 && nodes[i-1].lane == n.lane {
			gaps = append(gaps, n.started.Sub(nodes[i-1].finished))
		}
	}
	b.FirstNodeMS = ms(first.Sub(tr.Submitted))
	b.APIP50MS = ms(Median(api))
	b.GapP50MS = ms(Median(gaps))
	b.TailMS = ms(tr.Completed.Sub(last))
	return b
}
