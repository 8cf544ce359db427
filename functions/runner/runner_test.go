package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// patcher stands in for the API server: these tests are about counting and
// finishing in Firestore (the real emulator), not about patching.
type patcher struct {
	calls atomic.Int64
	err   func(node string) error
	delay time.Duration
}

func (p *patcher) Apply(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool) (nodepatch.Outcome, error) {
	return p.Write(ctx, node, s, seen, dryRun, nil)
}

// ResourceVersion is that of a node this fake never moves.
func (p *patcher) ResourceVersion(context.Context, string) (string, error) { return "7", nil }

func (p *patcher) Write(ctx context.Context, node string, s change.Set, _ *change.Observed, dryRun bool, before nodepatch.BeforeWrite) (nodepatch.Outcome, error) {
	p.calls.Add(1)
	time.Sleep(p.delay)
	if p.err != nil {
		if err := p.err(node); err != nil {
			return nodepatch.Outcome{}, err
		}
	}
	v := "ml"
	r := change.Result{Changed: true, Changes: []change.KeyChange{{Key: "label:team", After: &v}}}
	if before != nil {
		if err := before(ctx, nodepatch.Plan{Node: node, ResourceVersion: "7", Result: r, DryRun: dryRun}); err != nil {
			return nodepatch.Outcome{}, err
		}
	}
	return nodepatch.Outcome{Result: r, ResourceVersion: "7"}, nil
}

// setup records a batch of nodes with c lanes and returns its events.
func setup(t *testing.T, nodes []string, c int, mutate func(*store.BatchDoc)) (*store.Store, []events.Node) {
	t.Helper()
	env := harness.Start(t)
	st := store.New(env.Firestore(t, env.ProjectID(t)))
	set := change.Set{Labels: []change.Label{{Key: "team", Value: "ml"}}}
	now := time.Now()
	b := &store.BatchDoc{ID: "b1", Owner: "o", Action: model.ActionLabel, Total: len(nodes), Concurrency: c, Lanes: c,
		AttemptTotal: len(nodes), Attempt: 1, State: model.StateRunning, CreatedAt: now, StartedAt: now}
	if mutate != nil {
		mutate(b)
	}
	lanes := make([]store.LaneDoc, c)
	for l := range lanes {
		lanes[l] = store.LaneDoc{Attempt: 1, Lane: l, Size: (len(nodes) - l + c - 1) / c}
	}
	if err := st.Create(context.Background(), b, lanes); err != nil {
		t.Fatalf("Create: %v", err)
	}
	evs := make([]events.Node, len(nodes))
	for i, n := range nodes {
		evs[i] = events.Node{BatchID: "b1", Attempt: 1, Node: n, Lane: i % c, Position: i / c, LaneSize: lanes[i%c].Size, Lanes: c, Total: len(nodes), Changes: set}
	}
	return st, evs
}

func TestConcurrentDuplicatesCountOnce(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1", "n2"}, 1, nil)
	p := &patcher{delay: 5 * time.Millisecond}
	r := &runner.Runner{Store: st, Patcher: p}
	ctx := context.Background()
	var finished atomic.Int64
	for _, ev := range evs {
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				res, err := r.Run(ctx, ev)
				if err != nil {
					t.Errorf("Run(%s) = %v", ev.Node, err)
				}
				if res.Finished {
					finished.Add(1)
				}
			})
		}
		// A dead letter of the same event racing the deliveries.
		wg.Go(func() {
			if _, err := r.Fail(ctx, ev, "delivery attempts exhausted"); err != nil {
				t.Errorf("Fail(%s) = %v", ev.Node, err)
			}
		})
		wg.Wait()
	}
	lanes, err := st.Lanes(ctx, "b1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := lanes[0].Counts.Done(); got != 3 {
		t.Errorf("lane done = %d (%+v), want 3: each node counted once", got, lanes[0].Counts)
	}
	b, err := st.Batch(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !b.State.Final() || b.Counts.Done() != 3 {
		t.Errorf("batch = %s counts %+v, want final with 3 done", b.State, b.Counts)
	}
	if got := finished.Load(); got > 1 {
		t.Errorf("%d calls finished the batch, want at most 1", got)
	}
}

