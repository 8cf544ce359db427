// Package storetest is the conformance suite of batch stores, as
// gocloud.dev's drivers share drivertest: the Firestore store
// (shared/store, against the emulator) and the in-memory one
// (shared/store/memstore) both run it, so the handlers' and the runner's
// unit tests on the in-memory store test what production does. Each case
// pins one part of the recording protocol (docs/design.md "Pipeline"):
// exactly-once counting, the lane's update-time precondition, a lane that
// moved under a writer, already-exists on create, finish-once, idempotency
// keys, page tokens, pending intents, names documents, the requester of
// each attempt, the size limits.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Store is every call of a batch store the suite checks: the union of
// what functions/runner and functions/batch declare.
type Store interface {
	Create(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) error
	WriteNames(ctx context.Context, id string, attempt int, names []string) error
	BatchForKey(ctx context.Context, owner, key, fingerprint string) (string, error)
	Batch(ctx context.Context, id string) (*store.BatchDoc, error)
	Fail(ctx context.Context, id, reason string, now time.Time) error
	Lane(ctx context.Context, batchID string, attempt, lane int) (*store.Lane, error)
	UpdateLane(ctx context.Context, batchID string, l *store.Lane, pos int) error
	LaneOpen(ctx context.Context, batchID string, attempt int) (bool, error)
	BatchAndLane(ctx context.Context, batchID string, attempt, lane, index int) (*store.BatchDoc, *store.Lane, []string, error)
	CountNode(ctx context.Context, batchID string, n *store.NodeDoc, l *store.Lane) error
	WriteIntent(ctx context.Context, batchID string, l *store.Lane, pos int, in store.Intent) error
	Refuse(ctx context.Context, id string, r store.Refusal) error
	Lanes(ctx context.Context, batchID string, attempt int) ([]store.LaneDoc, error)
	RecordNode(ctx context.Context, batchID string, n *store.NodeDoc) (*store.NodeDoc, error)
	SetNode(ctx context.Context, batchID string, n *store.NodeDoc) error
	Node(ctx context.Context, batchID, node string) (*store.NodeDoc, error)
	Nodes(ctx context.Context, batchID, after string, limit int) ([]store.NodeDoc, string, error)
	Finish(ctx context.Context, id string, final func(*store.BatchDoc) *store.BatchDoc) (bool, error)
	RecordCancel(ctx context.Context, id string, c store.Cancel) (*store.BatchDoc, bool, error)
	StartAttempt(ctx context.Context, id string, a store.Attempt, lanes []store.LaneDoc) (*store.BatchDoc, error)
	CreateRevert(ctx context.Context, b *store.BatchDoc, lanes []store.LaneDoc) (string, error)
	NodesWhere(ctx context.Context, batchID, field string, value any) ([]store.NodeDoc, error)
	AddRedelivery(ctx context.Context, batchID string, attempt, lane int) error
	History(ctx context.Context, q store.HistoryQuery) ([]store.BatchDoc, *store.Cursor, error)
}

// Run runs every case on a store from open, which returns an empty store
// of its own for each case (cases run in parallel).
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(context.Context, *testing.T, Store)
	}{
		{"CreateThenRead", testCreateThenRead},
		{"CreateExisting", testCreateExisting},
		{"Impact", testImpact},
		{"Idempotency", testIdempotency},
		{"Missing", testMissing},
		{"CountOnce", testCountOnce},
		{"LaneMovedUnderCount", testLaneMovedUnderCount},
		{"LaneMovedUnderUpdate", testLaneMovedUnderUpdate},
		{"PendingIntents", testPendingIntents},
		{"RedeliveryMovesLane", testRedeliveryMovesLane},
		{"RecordNode", testRecordNode},
		{"FinishOnce", testFinishOnce},
		{"FinishRereadsMovedBatch", testFinishRereadsMovedBatch},
		{"CancelOnce", testCancelOnce},
		{"Fail", testFail},
		{"StartAttempt", testStartAttempt},
		{"Revert", testRevert},
		{"NodePages", testNodePages},
		{"NodesWhere", testNodesWhere},
		{"HistoryPages", testHistoryPages},
		{"Names", testNames},
		{"Limits", testLimits},
		{"LaneOpen", testLaneOpen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t.Context(), t, open(t))
		})
	}
}

// at is a time at microsecond precision (what Firestore keeps).
var at = time.Date(2026, 11, 27, 3, 0, 0, 123456000, time.UTC)

// opts compares documents as stored: nil and empty alike.
var opts = cmp.Options{cmpopts.EquateEmpty()}

// newBatch is a running batch id of owner with lanes lanes of size each,
// attempt 1, asked for by owner.
func newBatch(id, owner string, lanes, size int) (*store.BatchDoc, []store.LaneDoc) {
	b := &store.BatchDoc{
		ID: id, Owner: owner, Action: model.ActionLabel,
		Changes:   change.Summary{Labels: []string{"team=ml"}},
		ChangeSet: `{"labels":[{"key":"team","value":"ml"}]}`,
		Total:     lanes * size, Concurrency: lanes, Lanes: lanes, AttemptTotal: lanes * size, Attempt: 1,
		State: model.StateRunning, CreatedAt: at, StartedAt: at, AttemptStartedAt: at,
		Requesters: []store.Requester{{Attempt: 1, Subject: owner, User: owner, Groups: []string{"team-a"}, At: at}},
	}
	ls := make([]store.LaneDoc, lanes)
	for i := range ls {
		ls[i] = store.LaneDoc{Attempt: 1, Lane: i, Size: size}
	}
	return b, ls
}

// create creates a batch as newBatch makes it, failing the test on error.
func create(ctx context.Context, t *testing.T, st Store, id string, lanes, size int) (*store.BatchDoc, []store.LaneDoc) {
	t.Helper()
	b, ls := newBatch(id, "alice", lanes, size)
	if err := st.Create(ctx, b, ls); err != nil {
		t.Fatalf("Create(%s) error = %v", id, err)
	}
	return b, ls
}

func readLane(ctx context.Context, t *testing.T, st Store, id string, attempt, lane int) *store.Lane {
	t.Helper()
	l, err := st.Lane(ctx, id, attempt, lane)
	if err != nil {
		t.Fatalf("Lane(%s, %d, %d) error = %v", id, attempt, lane, err)
	}
	return l
}

