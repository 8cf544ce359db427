package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// The largest values the settings allow: NODEBATCH_MAX_NODES (10,000)
// node names of 253 bytes, NODEBATCH_MAX_CHANGES (100) changes of keys of
// 317 bytes (a 253-byte prefix, '/', a 63-byte name) and 63-byte values,
// NODEBATCH_MAX_CONCURRENCY (50) lanes, or one lane of every node.
const (
	maxNodes   = 10000
	maxChanges = 100
	maxLanes   = 50
)

// longName is the i-th of maxNodes distinct valid node names of 253 bytes.
func longName(i int) string {
	s := fmt.Sprintf("%05d.%s.%s.%s.", i, strings.Repeat("a", 63), strings.Repeat("b", 63), strings.Repeat("c", 63))
	return s + strings.Repeat("d", 253-len(s))
}

// longKey is the i-th label key of 317 bytes.
func longKey(i int) string {
	p := fmt.Sprintf("%03d.%s.%s.%s.", i, strings.Repeat("p", 63), strings.Repeat("q", 63), strings.Repeat("r", 63))
	p += strings.Repeat("s", 253-len(p))
	return p + "/" + strings.Repeat("k", 63)
}

func longValue() *string { v := strings.Repeat("v", 63); return &v }

// TestBatchAtTheMaximumFits: every document that grows with a batch — the
// batch (with an explicit list of every node and the largest change set),
// its names documents, a lane of every node with the most failures, the
// widest latency histogram and writes pending, a node result with the
// most keys, unknown keys and the most history — is written to the
// emulator, which refuses a document over 1 MiB.
func TestBatchAtTheMaximumFits(t *testing.T) {
	env := harness.Start(t)
	st := store.New(env.Firestore(t, env.ProjectID(t)))
	ctx := context.Background()
	names := make([]string, maxNodes)
	for i := range names {
		names[i] = longName(i)
	}
	var set change.Set
	for i := range maxChanges {
		l := change.Label{Key: longKey(i), Value: *longValue(), Expect: &change.Expect{Present: true, Value: *longValue()}}
		set.Labels = append(set.Labels, l)
	}
	now := time.Now()
	b := &store.BatchDoc{ID: "max", Owner: strings.Repeat("o", 320),
		Nodes: names, Names: names, Total: maxNodes, Concurrency: maxLanes, Lanes: maxLanes, AttemptTotal: maxNodes, Attempt: 1,
		State: model.StateRunning, CreatedAt: now, StartedAt: now, IdempotencyKey: strings.Repeat("i", 200),
		Impact: maxImpact(now)}
	if err := b.SetChange(set); err != nil {
		t.Fatal(err)
	}
	lanes := make([]store.LaneDoc, maxLanes)
	for l := range lanes {
		lanes[l] = store.LaneDoc{Attempt: 1, Lane: l, Size: maxNodes / maxLanes}
	}
	if err := st.Create(ctx, b, lanes); err != nil {
		t.Fatalf("Create of a batch at the maximum = %v", err)
	}
	got, err := st.Batch(ctx, "max")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Impact.Budgets); n != store.MaxImpactBudgets || !got.Impact.BudgetsTruncated {
		t.Errorf("stored impact: %d budgets, truncated %v; want %d, truncated", n, got.Impact.BudgetsTruncated, store.MaxImpactBudgets)
	}
	if !got.Named || got.Nodes != nil {
		t.Errorf("stored batch: named %v, %d nodes listed; want named, the list only in the names documents", got.Named, len(got.Nodes))
	}
	// The last node: lane 49, position 199, in the last names document.
	_, _, chunk, err := st.BatchAndLane(ctx, "max", 1, maxLanes-1, store.NameIndex(maxLanes, maxLanes-1, maxNodes/maxLanes-1))
	if err != nil {
		t.Fatal(err)
	}
	if k := (maxNodes - 1) % store.NamesPerChunk; k >= len(chunk) || chunk[k] != names[maxNodes-1] {
		t.Errorf("names document of the last node does not name it (%d names)", len(chunk))
	}

	// One lane of every node: every bit, the most failures with long
	// reasons, every latency bucket, writes pending with the most keys.
	one := store.LaneDoc{Attempt: 1, Lane: 0, Size: maxNodes}
	if err := st.Create(ctx, &store.BatchDoc{ID: "onelane", Owner: "o", Total: maxNodes, Lanes: 1, Attempt: 1, AttemptTotal: maxNodes,
		State: model.StateRunning, CreatedAt: now, StartedAt: now, Names: names}, []store.LaneDoc{one}); err != nil {
		t.Fatalf("Create of a one-lane batch at the maximum = %v", err)
	}
	lane, err := st.Lane(ctx, "onelane", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for pos := range maxNodes {
		lane.Doc.Mark(pos)
		lane.Doc.AddFailure(model.Failure{Node: names[pos], Reason: strings.Repeat("r", 10000)})
	}
	for ms := int64(0); ms < 10_000_000; ms = ms*11/10 + 1 {
		lane.Doc.AddLatency(ms)
	}
	lane.Doc.Counts.Failed = maxNodes
	before, after := map[string]*string{}, map[string]*string{}
	for i := range maxChanges {
		before["label:"+longKey(i)], after["label:"+longKey(i)] = longValue(), longValue()
	}
	for pos := range 4 { // a delivery in flight, a dead letter, two duplicates
		if err := st.WriteIntent(ctx, "onelane", lane, pos, store.Intent{Node: names[pos], Attempt: 1, ResourceVersion: "123456789", Before: before, After: after, At: now}); err != nil {
			t.Fatalf("WriteIntent %d = %v", pos, err)
		}
	}
	if err := st.UpdateLane(ctx, "onelane", lane, maxNodes-1); err != nil {
		t.Fatalf("UpdateLane of a lane at the maximum = %v", err)
	}
	if len(lane.Doc.Failures) != store.MaxLaneFailures || len(lane.Doc.Failures[0].Reason) > store.MaxReason+len("…") {
		t.Errorf("lane failures = %d, first reason %d bytes; want %d, clipped to %d", len(lane.Doc.Failures), len(lane.Doc.Failures[0].Reason), store.MaxLaneFailures, store.MaxReason)
	}

	// A node result with the most keys and reason, re-run by many retries.
	keys := make([]string, 0, maxChanges)
	for k := range after {
		keys = append(keys, k)
	}
	for attempt := 1; attempt <= 12; attempt++ {
		n := &store.NodeDoc{Node: names[0], State: model.NodeFailed, Reason: strings.Repeat("x", 100000), Changed: true,
			Before: before, After: after, Unknown: keys, Attempt: attempt, StartedAt: now, FinishedAt: now}
		stand, err := st.RecordNode(ctx, "max", n)
		if err != nil {
			t.Fatalf("RecordNode attempt %d = %v", attempt, err)
		}
		if len(stand.History) > store.MaxHistory {
			t.Errorf("attempt %d: history of %d results, want at most %d", attempt, len(stand.History), store.MaxHistory)
		}
	}

	// A retry of every node at one lane: the attempt's names documents.
	if _, err := st.Finish(ctx, "max", func(cur *store.BatchDoc) *store.BatchDoc {
		nb := *cur
		nb.State, nb.FinishedAt = model.StateFailed, now
		return &nb
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartAttempt(ctx, "max", store.Attempt{Number: 2, Lanes: 1, Total: maxNodes, StartedAt: now, Names: names},
		[]store.LaneDoc{{Attempt: 2, Lane: 0, Size: maxNodes}}); err != nil {
		t.Fatalf("StartAttempt of every node = %v", err)
	}
	if _, _, chunk, err := st.BatchAndLane(ctx, "max", 2, 0, maxNodes-1); err != nil || len(chunk) == 0 || chunk[len(chunk)-1] != names[maxNodes-1] {
		t.Errorf("names of attempt 2: %d names, %v; want the last node last", len(chunk), err)
	}
}

// maxImpact is a predicted impact with more violated budgets than a batch
// keeps, each with the longest namespace and name, and a long error.
func maxImpact(now time.Time) *store.Impact {
	im := &store.Impact{Summary: strings.Repeat("s", 300), Error: strings.Repeat("e", 10000), ComputedAt: now}
	for i := range 2 * store.MaxImpactBudgets {
		im.Budgets = append(im.Budgets, store.ImpactBudget{Namespace: fmt.Sprintf("%03d%s", i, strings.Repeat("n", 60)), Name: longName(i), DisruptionsAllowed: 1 << 30, Evictions: 1 << 30})
	}
	im.BudgetsViolated = len(im.Budgets)
	return im
}