func TestAlreadyCountedSkipsPatch(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1"}, 2, nil)
	p := &patcher{}
	r := &runner.Runner{Store: st, Patcher: p}
	ctx := context.Background()
	if _, err := r.Run(ctx, evs[0]); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(ctx, evs[0])
	if err != nil || !res.Duplicate {
		t.Fatalf("second Run = %+v, %v, want Duplicate", res, err)
	}
	if got := p.calls.Load(); got != 1 {
		t.Errorf("patch calls = %d, want 1", got)
	}
	res, err = r.Run(ctx, evs[1])
	if err != nil || !res.Finished {
		t.Fatalf("last node Run = %+v, %v, want it to finish the batch", res, err)
	}
	b, _ := st.Batch(ctx, "b1")
	if b.State != model.StateSucceeded || b.Timing == nil {
		t.Errorf("batch = %s timing %v, want succeeded with timing", b.State, b.Timing)
	}
	n, err := st.Node(ctx, "b1", "n0")
	if err != nil {
		t.Fatal(err)
	}
	if n.State != model.NodeSucceeded || n.After["label:team"] == nil || *n.After["label:team"] != "ml" || n.ResourceVersion != "7" {
		t.Errorf("node result = %+v", n)
	}
}

func TestCancelledBatchDoesNotPatch(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1", "n2", "n3"}, 2, func(b *store.BatchDoc) {
		b.Cancel = &store.Cancel{RequestedAt: time.Now(), By: "o", Reason: "operator said stop"}
	})
	p := &patcher{}
	r := &runner.Runner{Store: st, Patcher: p}
	for _, ev := range evs {
		if _, err := r.Run(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.calls.Load(); got != 0 {
		t.Errorf("patch calls = %d, want 0 after cancel", got)
	}
	b, _ := st.Batch(context.Background(), "b1")
	if diff := cmp.Diff(model.Counts{Cancelled: 4}, b.Counts); diff != "" || b.State != model.StateCancelled {
		t.Errorf("batch %s counts (-want +got):\n%s", b.State, diff)
	}
}

func TestErrorClasses(t *testing.T) {
	gone := apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, "n1")
	busy := apierrors.NewTooManyRequests("slow down", 1)
	var flaky atomic.Bool
	flaky.Store(true)
	st, evs := setup(t, []string{"n0", "n1"}, 1, nil)
	p := &patcher{err: func(node string) error {
		switch {
		case node == "n1":
			return gone
		case flaky.Load():
			return busy
		}
		return nil
	}}
	r := &runner.Runner{Store: st, Patcher: p}
	ctx := context.Background()
	if _, err := r.Run(ctx, evs[0]); !errors.Is(err, runner.ErrTransient) {
		t.Fatalf("Run with 429 = %v, want ErrTransient", err)
	}
	if l, _ := st.Lane(ctx, "b1", 1, 0); l.Doc.Counts.Done() != 0 {
		t.Fatalf("a transient error was counted: %+v", l.Doc.Counts)
	}
	flaky.Store(false)
	if _, err := r.Run(ctx, evs[0]); err != nil {
		t.Fatalf("redelivery = %v", err)
	}
	if _, err := r.Run(ctx, evs[1]); err != nil {
		t.Fatalf("Run with 404 = %v, want nil (recorded, acked)", err)
	}
	b, _ := st.Batch(ctx, "b1")
	if diff := cmp.Diff(model.Counts{Succeeded: 1, Failed: 1}, b.Counts); diff != "" || b.State != model.StatePartiallyFailed {
		t.Errorf("batch %s counts (-want +got):\n%s", b.State, diff)
	}
	n, _ := st.Node(ctx, "b1", "n1")
	if n.State != model.NodeFailed || n.Reason == "" {
		t.Errorf("gone node = %s %q, want failed with reason", n.State, n.Reason)
	}
}

// TestResultAndCountAgree races a node's delivery with its dead letter many
// times: whichever records first, the node document and the lane count say
// the same thing.
func TestResultAndCountAgree(t *testing.T) {
	nodes := make([]string, 12)
	for i := range nodes {
		nodes[i] = "n" + string(rune('a'+i))
	}
	st, evs := setup(t, nodes, 3, nil)
	r := &runner.Runner{Store: st, Patcher: &patcher{}}
	ctx := context.Background()
	for _, ev := range evs {
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := r.Run(ctx, ev); err != nil {
				t.Errorf("Run = %v", err)
			}
		})
		wg.Go(func() {
			if _, err := r.Fail(ctx, ev, "delivery attempts exhausted"); err != nil {
				t.Errorf("Fail = %v", err)
			}
		})
		wg.Wait()
	}
	var fromDocs model.Counts
	for _, n := range nodes {
		doc, err := st.Node(ctx, "b1", n)
		if err != nil {
			t.Fatal(err)
		}
		switch doc.State {
		case model.NodeSucceeded:
			fromDocs.Succeeded++
		case model.NodeFailed:
			fromDocs.Failed++
		}
	}
	lanes, err := st.Lanes(ctx, "b1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var fromLanes model.Counts
	for _, l := range lanes {
		fromLanes = fromLanes.Add(l.Counts)
	}
	fromLanes.Unchanged = 0
	if diff := cmp.Diff(fromDocs, fromLanes); diff != "" {
		t.Errorf("counts from node documents vs lanes (-docs +lanes):\n%s", diff)
	}
}