func readBatch(ctx context.Context, t *testing.T, st Store, id string) *store.BatchDoc {
	t.Helper()
	b, err := st.Batch(ctx, id)
	if err != nil {
		t.Fatalf("Batch(%s) error = %v", id, err)
	}
	return b
}

// counted is the result of node at pos, succeeded, and l counting it the
// way the runner does.
func counted(l *store.LaneDoc, pos int, node string) *store.NodeDoc {
	l.Mark(pos)
	l.Counts.Succeeded++
	l.CurrentNode = node
	l.UpdatedAt = at.Add(time.Duration(pos+1) * time.Second)
	return &store.NodeDoc{Node: node, State: model.NodeSucceeded, Changed: true, Lane: l.Lane, Position: pos, Attempt: l.Attempt, StartedAt: at, FinishedAt: at}
}

func testCreateThenRead(ctx context.Context, t *testing.T, st Store) {
	b, lanes := newBatch("b1", "alice", 2, 3)
	b.IdempotencyKey, b.IdempotencyFingerprint = "k", "f"
	if err := st.Create(ctx, b, lanes); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	want := *b
	want.IdempotencyFingerprint = "" // kept with the key, not the batch
	if diff := cmp.Diff(&want, readBatch(ctx, t, st, "b1"), opts); diff != "" {
		t.Errorf("Batch(b1) (-want +got):\n%s", diff)
	}
	got, err := st.Lanes(ctx, "b1", 0)
	if err != nil {
		t.Fatalf("Lanes() error = %v", err)
	}
	if diff := cmp.Diff(lanes, got, opts); diff != "" {
		t.Errorf("Lanes(b1, 0) (-want +got):\n%s", diff)
	}
	l := readLane(ctx, t, st, "b1", 1, 1)
	if diff := cmp.Diff(lanes[1], l.Doc, opts); diff != "" {
		t.Errorf("Lane(b1, 1, 1) (-want +got):\n%s", diff)
	}
	if l.UpdateTime.IsZero() {
		t.Errorf("Lane(b1, 1, 1).UpdateTime is zero, want the precondition of the next write")
	}
	// A change to what was written or read changes nothing stored.
	b.Owner, l.Doc.Size = "mallory", 99
	if got := readBatch(ctx, t, st, "b1").Owner; got != "alice" {
		t.Errorf("Batch(b1).Owner = %q after changing the written document, want alice", got)
	}
	if got := readLane(ctx, t, st, "b1", 1, 1).Doc.Size; got != 3 {
		t.Errorf("Lane(b1, 1, 1).Size = %d after changing the read document, want 3", got)
	}
}

// testImpact: the predicted impact a batch is created with is stored
// bounded (at most MaxImpactBudgets budgets, an error of at most
// MaxImpactError bytes), read back as written, and a batch without one
// reads back without one.
func testImpact(ctx context.Context, t *testing.T, st Store) {
	b, lanes := newBatch("b1", "alice", 1, 2)
	b.Impact = &store.Impact{Summary: "would evict 3 pods on 2 nodes", TaintedNodes: 2, NodesWithEvictions: 2, Evictions: 3, EvictNow: 2,
		DaemonSetPods: 1, BudgetsViolated: 1, Budgets: []store.ImpactBudget{{Namespace: "w", Name: "web", DisruptionsAllowed: 1, Evictions: 2}}, ComputedAt: at}
	if err := st.Create(ctx, b, lanes); err != nil {
		t.Fatalf("Create(b1) error = %v", err)
	}
	want := *b.Impact
	want.Budgets = slices.Clone(b.Impact.Budgets)
	b.Impact.Budgets[0].Name = "changed after the write"
	if diff := cmp.Diff(&want, readBatch(ctx, t, st, "b1").Impact, opts); diff != "" {
		t.Errorf("Batch(b1).Impact (-want +got):\n%s", diff)
	}

	big, lanes := newBatch("b2", "alice", 1, 1)
	big.Impact = &store.Impact{Summary: "many", Error: strings.Repeat("é", store.MaxImpactError), ComputedAt: at}
	for i := range store.MaxImpactBudgets + 5 {
		big.Impact.Budgets = append(big.Impact.Budgets, store.ImpactBudget{Namespace: "w", Name: fmt.Sprintf("pdb-%03d", i), Evictions: 2})
	}
	big.Impact.BudgetsViolated = len(big.Impact.Budgets)
	if err := st.Create(ctx, big, lanes); err != nil {
		t.Fatalf("Create(b2) error = %v", err)
	}
	got := readBatch(ctx, t, st, "b2").Impact
	if got == nil {
		t.Fatalf("Batch(b2).Impact = nil, want the bounded impact")
	}
	if len(got.Budgets) != store.MaxImpactBudgets || !got.BudgetsTruncated || got.BudgetsViolated != store.MaxImpactBudgets+5 {
		t.Errorf("Batch(b2).Impact: %d budgets, truncated %v, %d violated; want %d, true, %d", len(got.Budgets), got.BudgetsTruncated, got.BudgetsViolated,
			store.MaxImpactBudgets, store.MaxImpactBudgets+5)
	}
	if got.Budgets[store.MaxImpactBudgets-1].Name != fmt.Sprintf("pdb-%03d", store.MaxImpactBudgets-1) {
		t.Errorf("Batch(b2).Impact.Budgets ends with %q, want the first %d in order", got.Budgets[len(got.Budgets)-1].Name, store.MaxImpactBudgets)
	}
	if len(got.Error) > store.MaxImpactError || !utf8.ValidString(got.Error) {
		t.Errorf("Batch(b2).Impact.Error: %d bytes (valid UTF-8 %v), want at most %d, valid", len(got.Error), utf8.ValidString(got.Error), store.MaxImpactError)
	}

	plain, lanes := newBatch("b3", "alice", 1, 1)
	if err := st.Create(ctx, plain, lanes); err != nil {
		t.Fatalf("Create(b3) error = %v", err)
	}
	if got := readBatch(ctx, t, st, "b3").Impact; got != nil {
		t.Errorf("Batch(b3).Impact = %+v, want nil (created without one)", got)
	}
}

