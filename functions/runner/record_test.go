package runner_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/functions/runner"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/events"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/nodepatch"
	"github.com/nodebatch/nodebatch/shared/store"
)

// lossy wraps the real patcher. With land, a write lands on the API server
// and then the call's context is cancelled, so recording it fails (what a
// Firestore outage or a deadline after a successful patch does). Without
// land, the intent is recorded and the write is never sent, so the call
// fails transiently (a write refused before it landed).
type lossy struct {
	runner.Patcher
	land   bool
	cancel context.CancelFunc
}

var errNotSent = errors.New("injected: write not sent")

func (p *lossy) Write(ctx context.Context, node string, s change.Set, seen *change.Observed, dryRun bool, before nodepatch.BeforeWrite) (nodepatch.Outcome, error) {
	if !p.land {
		return p.Patcher.Write(ctx, node, s, seen, dryRun, func(ctx context.Context, pl nodepatch.Plan) error {
			if err := before(ctx, pl); err != nil {
				return err
			}
			return errNotSent
		})
	}
	out, err := p.Patcher.Write(ctx, node, s, seen, dryRun, before)
	p.cancel()
	return out, err
}

// realSetup records a one-node batch of set on a real node and returns the
// store, the node's event and a runner with the real patcher.
func realSetup(t *testing.T, set change.Set) (*store.Store, kubernetes.Interface, events.Node, *runner.Runner) {
	t.Helper()
	env := harness.Start(t)
	_, names := env.SeedNodes(t, 1)
	st := store.New(env.Firestore(t, env.ProjectID(t)))
	now := time.Now()
	b := &store.BatchDoc{ID: "b1", Owner: "o", Total: 1, Concurrency: 1, Lanes: 1,
		AttemptTotal: 1, Attempt: 1, State: model.StateRunning, CreatedAt: now, StartedAt: now,
		Nodes: names, Names: names}
	if err := b.SetChange(set); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(context.Background(), b, []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 1}}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	ev := events.Node{BatchID: "b1", Attempt: 1, Node: names[0], Lane: 0, Position: 0, LaneSize: 1, Lanes: 1, Total: 1, Changes: set}
	// nodebatch's own identity may only impersonate: patch as a person
	// with node rights, as the patch function does.
	kube := env.As(t, "alice@example.com", b.ID)
	return st, env.Kube(t), ev, &runner.Runner{Store: st, Patcher: &nodepatch.Patcher{Client: kube}}
}

