package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/nodebatch/nodebatch/shared/store"
)

// Breakdown splits one nodebatch run's wall time into stages, from the node
// result documents the patch function wrote and the commit time of the
// batch document's final write (the product runs in the bench process and
// the emulator on the same machine: one clock). Along the critical lane
// (the one whose last node finished last) the stages add up to the wall
// time exactly:
//
//	wall = Submit + LaneStart + LaneAPI + LaneGaps + Finish + Relay
//
// Figures are milliseconds.
type Breakdown struct {
	// SubmitMS: POST /v1/batches until its answer (validate, list nodes,
	// write the batch and lane documents, publish one event per node).
	SubmitMS float64 `json:"submit_ms"`
	// LaneStartMS: answer until the critical lane's first patch started
	// (negative when it started before the batch function answered).
	LaneStartMS float64 `json:"lane_start_ms"`
	// LaneAPIMS: the critical lane's API time (the write, plus GET and retry after a 409), summed.
	LaneAPIMS float64 `json:"lane_api_ms"`
	// LaneGapsMS: the critical lane's time between one node's patch
	// finishing and the next one's starting, summed: record the result,
	// count it in the lane, answer and ack the push, push the next message
	// of the key, read the lane and the batch documents.
	LaneGapsMS float64 `json:"lane_gaps_ms"`
	// LaneNodes is the critical lane's size.
	LaneNodes int `json:"lane_nodes"`
	// FinishMS: last patch finished until the batch document's final write
	// committed (record and count the last node, read the lanes, the
	// finishing transaction).
	FinishMS float64 `json:"finish_ms"`
	// RelayMS: that commit until `complete` was read on the WebSocket
	// (document listener, progress message, WebSocket write).
	RelayMS float64 `json:"relay_ms"`
	// APIP50MS and GapP50MS are the medians over all nodes of the API time
	// and of the gap before the node (within its lane).
	APIP50MS float64 `json:"api_p50_ms"`
	GapP50MS float64 `json:"gap_p50_ms"`
}

// nodeTimes is what Breakdown reads of a node result.
type nodeTimes struct {
	lane, position    int
	started, finished time.Time
}

// ReadBreakdown reads the node results and the batch document of tr's
// batch and splits its time.
func ReadBreakdown(ctx context.Context, fs *firestore.Client, tr Trace) (Breakdown, error) {
	batchSnap, err := fs.Doc(store.BatchPath(tr.BatchID)).Get(ctx)
	if err != nil {
		return Breakdown{}, fmt.Errorf("read batch %s: %w", tr.BatchID, err)
	}
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
	return breakdown(tr, batchSnap.UpdateTime, nodes), nil
}

// breakdown computes the stages of tr from its nodes' times and the commit
// time of the batch's final write.
func breakdown(tr Trace, final time.Time, nodes []nodeTimes) Breakdown {
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
	// Per lane: first start, sums, last finish.
	type lane struct {
		start, end time.Time
		api, gaps  time.Duration
		n          int
	}
	var lanes []lane
	var api, gaps []time.Duration
	for i, n := range nodes {
		d := n.finished.Sub(n.started)
		api = append(api, d)
		if i == 0 || nodes[i-1].lane != n.lane {
			lanes = append(lanes, lane{start: n.started})
		} else {
			g := n.started.Sub(nodes[i-1].finished)
			gaps = append(gaps, g)
			lanes[len(lanes)-1].gaps += g
		}
		l := &lanes[len(lanes)-1]
		l.api += d
		l.end = n.finished
		l.n++
	}
	crit := lanes[0]
	for _, l := range lanes[1:] {
		if l.end.After(crit.end) {
			crit = l
		}
	}
	b.LaneStartMS = ms(crit.start.Sub(tr.Submitted))
	b.LaneAPIMS = ms(crit.api)
	b.LaneGapsMS = ms(crit.gaps)
	b.LaneNodes = crit.n
	b.FinishMS = ms(final.Sub(crit.end))
	b.RelayMS = ms(tr.Completed.Sub(final))
	b.APIP50MS = ms(Median(api))
	b.GapP50MS = ms(Median(gaps))
	return b
}