func testCreateExisting(ctx context.Context, t *testing.T, st Store) {
	b, _ := newBatch("b1", "alice", 1, 1)
	b.IdempotencyKey = "k"
	if err := st.Create(ctx, b, []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 1}}); err != nil {
		t.Fatalf("Create(b1) error = %v", err)
	}
	again, lanes := newBatch("b1", "bob", 2, 1)
	if err := st.Create(ctx, again, lanes); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create(b1) again = %v, want ErrExists", err)
	}
	if got := readBatch(ctx, t, st, "b1").Owner; got != "alice" {
		t.Errorf("Batch(b1).Owner = %q after a refused Create, want alice", got)
	}
	if _, err := st.Lane(ctx, "b1", 1, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lane(b1, 1, 1) after a refused Create = %v, want ErrNotFound (nothing of it written)", err)
	}
	// The key taken: another batch with it is refused as a whole.
	other, lanes := newBatch("b2", "alice", 1, 1)
	other.IdempotencyKey = "k"
	if err := st.Create(ctx, other, lanes); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create(b2) with b1's idempotency key = %v, want ErrExists", err)
	}
	if _, err := st.Batch(ctx, "b2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Batch(b2) after its refused Create = %v, want ErrNotFound", err)
	}
	// The same key of another owner is another key.
	theirs, lanes := newBatch("b3", "bob", 1, 1)
	theirs.IdempotencyKey = "k"
	if err := st.Create(ctx, theirs, lanes); err != nil {
		t.Errorf("Create(b3) with bob's key k = %v, want nil", err)
	}
}

func testIdempotency(ctx context.Context, t *testing.T, st Store) {
	if _, err := st.BatchForKey(ctx, "alice", "k", "f"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("BatchForKey(alice, k) before any batch = %v, want ErrNotFound", err)
	}
	b, lanes := newBatch("b1", "alice", 1, 1)
	b.IdempotencyKey, b.IdempotencyFingerprint = "k", "f"
	if err := st.Create(ctx, b, lanes); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	old, lanes := newBatch("b2", "alice", 1, 1)
	old.IdempotencyKey = "no-fingerprint" // as recorded before fingerprints existed
	if err := st.Create(ctx, old, lanes); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	tests := []struct {
		owner, key, fingerprint string
		id                      string
		err                     error
	}{
		{"alice", "k", "f", "b1", nil},
		{"alice", "k", "other", "b1", store.ErrIdempotencyMismatch},
		{"bob", "k", "f", "", store.ErrNotFound},
		{"alice", "K", "f", "", store.ErrNotFound},
		{"alice", "no-fingerprint", "any", "b2", nil},
	}
	for _, tc := range tests {
		id, err := st.BatchForKey(ctx, tc.owner, tc.key, tc.fingerprint)
		if id != tc.id || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("BatchForKey(%s, %s, %s) = %q, %v; want %q, %v", tc.owner, tc.key, tc.fingerprint, id, err, tc.id, tc.err)
		}
	}
}

func testMissing(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	calls := map[string]error{}
	_, calls["Batch"] = st.Batch(ctx, "none")
	_, calls["Lane"] = st.Lane(ctx, "b1", 1, 5)
	_, calls["Lane of attempt 2"] = st.Lane(ctx, "b1", 2, 0)
	_, calls["Node"] = st.Node(ctx, "b1", "n")
	_, _, _, calls["BatchAndLane, no batch"] = st.BatchAndLane(ctx, "none", 1, 0, -1)
	_, _, _, calls["BatchAndLane, no lane"] = st.BatchAndLane(ctx, "b1", 1, 1, -1)
	_, calls["Finish"] = st.Finish(ctx, "none", func(b *store.BatchDoc) *store.BatchDoc { return b })
	_, _, calls["RecordCancel"] = st.RecordCancel(ctx, "none", store.Cancel{By: "x"})
	_, calls["StartAttempt"] = st.StartAttempt(ctx, "none", store.Attempt{Number: 2}, nil)
	for name, err := range calls {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of what does not exist = %v, want ErrNotFound", name, err)
		}
	}
	if err := st.Fail(ctx, "none", "r", at); err == nil {
		t.Errorf("Fail(none) = nil, want an error")
	}
	lanes, err := st.Lanes(ctx, "none", 0)
	if err != nil || len(lanes) != 0 {
		t.Errorf("Lanes(none) = %v, %v; want none, nil", lanes, err)
	}
	nodes, next, err := st.Nodes(ctx, "b1", "", 10)
	if err != nil || len(nodes) != 0 || next != "" {
		t.Errorf("Nodes(b1) of a batch without results = %v, %q, %v; want none", nodes, next, err)
	}
}

func testCountOnce(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 2)
	l := readLane(ctx, t, st, "b1", 1, 0)
	before := l.UpdateTime
	n := counted(&l.Doc, 0, "n-a")
	if err := st.CountNode(ctx, "b1", n, l); err != nil {
		t.Fatalf("CountNode(n-a) error = %v", err)
	}
	if l.UpdateTime.Equal(before) {
		t.Errorf("CountNode did not advance the lane's UpdateTime (%v)", l.UpdateTime)
	}
	got, err := st.Node(ctx, "b1", "n-a")
	if err != nil {
		t.Fatalf("Node(n-a) error = %v", err)
	}
	if diff := cmp.Diff(n, got, opts); diff != "" {
		t.Errorf("Node(n-a) (-want +got):\n%s", diff)
	}
	cur := readLane(ctx, t, st, "b1", 1, 0)
	if !cur.Doc.Has(0) || cur.Doc.Counts.Succeeded != 1 || cur.Doc.CurrentNode != "n-a" || !cur.UpdateTime.Equal(l.UpdateTime) {
		t.Errorf("lane after CountNode = %+v at %v, want position 0 counted once at %v", cur.Doc, cur.UpdateTime, l.UpdateTime)
	}
	// The same node counted again (a duplicate delivery on a fresh read of
	// the lane): its result exists, nothing is written.
	again := counted(&cur.Doc, 0, "n-a")
	again.Reason = "duplicate"
	if err := st.CountNode(ctx, "b1", again, cur); !errors.Is(err, store.ErrExists) {
		t.Errorf("CountNode(n-a) again = %v, want ErrExists", err)
	}
	if got := readLane(ctx, t, st, "b1", 1, 0).Doc.Counts.Succeeded; got != 1 {
		t.Errorf("lane counts %d succeeded after a duplicate CountNode, want 1", got)
	}
	if got, _ := st.Node(ctx, "b1", "n-a"); got == nil || got.Reason != "" {
		t.Errorf("Node(n-a) after a duplicate CountNode = %+v, want the first result", got)
	}
}

