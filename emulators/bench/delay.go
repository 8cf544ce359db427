package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/shared/store"
)

// DelayProbe measures row 6: many WebSocket clients follow one batch, and
// each client's receive times are set against the times the nodes' results
// were recorded (node documents' finished_at, written by the patch function
// on the same clock as this process).
type DelayProbe struct {
	Nodebatch Nodebatch
	Firestore *firestore.Client // the project the product writes to
	// DialParallel bounds concurrent WebSocket handshakes; 0 means 32.
	DialParallel int
	// Meter, when set, samples CPU from submit to every client having seen
	// the final message.
	Meter *CPUMeter
}

// Run opens clients connections, submits a label batch bench=value at
// concurrency c, subscribes every client, waits for every client to see the
// final message, and returns one delay sample per (client, node) pair.
func (p DelayProbe) Run(ctx context.Context, clients, c int, value string) (DelayRow, error) {
	row := DelayRow{Clients: clients, Nodes: p.Nodebatch.Nodes, Concurrency: c}
	conns, err := p.dial(ctx, clients)
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
	}()
	if err != nil {
		return row, err
	}
	var before CPUCounters
	if p.Meter != nil {
		if before, err = p.Meter.Read(); err != nil {
			return row, err
		}
	}
	id, err := p.Nodebatch.Submit(ctx, OpLabel, value, c)
	if err != nil {
		return row, err
	}
	seen, err := follow(ctx, conns, id)
	if err != nil {
		return row, err
	}
	if p.Meter != nil {
		after, err := p.Meter.Read()
		if err != nil {
			return row, err
		}
		run := p.Meter.Run(before, after, nil)
		row.CPU = &run
	}
	finished, err := FinishTimes(ctx, p.Firestore, id)
	if err != nil {
		return row, err
	}
	if len(finished) != p.Nodebatch.Nodes {
		return row, fmt.Errorf("progress delay: batch %s has %d node results, want %d", id, len(finished), p.Nodebatch.Nodes)
	}
	for _, s := range seen {
		row.Messages += len(s)
		row.Samples = append(row.Samples, Delays(finished, s)...)
	}
	return row, nil
}

// dial opens n connections, a few at a time.
func (p DelayProbe) dial(ctx context.Context, n int) ([]*websocket.Conn, error) {
	parallel := p.DialParallel
	if parallel <= 0 {
		parallel = 32
	}
	conns := make([]*websocket.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = Dial(ctx, p.Nodebatch.RelayURL, p.Nodebatch.Token)
		})
	}
	wg.Wait()
	conns = slices.DeleteFunc(conns, func(ws *websocket.Conn) bool { return ws == nil })
	for i, err := range errs {
		if err != nil {
			return conns, fmt.Errorf("progress delay: client %d of %d: %w", i, n, err)
		}
	}
	return conns, nil
}

// follow subscribes every connection to id and records what each receives
// until the final message.
func follow(ctx context.Context, conns []*websocket.Conn, id string) ([][]Seen, error) {
	seen := make([][]Seen, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, ws := range conns {
		wg.Go(func() {
			if errs[i] = Subscribe(ws, id); errs[i] != nil {
				return
			}
			_, errs[i] = awaitFinal(ctx, ws, id, func(s Seen) { seen[i] = append(seen[i], s) })
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("progress delay: client %d: %w", i, err)
		}
	}
	return seen, nil
}

// FinishTimes returns the finished_at of every node result of batch id.
func FinishTimes(ctx context.Context, fs *firestore.Client, id string) ([]time.Time, error) {
	docs, err := fs.Doc(store.BatchPath(id)).Collection(store.NodesCollection).Select("finished_at").Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("read node results of batch %s: %w", id, err)
	}
	out := make([]time.Time, 0, len(docs))
	for _, d := range docs {
		v, err := d.DataAt("finished_at")
		if err != nil {
			return nil, fmt.Errorf("read finished_at of %s: %w", d.Ref.Path, err)
		}
		t, ok := v.(time.Time)
		if !ok || t.IsZero() {
			return nil, fmt.Errorf("node result %s has no finished_at", d.Ref.Path)
		}
		out = append(out, t)
	}
	return out, nil
}

// Delays sets one client's received messages against the nodes' finish
// times: the k-th node to finish (by finished_at) is seen by the client in
// the first message whose count reaches k; its delay is that message's
// receive time minus the node's finish time. Nodes that finished before the
// client's first message (its subscription's current state) are left out:
// their delay would measure when the client subscribed, not the relay.
// Since a count of k needs k finished nodes, the k-th finish time is never
// after the moment the count reached k, so no delay is negative.
func Delays(finished []time.Time, seen []Seen) []time.Duration {
	if len(seen) == 0 {
		return nil
	}
	f := slices.Clone(finished)
	slices.SortFunc(f, func(a, b time.Time) int { return a.Compare(b) })
	subscribed := seen[0].At
	var out []time.Duration
	j := 0
	for k := 1; k <= len(f); k++ {
		for j < len(seen) && seen[j].Current < k {
			j++
		}
		if j == len(seen) {
			break
		}
		if !f[k-1].After(subscribed) {
			continue
		}
		out = append(out, max(0, seen[j].At.Sub(f[k-1])))
	}
	return out
}