// Every lane completing at the same moment: the finish is a compare-and-swap
// on the batch document, and exactly one call moves the batch to final.
func TestLanesFinishingTogetherFinishOnce(t *testing.T) {
	nodes := make([]string, 24)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%02d", i)
	}
	st, evs := setup(t, nodes, len(nodes), nil)
	r := &runner.Runner{Store: st, Patcher: &patcher{}}
	ctx := context.Background()
	var finished atomic.Int64
	var wg sync.WaitGroup
	for _, ev := range evs {
		wg.Go(func() {
			res, err := r.Run(ctx, ev)
			if err != nil {
				t.Errorf("Run(%s) = %v", ev.Node, err)
			}
			if res.Finished {
				finished.Add(1)
			}
		})
	}
	wg.Wait()
	if got := finished.Load(); got != 1 {
		t.Errorf("%d calls finished the batch, want exactly 1", got)
	}
	b, err := st.Batch(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != model.StateSucceeded || b.Counts.Succeeded != len(nodes) {
		t.Errorf("batch = %s counts %+v, want succeeded with %d", b.State, b.Counts, len(nodes))
	}
}

// CountNode refuses, without writing anything, a node already recorded
// (ErrExists) and a lane that moved since it was read (ErrLaneMoved).
func TestCountNodePreconditions(t *testing.T) {
	st, _ := setup(t, []string{"n0", "n1"}, 1, nil)
	ctx := context.Background()
	read := func() *store.Lane {
		t.Helper()
		_, l, _, err := st.BatchAndLane(ctx, "b1", 1, 0, -1)
		if err != nil {
			t.Fatalf("BatchAndLane: %v", err)
		}
		return l
	}
	node := func(name string) *store.NodeDoc {
		return &store.NodeDoc{Node: name, Attempt: 1, State: model.NodeSucceeded}
	}

	stale := read()
	l := read()
	l.Doc.Mark(0)
	if err := st.CountNode(ctx, "b1", node("n0"), l); err != nil {
		t.Fatalf("CountNode(n0) = %v", err)
	}
	stale.Doc.Mark(1)
	if err := st.CountNode(ctx, "b1", node("n1"), stale); !errors.Is(err, store.ErrLaneMoved) {
		t.Errorf("CountNode on a stale lane = %v, want ErrLaneMoved", err)
	}
	if _, err := st.Node(ctx, "b1", "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after a refused commit, node n1 result: %v, want ErrNotFound (nothing written)", err)
	}
	again := read()
	again.Doc.Mark(1)
	if err := st.CountNode(ctx, "b1", node("n0"), again); !errors.Is(err, store.ErrExists) {
		t.Errorf("CountNode of a recorded node = %v, want ErrExists", err)
	}
	if got := read(); got.Doc.Has(1) {
		t.Errorf("lane has position 1 after a refused commit: %+v", got.Doc)
	}
}

// LaneOpen answers "is some lane of the attempt still running" from the
// lanes' done field, which the per-node commit keeps equal to Complete().
func TestLaneOpen(t *testing.T) {
	st, evs := setup(t, []string{"n0", "n1", "n2"}, 2, nil) // lane 0: n0, n2; lane 1: n1
	r := &runner.Runner{Store: st, Patcher: &patcher{}}
	ctx := context.Background()
	want := []bool{true, true, false} // after n0, after n1 (lane 1 done, lane 0 not), after n2
	for i, ev := range []events.Node{evs[0], evs[1], evs[2]} {
		if _, err := r.Run(ctx, ev); err != nil {
			t.Fatalf("Run(%s) = %v", ev.Node, err)
		}
		open, err := st.LaneOpen(ctx, "b1", 1)
		if err != nil {
			t.Fatalf("LaneOpen: %v", err)
		}
		if open != want[i] {
			t.Errorf("after %s: LaneOpen = %v, want %v", ev.Node, open, want[i])
		}
	}
	if open, err := st.LaneOpen(ctx, "b1", 2); err != nil || open {
		t.Errorf("LaneOpen of an attempt without lanes = %v, %v; want false", open, err)
	}
}