func testLaneMovedUnderCount(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 2)
	l1 := readLane(ctx, t, st, "b1", 1, 0)
	l2 := readLane(ctx, t, st, "b1", 1, 0)
	if err := st.CountNode(ctx, "b1", counted(&l1.Doc, 0, "n-a"), l1); err != nil {
		t.Fatalf("CountNode(n-a) error = %v", err)
	}
	if err := st.CountNode(ctx, "b1", counted(&l2.Doc, 1, "n-b"), l2); !errors.Is(err, store.ErrLaneMoved) {
		t.Errorf("CountNode(n-b) on a lane read before n-a was counted = %v, want ErrLaneMoved", err)
	}
	if _, err := st.Node(ctx, "b1", "n-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Node(n-b) after CountNode refused = %v, want ErrNotFound (one commit: nothing written)", err)
	}
	if cur := readLane(ctx, t, st, "b1", 1, 0); cur.Doc.Has(1) || cur.Doc.Counts.Succeeded != 1 {
		t.Errorf("lane after a refused CountNode = %+v, want only position 0 counted", cur.Doc)
	}
}

func testLaneMovedUnderUpdate(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 3)
	l := readLane(ctx, t, st, "b1", 1, 0)
	stale := readLane(ctx, t, st, "b1", 1, 0)
	for pos, name := range []string{"n-a", "n-b"} {
		n := counted(&l.Doc, pos, name)
		if _, err := st.RecordNode(ctx, "b1", n); err != nil {
			t.Fatalf("RecordNode(%s) error = %v", name, err)
		}
		// The same *Lane again: its UpdateTime is the last write's.
		if err := st.UpdateLane(ctx, "b1", l, pos); err != nil {
			t.Fatalf("UpdateLane(position %d) error = %v", pos, err)
		}
	}
	counted(&stale.Doc, 2, "n-c")
	if err := st.UpdateLane(ctx, "b1", stale, 2); !errors.Is(err, store.ErrLaneMoved) {
		t.Errorf("UpdateLane on a lane read before two counts = %v, want ErrLaneMoved", err)
	}
	cur := readLane(ctx, t, st, "b1", 1, 0)
	if !cur.Doc.Has(0) || !cur.Doc.Has(1) || cur.Doc.Has(2) || cur.Doc.Counts.Succeeded != 2 || cur.Doc.CurrentNode != "n-b" {
		t.Errorf("lane after UpdateLane = %+v, want positions 0 and 1 counted", cur.Doc)
	}
}

func testPendingIntents(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 3)
	stale := readLane(ctx, t, st, "b1", 1, 0)
	l := readLane(ctx, t, st, "b1", 1, 0)
	v := "ml"
	intent := func(node string) store.Intent {
		return store.Intent{Node: node, Attempt: 1, ResourceVersion: "41", At: at,
			Before: map[string]*string{"label:team": nil}, After: map[string]*string{"label:team": &v}}
	}
	for pos, name := range []string{"n-a", "n-b"} {
		before := l.UpdateTime
		if err := st.WriteIntent(ctx, "b1", l, pos, intent(name)); err != nil {
			t.Fatalf("WriteIntent(position %d) error = %v", pos, err)
		}
		if l.UpdateTime.Equal(before) || l.Doc.PendingAt(pos, name) == nil {
			t.Errorf("WriteIntent(position %d) left the lane at %v with pending %v, want a new update time and the intent", pos, l.UpdateTime, l.Doc.Pending)
		}
	}
	want := map[string]store.Intent{"0": intent("n-a"), "1": intent("n-b")}
	if diff := cmp.Diff(want, readLane(ctx, t, st, "b1", 1, 0).Doc.Pending, opts); diff != "" {
		t.Errorf("pending intents (-want +got):\n%s", diff)
	}
	if err := st.WriteIntent(ctx, "b1", stale, 2, intent("n-c")); !errors.Is(err, store.ErrLaneMoved) {
		t.Errorf("WriteIntent on a lane read before = %v, want ErrLaneMoved", err)
	}
	// Counting a position removes its intent, and only its intent.
	if err := st.CountNode(ctx, "b1", counted(&l.Doc, 0, "n-a"), l); err != nil {
		t.Fatalf("CountNode(n-a) error = %v", err)
	}
	delete(want, "0")
	if diff := cmp.Diff(want, readLane(ctx, t, st, "b1", 1, 0).Doc.Pending, opts); diff != "" {
		t.Errorf("pending intents after counting position 0 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, l.Doc.Pending, opts); diff != "" {
		t.Errorf("the counted *Lane's pending intents (-want +got):\n%s", diff)
	}
	// Whatever the writer's copy holds: the count removes its own
	// position's intent field by field, never the others.
	if err := st.WriteIntent(ctx, "b1", l, 2, intent("n-c")); err != nil {
		t.Fatalf("WriteIntent(position 2) error = %v", err)
	}
	l.Doc.Pending = nil
	if err := st.UpdateLane(ctx, "b1", l, 2); err != nil {
		t.Fatalf("UpdateLane(position 2) error = %v", err)
	}
	if diff := cmp.Diff(want, readLane(ctx, t, st, "b1", 1, 0).Doc.Pending, opts); diff != "" {
		t.Errorf("pending intents after counting position 2 from a copy without them (-want +got):\n%s", diff)
	}
}

func testRedeliveryMovesLane(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	l := readLane(ctx, t, st, "b1", 1, 0)
	for range 2 {
		if err := st.AddRedelivery(ctx, "b1", 1, 0); err != nil {
			t.Fatalf("AddRedelivery() error = %v", err)
		}
	}
	if err := st.WriteIntent(ctx, "b1", l, 0, store.Intent{Node: "n-a", Attempt: 1}); !errors.Is(err, store.ErrLaneMoved) {
		t.Errorf("WriteIntent after AddRedelivery = %v, want ErrLaneMoved", err)
	}
	if got := readLane(ctx, t, st, "b1", 1, 0).Doc.Redeliveries; got != 2 {
		t.Errorf("Redeliveries = %d, want 2", got)
	}
}