// TestRecordLostAfterLandedWrite: the write lands, recording it fails, and
// the node is handled again — redelivered, redelivered after a cancel, or
// dead-lettered. The record never claims "cancelled", "failed, unchanged"
// or "unchanged" with the batch's own value as "before": the keys whose
// before-value cannot be proven are marked unknown, and revert skips them.
func TestRecordLostAfterLandedWrite(t *testing.T) {
	const key = "nodebatch.dev/record"
	set := change.Set{Labels: []change.Label{{Key: key, Value: "new"}}}
	tests := []struct {
		name  string
		then  func(ctx context.Context, t *testing.T, st *store.Store, r *runner.Runner, ev events.Node) (runner.Result, error)
		state model.NodeState
	}{
		{"redelivered", func(ctx context.Context, _ *testing.T, _ *store.Store, r *runner.Runner, ev events.Node) (runner.Result, error) {
			return r.Run(ctx, ev)
		}, model.NodeSucceeded},
		{"cancelled, then redelivered", func(ctx context.Context, t *testing.T, st *store.Store, r *runner.Runner, ev events.Node) (runner.Result, error) {
			if _, _, err := st.RecordCancel(ctx, "b1", store.Cancel{RequestedAt: time.Now(), By: "o", Reason: "stop"}); err != nil {
				t.Fatal(err)
			}
			return r.Run(ctx, ev)
		}, model.NodeFailed},
		{"dead-lettered", func(ctx context.Context, _ *testing.T, _ *store.Store, r *runner.Runner, ev events.Node) (runner.Result, error) {
			return r.Fail(ctx, ev, "delivery attempts exhausted")
		}, model.NodeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, admin, ev, r := realSetup(t, set)
			ctx := context.Background()
			rctx, cancel := context.WithCancel(ctx)
			lr := &runner.Runner{Store: st, Patcher: &lossy{Patcher: r.Patcher, land: true, cancel: cancel}}
			if _, err := lr.Run(rctx, ev); !errors.Is(err, runner.ErrTransient) {
				t.Fatalf("Run with the record failing = %v, want a transient error", err)
			}
			n, err := admin.CoreV1().Nodes().Get(ctx, ev.Node, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n.Labels[key] != "new" {
				t.Fatalf("label after the landed write = %q, want new", n.Labels[key])
			}
			if _, err := tt.then(ctx, t, st, r, ev); err != nil {
				t.Fatalf("handling the node again: %v", err)
			}
			doc, err := st.Node(ctx, "b1", ev.Node)
			if err != nil {
				t.Fatal(err)
			}
			if doc.State != tt.state || !doc.Changed {
				t.Errorf("node result = %s changed %v (%s), want %s changed", doc.State, doc.Changed, doc.Reason, tt.state)
			}
			if diff := cmp.Diff([]string{"label:" + key}, doc.Unknown); diff != "" {
				t.Errorf("unknown keys (-want +got):\n%s", diff)
			}
			if _, ok := doc.Before["label:"+key]; ok {
				t.Errorf("before = %v: a guessed before-value of an unknown key", doc.Before)
			}
			if _, skip := runner.RevertSet(*doc); !strings.Contains(skip, "unknown") {
				t.Errorf("RevertSet skip = %q, want a reason naming the unknown value", skip)
			}
			lanes, err := st.Lanes(ctx, "b1", 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(lanes[0].Pending) != 0 || lanes[0].Counts.Done() != 1 {
				t.Errorf("lane = pending %v counts %+v, want the intent resolved and the node counted once", lanes[0].Pending, lanes[0].Counts)
			}
		})
	}
}

// TestRecordWriteNotLanded: the intent is recorded but the write never
// lands; a cancel comes, and the redelivery proves from the node's
// unchanged resourceVersion that nothing was written: cancelled, exactly.
func TestRecordWriteNotLanded(t *testing.T) {
	st, admin, ev, r := realSetup(t, change.Set{Labels: []change.Label{{Key: "nodebatch.dev/record", Value: "new"}}})
	ctx := context.Background()
	lr := &runner.Runner{Store: st, Patcher: &lossy{Patcher: r.Patcher}}
	if _, err := lr.Run(ctx, ev); !errors.Is(err, runner.ErrTransient) {
		t.Fatalf("Run with the write failing = %v, want a transient error", err)
	}
	lanes, err := st.Lanes(ctx, "b1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(lanes[0].Pending) != 1 {
		t.Fatalf("pending intents = %v, want the one recorded before the write", lanes[0].Pending)
	}
	if _, _, err := st.RecordCancel(ctx, "b1", store.Cancel{RequestedAt: time.Now(), By: "o", Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, ev); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	doc, err := st.Node(ctx, "b1", ev.Node)
	if err != nil {
		t.Fatal(err)
	}
	if doc.State != model.NodeCancelled || doc.Changed || len(doc.Unknown) != 0 {
		t.Errorf("node result = %s changed %v unknown %v (%s), want cancelled, unchanged", doc.State, doc.Changed, doc.Unknown, doc.Reason)
	}
	n, err := admin.CoreV1().Nodes().Get(ctx, ev.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Labels["nodebatch.dev/record"]; ok {
		t.Errorf("label set on a cancelled node: %v", n.Labels)
	}
}

// TestForgedEventsChangeNothing: events the batch does not vouch for (an
// earlier or later attempt, another lane layout, another node at the
// position, another change set, a dry-run flag the batch lacks, a lane that
// does not exist) patch nothing, count nothing, and are recorded on the
// batch as refused.
func TestForgedEventsChangeNothing(t *testing.T) {
	set := change.Set{Labels: []change.Label{{Key: "nodebatch.dev/forged", Value: "yes"}}}
	st, admin, ev, r := realSetup(t, set)
	ctx := context.Background()
	other := change.Set{Labels: []change.Label{{Key: "nodebatch.dev/forged", Value: "evil"}}}
	tests := []struct {
		name   string
		mutate func(*events.Node)
	}{
		{"attempt 2 of a batch at attempt 1", func(e *events.Node) { e.Attempt = 2 }},
		{"another lane count", func(e *events.Node) { e.Lanes = 2 }},
		{"another total", func(e *events.Node) { e.Total = 2; e.LaneSize = 2 }},
		{"another change set", func(e *events.Node) { e.Changes = other }},
		{"dry run flag flipped", func(e *events.Node) { e.DryRun = true }},
		{"another node at the position", func(e *events.Node) { e.Node = "not-in-the-batch" }},
	}
	for i, tt := range tests {
		forged := ev
		tt.mutate(&forged)
		if _, err := r.Run(ctx, forged); !errors.Is(err, runner.ErrRefused) {
			t.Errorf("%s: Run = %v, want ErrRefused", tt.name, err)
		}
		if _, err := r.Fail(ctx, forged, "exhausted"); !errors.Is(err, runner.ErrRefused) {
			t.Errorf("%s: Fail = %v, want ErrRefused", tt.name, err)
		}
		b, err := st.Batch(ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		if b.Refused != 2*(i+1) || b.LastRefusal == nil || b.LastRefusal.EventID != forged.ID() {
			t.Errorf("%s: batch refused = %d last %+v, want %d, naming %s", tt.name, b.Refused, b.LastRefusal, 2*(i+1), forged.ID())
		}
	}
	n, err := admin.CoreV1().Nodes().Get(ctx, ev.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := n.Labels["nodebatch.dev/forged"]; ok {
		t.Errorf("a forged event changed the node: label = %q", v)
	}
	lanes, err := st.Lanes(ctx, "b1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(lanes) != 1 || lanes[0].Counts.Done() != 0 {
		t.Errorf("lanes = %+v, want one lane with nothing counted", lanes)
	}
	// The genuine event still goes through.
	if _, err := r.Run(ctx, ev); err != nil {
		t.Fatalf("genuine event: %v", err)
	}
	if doc, err := st.Node(ctx, "b1", ev.Node); err != nil || doc.State != model.NodeSucceeded || !doc.Changed {
		t.Errorf("genuine event's result = %+v, %v, want succeeded, changed", doc, err)
	}
}

// TestEarlierAttemptAfterRetry: publishing attempt 1 failed part-way (the
// batch is failed with a cancel, events already out), then a retry started
// attempt 2, which clears the cancel. A late event of attempt 1 must not
// patch the node now that no cancel stops it: it is refused.
func TestEarlierAttemptAfterRetry(t *testing.T) {
	st, admin, ev, r := realSetup(t, change.Set{Labels: []change.Label{{Key: "nodebatch.dev/late", Value: "yes"}}})
	ctx := context.Background()
	if err := st.Fail(ctx, "b1", "publishing the node events failed", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartAttempt(ctx, "b1", store.Attempt{Number: 2, Lanes: 1, Total: 1, StartedAt: time.Now(), Names: []string{ev.Node}},
		[]store.LaneDoc{{Attempt: 2, Lane: 0, Size: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, ev); !errors.Is(err, runner.ErrRefused) {
		t.Errorf("Run of an attempt-1 event at attempt 2 = %v, want ErrRefused", err)
	}
	n, err := admin.CoreV1().Nodes().Get(ctx, ev.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Labels["nodebatch.dev/late"]; ok {
		t.Errorf("an event of an earlier attempt patched the node: %v", n.Labels)
	}
	lanes, err := st.Lanes(ctx, "b1", 1)
	if err != nil || len(lanes) != 1 || lanes[0].Counts.Done() != 0 {
		t.Errorf("attempt 1 lanes = %+v, %v: the late event was counted", lanes, err)
	}
	// The attempt's own event goes through.
	ev.Attempt = 2
	if _, err := r.Run(ctx, ev); err != nil {
		t.Fatalf("attempt 2 event: %v", err)
	}
}

// TestUnknownSurvivesRetry: a node dead-lettered after a landed write
// (its key unknown) is re-run by a retry, which finds it already at the
// target. The new result must not claim "unchanged" with the batch's own
// value as before: the key stays unknown, and revert still skips it.
func TestUnknownSurvivesRetry(t *testing.T) {
	const key = "nodebatch.dev/retry"
	st, _, ev, r := realSetup(t, change.Set{Labels: []change.Label{{Key: key, Value: "new"}}})
	ctx := context.Background()
	rctx, cancel := context.WithCancel(ctx)
	lr := &runner.Runner{Store: st, Patcher: &lossy{Patcher: r.Patcher, land: true, cancel: cancel}}
	if _, err := lr.Run(rctx, ev); !errors.Is(err, runner.ErrTransient) {
		t.Fatalf("Run with the record failing = %v, want a transient error", err)
	}
	if _, err := r.Fail(ctx, ev, "delivery attempts exhausted"); err != nil {
		t.Fatal(err)
	}
	b, err := st.Batch(ctx, "b1")
	if err != nil || !b.State.Final() {
		t.Fatalf("batch = %+v, %v; want final", b, err)
	}
	if _, err := st.StartAttempt(ctx, "b1", store.Attempt{Number: 2, Lanes: 1, Total: 1, StartedAt: time.Now(), Adjust: model.Counts{Failed: 1}, Names: []string{ev.Node}},
		[]store.LaneDoc{{Attempt: 2, Lane: 0, Size: 1}}); err != nil {
		t.Fatal(err)
	}
	ev.Attempt = 2
	if _, err := r.Run(ctx, ev); err != nil {
		t.Fatalf("retry: %v", err)
	}
	doc, err := st.Node(ctx, "b1", ev.Node)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Attempt != 2 || doc.State != model.NodeSucceeded || !doc.Changed {
		t.Errorf("retried result = attempt %d %s changed %v, want attempt 2 succeeded changed", doc.Attempt, doc.State, doc.Changed)
	}
	if diff := cmp.Diff([]string{"label:" + key}, doc.Unknown); diff != "" {
		t.Errorf("unknown after the retry (-want +got):\n%s", diff)
	}
	if _, skip := runner.RevertSet(*doc); skip == "" {
		t.Errorf("RevertSet of the retried result restores a guess; want a skip")
	}
}