func testRecordNode(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	v1, v2 := "a", "b"
	first := &store.NodeDoc{Node: "n-a", State: model.NodeSucceeded, Changed: true, Attempt: 1, Reason: "first",
		Before: map[string]*string{"label:x": nil}, After: map[string]*string{"label:x": &v1}, Unknown: []string{"label:u"}, FinishedAt: at}
	if stand, err := st.RecordNode(ctx, "b1", first); err != nil || stand.Reason != "first" {
		t.Fatalf("RecordNode(first) = %+v, %v; want first", stand, err)
	}
	dup := &store.NodeDoc{Node: "n-a", State: model.NodeFailed, Attempt: 1, Reason: "dead letter"}
	stand, err := st.RecordNode(ctx, "b1", dup)
	if err != nil {
		t.Fatalf("RecordNode(dup) error = %v", err)
	}
	if diff := cmp.Diff(first, stand, opts); diff != "" {
		t.Errorf("RecordNode of the same attempt again: the result that stands (-want +got):\n%s", diff)
	}
	// A later attempt replaces it, keeping the history and the unknown key.
	retry := &store.NodeDoc{Node: "n-a", State: model.NodeSucceeded, Changed: true, Attempt: 2, Reason: "retry",
		Before: map[string]*string{"label:y": nil}, After: map[string]*string{"label:y": &v2}, FinishedAt: at}
	if stand, err = st.RecordNode(ctx, "b1", retry); err != nil {
		t.Fatalf("RecordNode(retry) error = %v", err)
	}
	want := &store.NodeDoc{Node: "n-a", State: model.NodeSucceeded, Changed: true, Attempt: 2, Reason: "retry",
		Before: map[string]*string{"label:y": nil}, After: map[string]*string{"label:y": &v2, "label:u": nil}, Unknown: []string{"label:u"}, FinishedAt: at,
		History: []store.PriorResult{{Attempt: 1, State: model.NodeSucceeded, Reason: "first", Changed: true,
			Before: map[string]*string{"label:x": nil}, After: map[string]*string{"label:x": &v1}, Unknown: []string{"label:u"}, FinishedAt: at}}}
	if diff := cmp.Diff(want, stand, opts); diff != "" {
		t.Errorf("RecordNode(attempt 2) stands (-want +got):\n%s", diff)
	}
	got, err := st.Node(ctx, "b1", "n-a")
	if err != nil {
		t.Fatalf("Node() error = %v", err)
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("Node(n-a) after attempt 2 (-want +got):\n%s", diff)
	}
	for a := 3; a <= 3+store.MaxHistory; a++ {
		if _, err := st.RecordNode(ctx, "b1", &store.NodeDoc{Node: "n-a", State: model.NodeFailed, Attempt: a}); err != nil {
			t.Fatalf("RecordNode(attempt %d) error = %v", a, err)
		}
	}
	got, err = st.Node(ctx, "b1", "n-a")
	if err != nil {
		t.Fatalf("Node() error = %v", err)
	}
	var attempts []int
	for _, h := range got.History {
		attempts = append(attempts, h.Attempt)
	}
	if want := []int{3, 4, 5, 6, 7}; !slices.Equal(attempts, want) {
		t.Errorf("history of attempts %v after attempt %d, want the newest %v", attempts, got.Attempt, want)
	}
}

func testFinishOnce(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	if did, err := st.Finish(ctx, "b1", func(*store.BatchDoc) *store.BatchDoc { return nil }); did || err != nil {
		t.Errorf("Finish with nothing to write = %v, %v; want false, nil", did, err)
	}
	if got := readBatch(ctx, t, st, "b1").State; got != model.StateRunning {
		t.Errorf("state after a Finish that wrote nothing = %s, want running", got)
	}
	const callers = 4
	var wg sync.WaitGroup
	dids := make([]bool, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			dids[i], errs[i] = st.Finish(ctx, "b1", func(cur *store.BatchDoc) *store.BatchDoc {
				nb := *cur
				nb.State, nb.Reason, nb.FinishedAt = model.StateSucceeded, fmt.Sprint("by ", i), at.Add(time.Minute)
				nb.Counts = model.Counts{Succeeded: 1}
				nb.Timing = &model.Timing{Attempts: 1, NodesPerSecond: 2}
				nb.Owner = "mallory" // not one of the fields Finish writes
				return &nb
			})
		})
	}
	wg.Wait()
	n := 0
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("Finish #%d error = %v", i, errs[i])
		}
		if dids[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d of %d concurrent Finish calls made the batch final, want exactly 1", n, callers)
	}
	got := readBatch(ctx, t, st, "b1")
	if got.State != model.StateSucceeded || !strings.HasPrefix(got.Reason, "by ") || got.Counts.Succeeded != 1 ||
		got.Timing == nil || got.Timing.NodesPerSecond != 2 || !got.FinishedAt.Equal(at.Add(time.Minute)) {
		t.Errorf("final batch = %+v, want state, reason, finished_at, counts and timing written", got)
	}
	if got.Owner != "alice" {
		t.Errorf("Owner = %q after Finish, want alice (Finish writes only the final fields)", got.Owner)
	}
	if did, err := st.Finish(ctx, "b1", func(b *store.BatchDoc) *store.BatchDoc { t.Error("final called on a final batch"); return b }); did || err != nil {
		t.Errorf("Finish of a final batch = %v, %v; want false, nil", did, err)
	}
}

func testFinishRereadsMovedBatch(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	calls := 0
	did, err := st.Finish(ctx, "b1", func(cur *store.BatchDoc) *store.BatchDoc {
		calls++
		if calls == 1 { // another writer moves the batch between read and write
			if err := st.Refuse(ctx, "b1", store.Refusal{EventID: "e", Reason: "forged", At: at}); err != nil {
				t.Errorf("Refuse() error = %v", err)
			}
		}
		nb := *cur
		nb.State = model.StateSucceeded
		return &nb
	})
	if !did || err != nil {
		t.Fatalf("Finish() = %v, %v; want true, nil", did, err)
	}
	if calls != 2 {
		t.Errorf("final called %d times, want 2 (a batch that moved is read again)", calls)
	}
	if got := readBatch(ctx, t, st, "b1"); got.State != model.StateSucceeded || got.Refused != 1 {
		t.Errorf("batch = state %s, refused %d; want succeeded with the refusal kept", got.State, got.Refused)
	}
}

func testCancelOnce(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	c1 := store.Cancel{RequestedAt: at, By: "alice", Reason: "first"}
	b, did, err := st.RecordCancel(ctx, "b1", c1)
	if err != nil || !did || !cmp.Equal(&c1, b.Cancel) {
		t.Fatalf("RecordCancel(first) = %+v, %v, %v; want the batch with the cancel, true", b, did, err)
	}
	b, did, err = st.RecordCancel(ctx, "b1", store.Cancel{RequestedAt: at, By: "bob", Reason: "second"})
	if err != nil || did || !cmp.Equal(&c1, b.Cancel) {
		t.Errorf("RecordCancel(second) = %+v, %v, %v; want the first cancel standing, false", b.Cancel, did, err)
	}
	if got := readBatch(ctx, t, st, "b1").Cancel; !cmp.Equal(&c1, got) {
		t.Errorf("Cancel = %+v, want %+v", got, c1)
	}
	create(ctx, t, st, "b2", 1, 1)
	finish(ctx, t, st, "b2")
	if b, did, err := st.RecordCancel(ctx, "b2", c1); err != nil || did || b.Cancel != nil {
		t.Errorf("RecordCancel of a final batch = %+v, %v, %v; want no cancel, false", b, did, err)
	}
}

// finish makes batch id final (succeeded).
func finish(ctx context.Context, t *testing.T, st Store, id string) {
	t.Helper()
	did, err := st.Finish(ctx, id, func(cur *store.BatchDoc) *store.BatchDoc {
		nb := *cur
		nb.State, nb.FinishedAt = model.StateSucceeded, at
		return &nb
	})
	if err != nil || !did {
		t.Fatalf("Finish(%s) = %v, %v", id, did, err)
	}
}

func testFail(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 1)
	if err := st.Fail(ctx, "b1", "publish failed", at); err != nil {
		t.Fatalf("Fail() error = %v", err)
	}
	want := &store.Cancel{RequestedAt: at, By: "nodebatch", Reason: "publish failed"}
	b := readBatch(ctx, t, st, "b1")
	if b.State != model.StateFailed || b.Reason != "publish failed" || !b.FinishedAt.Equal(at) || !cmp.Equal(want, b.Cancel) {
		t.Errorf("after Fail: state %s, reason %q, finished %v, cancel %+v; want failed with a cancel", b.State, b.Reason, b.FinishedAt, b.Cancel)
	}
	if err := st.Fail(ctx, "b1", "again", at.Add(time.Hour)); err != nil {
		t.Fatalf("Fail() again error = %v", err)
	}
	if got := readBatch(ctx, t, st, "b1").Reason; got != "publish failed" {
		t.Errorf("reason after Fail of a final batch = %q, want it unchanged", got)
	}
}

func testStartAttempt(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 2, 1)
	bob := store.Requester{Subject: "bob", User: "bob", Groups: []string{"ops"}, At: at}
	next := store.Attempt{Number: 2, Lanes: 1, Total: 1, Adjust: model.Counts{Failed: 1}, StartedAt: at.Add(time.Hour), Names: []string{"n-b"}, RequestedBy: bob}
	lanes := []store.LaneDoc{{Attempt: 2, Lane: 0, Size: 1}}
	if _, err := st.StartAttempt(ctx, "b1", next, lanes); !errors.Is(err, store.ErrNotFinal) {
		t.Errorf("StartAttempt of a running batch = %v, want ErrNotFinal", err)
	}
	if _, _, err := st.RecordCancel(ctx, "b1", store.Cancel{By: "alice", Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	finish(ctx, t, st, "b1")
	skip := next
	skip.Number = 3
	if _, err := st.StartAttempt(ctx, "b1", skip, []store.LaneDoc{{Attempt: 3, Size: 1}}); !errors.Is(err, store.ErrMoved) {
		t.Errorf("StartAttempt(3) of a batch at attempt 1 = %v, want ErrMoved", err)
	}
	got, err := st.StartAttempt(ctx, "b1", next, lanes)
	if err != nil {
		t.Fatalf("StartAttempt(2) error = %v", err)
	}
	if got.Attempt != 2 || got.Lanes != 1 || got.AttemptTotal != 1 || got.State != model.StateRunning || got.Adjust.Failed != 1 ||
		got.Cancel != nil || got.Reason != "" || !got.AttemptStartedAt.Equal(next.StartedAt) {
		t.Errorf("StartAttempt(2) = %+v, want attempt 2 running, adjusted, cancel cleared", got)
	}
	if diff := cmp.Diff(got, readBatch(ctx, t, st, "b1"), opts); diff != "" {
		t.Errorf("Batch after StartAttempt, against what StartAttempt returned (-want +got):\n%s", diff)
	}
	// Who asked, per attempt: the per-node path impersonates exactly them.
	for attempt, want := range map[int]string{1: "alice", 2: "bob"} {
		r, ok := got.RequesterOf(attempt)
		if !ok || r.Subject != want || r.Attempt != attempt {
			t.Errorf("RequesterOf(%d) = %+v, %v; want %s", attempt, r, ok, want)
		}
	}
	if l, err := st.Lanes(ctx, "b1", 2); err != nil || len(l) != 1 || l[0].Attempt != 2 {
		t.Errorf("Lanes(b1, 2) = %+v, %v; want the new attempt's lane", l, err)
	}
	if _, _, names, err := st.BatchAndLane(ctx, "b1", 2, 0, 0); err != nil || !slices.Equal(names, []string{"n-b"}) {
		t.Errorf("names of attempt 2 = %v, %v; want [n-b]", names, err)
	}
	finish(ctx, t, st, "b1")
	// The same attempt again (same number, same start): taken for a
	// commit of its own whose answer was lost, the batch as it is.
	if b, err := st.StartAttempt(ctx, "b1", next, lanes); err != nil || b.Attempt != 2 || b.State != model.StateSucceeded {
		t.Errorf("StartAttempt(2) repeated = %+v, %v; want the batch at attempt 2, nil", b, err)
	}
	other := next
	other.StartedAt = next.StartedAt.Add(time.Second)
	if _, err := st.StartAttempt(ctx, "b1", other, lanes); !errors.Is(err, store.ErrMoved) {
		t.Errorf("another StartAttempt(2) = %v, want ErrMoved", err)
	}
}

func testRevert(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "src", 1, 1)
	finish(ctx, t, st, "src")
	rv, lanes := newBatch("rv1", "alice", 1, 1)
	rv.Reverts, rv.Names = "src", []string{"n-a"}
	id, err := st.CreateRevert(ctx, rv, lanes)
	if err != nil || id != "rv1" {
		t.Fatalf("CreateRevert(rv1) = %q, %v; want rv1", id, err)
	}
	if got := readBatch(ctx, t, st, "src").RevertedBy; got != "rv1" {
		t.Errorf("src.RevertedBy = %q, want rv1", got)
	}
	if got := readBatch(ctx, t, st, "rv1"); got.Reverts != "src" || !got.Named {
		t.Errorf("revert batch = %+v, want reverting src, named", got)
	}
	if _, err := st.Lane(ctx, "rv1", 1, 0); err != nil {
		t.Errorf("Lane(rv1, 1, 0) error = %v", err)
	}
	again, lanes := newBatch("rv2", "alice", 1, 1)
	again.Reverts = "src"
	id, err = st.CreateRevert(ctx, again, lanes)
	if id != "rv1" || !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateRevert(rv2) of a reverted batch = %q, %v; want rv1, ErrExists", id, err)
	}
	if _, err := st.Batch(ctx, "rv2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Batch(rv2) = %v, want ErrNotFound", err)
	}
}

func testNodePages(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 5)
	for _, n := range []string{"n-d", "n-b", "n-e", "n-a", "n-c"} {
		if err := st.SetNode(ctx, "b1", &store.NodeDoc{Node: n, State: model.NodeSucceeded, Attempt: 1}); err != nil {
			t.Fatalf("SetNode(%s) error = %v", n, err)
		}
	}
	var pages [][]string
	var tokens []string
	after := ""
	for range 5 {
		nodes, next, err := st.Nodes(ctx, "b1", after, 2)
		if err != nil {
			t.Fatalf("Nodes(after %q) error = %v", after, err)
		}
		var page []string
		for _, n := range nodes {
			page = append(page, n.Node)
		}
		pages, tokens = append(pages, page), append(tokens, next)
		if after = next; after == "" {
			break
		}
	}
	if diff := cmp.Diff([][]string{{"n-a", "n-b"}, {"n-c", "n-d"}, {"n-e"}}, pages); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"n-b", "n-d", ""}, tokens); diff != "" {
		t.Errorf("page tokens (-want +got):\n%s", diff)
	}
	if nodes, next, err := st.Nodes(ctx, "b1", "", 5); err != nil || len(nodes) != 5 || next != "" {
		t.Errorf("Nodes(limit 5) of 5 = %d nodes, next %q, %v; want 5 and no next page", len(nodes), next, err)
	}
}

func testNodesWhere(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 1, 4)
	for _, n := range []store.NodeDoc{
		{Node: "n-a", State: model.NodeSucceeded, Changed: true},
		{Node: "n-b", State: model.NodeFailed},
		{Node: "n-c", State: model.NodeFailed, Changed: true},
		{Node: "n-d", State: model.NodeSkipped},
	} {
		if err := st.SetNode(ctx, "b1", &n); err != nil {
			t.Fatalf("SetNode(%s) error = %v", n.Node, err)
		}
	}
	tests := []struct {
		field string
		value any
		want  []string
	}{
		{"state", string(model.NodeFailed), []string{"n-b", "n-c"}},
		{"state", string(model.NodeCancelled), nil},
		{"changed", true, []string{"n-a", "n-c"}},
		{"changed", false, []string{"n-b", "n-d"}},
	}
	for _, tc := range tests {
		docs, err := st.NodesWhere(ctx, "b1", tc.field, tc.value)
		if err != nil {
			t.Fatalf("NodesWhere(%s == %v) error = %v", tc.field, tc.value, err)
		}
		var got []string
		for _, d := range docs {
			got = append(got, d.Node)
		}
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got, opts); diff != "" {
			t.Errorf("NodesWhere(%s == %v) (-want +got):\n%s", tc.field, tc.value, diff)
		}
	}
	if _, err := st.NodesWhere(ctx, "b1", "reason", "x"); err == nil {
		t.Errorf("NodesWhere(reason) = nil error, want one: no such query is declared")
	}
}

func testHistoryPages(ctx context.Context, t *testing.T, st Store) {
	for i, spec := range []struct {
		id, owner string
		minute    int
		state     model.State
	}{
		{"b1", "alice", 1, model.StateSucceeded},
		{"b2", "bob", 2, model.StateRunning},
		{"b3", "alice", 3, model.StateRunning},
		{"b4", "alice", 3, model.StateSucceeded}, // same instant as b3: the id orders them
		{"b5", "alice", 5, model.StateRunning},
	} {
		b, lanes := newBatch(spec.id, spec.owner, 1, 1)
		b.CreatedAt, b.State = at.Add(time.Duration(spec.minute)*time.Minute), spec.state
		if err := st.Create(ctx, b, lanes); err != nil {
			t.Fatalf("Create(#%d) error = %v", i, err)
		}
	}
	pages := func(q store.HistoryQuery) [][]string {
		var out [][]string
		for range 10 {
			bs, next, err := st.History(ctx, q)
			if err != nil {
				t.Fatalf("History(%+v) error = %v", q, err)
			}
			var page []string
			for _, b := range bs {
				page = append(page, b.ID)
			}
			out = append(out, page)
			if next == nil {
				break
			}
			q.After = next
		}
		return out
	}
	tests := []struct {
		q    store.HistoryQuery
		want [][]string
	}{
		{store.HistoryQuery{Limit: 2}, [][]string{{"b5", "b4"}, {"b3", "b2"}, {"b1"}}},
		{store.HistoryQuery{Limit: 5}, [][]string{{"b5", "b4", "b3", "b2", "b1"}}},
		{store.HistoryQuery{Owner: "alice", Limit: 3}, [][]string{{"b5", "b4", "b3"}, {"b1"}}},
		{store.HistoryQuery{State: model.StateRunning, Limit: 2}, [][]string{{"b5", "b3"}, {"b2"}}},
		{store.HistoryQuery{Owner: "alice", State: model.StateSucceeded, Limit: 1}, [][]string{{"b4"}, {"b1"}}},
		{store.HistoryQuery{Owner: "carol", Limit: 2}, [][]string{nil}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, pages(tc.q)); diff != "" {
			t.Errorf("History(%+v) pages (-want +got):\n%s", tc.q, diff)
		}
	}
}

func testNames(ctx context.Context, t *testing.T, st Store) {
	names := make([]string, 2*store.NamesPerChunk+store.NamesPerChunk/2)
	for i := range names {
		names[i] = fmt.Sprintf("n-%04d", i)
	}
	b, lanes := newBatch("b1", "alice", 1, len(names))
	b.Names = names
	b.Nodes = make([]string, store.MaxListedNodes+1)
	for i := range b.Nodes {
		b.Nodes[i] = fmt.Sprintf("x-%05d", i)
	}
	if err := st.Create(ctx, b, lanes); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	if !b.Named || b.Nodes != nil {
		t.Errorf("after Create: Named %v, %d listed nodes; want named, the list too long to keep dropped", b.Named, len(b.Nodes))
	}
	got := readBatch(ctx, t, st, "b1")
	if !got.Named || len(got.Nodes) != 0 || len(got.Names) != 0 {
		t.Errorf("Batch: Named %v, %d listed, %d names; want named, none listed, names only in their documents", got.Named, len(got.Nodes), len(got.Names))
	}
	chunk := func(c int) []string {
		return names[c*store.NamesPerChunk : min(len(names), (c+1)*store.NamesPerChunk)]
	}
	tests := []struct {
		index int
		want  []string
	}{
		{-1, nil},
		{0, chunk(0)},
		{store.NamesPerChunk - 1, chunk(0)},
		{store.NamesPerChunk + 50, chunk(1)},
		{len(names) - 1, chunk(2)},
		{3 * store.NamesPerChunk, nil},
	}
	for _, tc := range tests {
		_, _, got, err := st.BatchAndLane(ctx, "b1", 1, 0, tc.index)
		if err != nil {
			t.Fatalf("BatchAndLane(index %d) error = %v", tc.index, err)
		}
		if diff := cmp.Diff(tc.want, got, opts); diff != "" {
			t.Errorf("BatchAndLane(index %d) names (-want +got):\n%s", tc.index, diff)
		}
	}
	// Names of a later attempt are another set of documents.
	if err := st.WriteNames(ctx, "b1", 2, []string{"n-z"}); err != nil {
		t.Fatalf("WriteNames() error = %v", err)
	}
	if _, _, got, err := st.BatchAndLane(ctx, "b1", 1, 0, 0); err != nil || !slices.Equal(got, chunk(0)) {
		t.Errorf("attempt 1's names after attempt 2's were written = %d names, %v; want them unchanged", len(got), err)
	}
}

func testLimits(ctx context.Context, t *testing.T, st Store) {
	b, _ := newBatch("big", "alice", 1, 1)
	if err := st.Create(ctx, b, make([]store.LaneDoc, store.MaxCommitLanes+1)); err == nil {
		t.Errorf("Create with %d lanes = nil, want an error", store.MaxCommitLanes+1)
	}
	if _, err := st.Batch(ctx, "big"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Batch(big) after a refused Create = %v, want ErrNotFound", err)
	}
	create(ctx, t, st, "b1", 1, 2)
	l := readLane(ctx, t, st, "b1", 1, 0)
	n := counted(&l.Doc, 0, "n-a")
	n.Reason = strings.Repeat("é", store.MaxReason) // 2 bytes each
	if err := st.CountNode(ctx, "b1", n, l); err != nil {
		t.Fatalf("CountNode() error = %v", err)
	}
	if got, err := st.Node(ctx, "b1", "n-a"); err != nil || got.Reason != store.Clip(n.Reason) || len(got.Reason) > store.MaxReason+len("…") {
		t.Errorf("stored reason of %d bytes, %v; want it clipped to %d", len(got.Reason), err, store.MaxReason)
	}
	long := strings.Repeat("r", 2*store.MaxRefusalReason)
	for _, id := range []string{"e1", "e2"} {
		if err := st.Refuse(ctx, "b1", store.Refusal{EventID: id, Reason: long, At: at}); err != nil {
			t.Fatalf("Refuse(%s) error = %v", id, err)
		}
	}
	got := readBatch(ctx, t, st, "b1")
	want := &store.Refusal{EventID: "e2", Reason: long[:store.MaxRefusalReason] + "…", At: at}
	if got.Refused != 2 || !cmp.Equal(want, got.LastRefusal) {
		t.Errorf("refused %d, last %+v; want 2 and the last, clipped", got.Refused, got.LastRefusal)
	}
}

func testLaneOpen(ctx context.Context, t *testing.T, st Store) {
	create(ctx, t, st, "b1", 2, 1)
	open := func(attempt int) bool {
		t.Helper()
		o, err := st.LaneOpen(ctx, "b1", attempt)
		if err != nil {
			t.Fatalf("LaneOpen() error = %v", err)
		}
		return o
	}
	if !open(1) {
		t.Errorf("LaneOpen(1) of a new batch = false, want true")
	}
	for lane, name := range []string{"n-a", "n-b"} {
		l := readLane(ctx, t, st, "b1", 1, lane)
		if err := st.CountNode(ctx, "b1", counted(&l.Doc, 0, name), l); err != nil {
			t.Fatalf("CountNode(%s) error = %v", name, err)
		}
		if got, want := open(1), lane == 0; got != want {
			t.Errorf("LaneOpen(1) with %d of 2 lanes complete = %v, want %v", lane+1, got, want)
		}
	}
	if open(2) {
		t.Errorf("LaneOpen(2) of a batch without attempt 2 = true, want false")
	}
}
