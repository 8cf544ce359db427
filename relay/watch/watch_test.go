package watch

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

type sink chan progress.Message

func (s sink) Deliver(m progress.Message) { s <- m }

func next(t *testing.T, s sink) progress.Message {
	t.Helper()
	select {
	case m := <-s:
		return m
	case <-time.After(60 * time.Second): // hang guard, not a timing assertion
		t.Fatal("no message")
		return progress.Message{}
	}
}

// TestSharedWatcher: subscribers of one batch share one watcher, each gets
// the current state first, the watcher closes when the last one leaves,
// and a refused subscriber gets "not found" and is dropped.
func TestSharedWatcher(t *testing.T) {
	env := harness.Start(t)
	fs := env.Firestore(t, env.ProjectID(t))
	ctx := context.Background()
	b := store.BatchDoc{ID: "w1", Owner: "alice", Action: batch.ActionLabel, Total: 4, Lanes: 2, Attempt: 1, State: batch.StateRunning}
	if _, err := fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
		t.Fatal(err)
	}
	lane := store.LaneDoc{Attempt: 1, Lane: 1, Size: 2, Counts: batch.Counts{Succeeded: 1}, CurrentNode: "n1"}
	if _, err := fs.Doc(store.LanePath(b.ID, 1, 1)).Set(ctx, lane); err != nil {
		t.Fatal(err)
	}
	r := New(fs, slog.Default(), nil)
	alice := func(owner string) bool { return owner == "alice" }
	s1, s2, bob := make(sink, 100), make(sink, 100), make(sink, 100)
	cancel1 := r.Subscribe(b.ID, alice, s1)
	cancel2 := r.Subscribe(b.ID, alice, s2)
	cancelBob := r.Subscribe(b.ID, func(owner string) bool { return owner == "bob" }, bob)
	for _, s := range []sink{s1, s2} {
		if m := next(t, s); m.Current != 1 || m.Total != 4 {
			t.Errorf("first message = current %d total %d, want the current state 1/4", m.Current, m.Total)
		}
	}
	got := next(t, bob)
	if diff := cmp.Diff(progress.Message{TaskID: b.ID, Type: progress.TypeError, Message: "not found"}, got,
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Timestamp" }, cmp.Ignore())); diff != "" {
		t.Errorf("refused subscriber (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Batches: 1, Subscribers: 2}, r.Stats()); diff != "" {
		t.Errorf("Stats() with two subscribers (-want +got):\n%s", diff)
	}
	lane.Counts.Succeeded, lane.CurrentNode = 2, "n3"
	if _, err := fs.Doc(store.LanePath(b.ID, 1, 1)).Set(ctx, lane); err != nil {
		t.Fatal(err)
	}
	for _, s := range []sink{s1, s2} {
		if m := next(t, s); m.Current != 2 || m.CurrentNode != "n3" {
			t.Errorf("change = current %d node %q, want 2 n3", m.Current, m.CurrentNode)
		}
	}
	cancelBob()
	cancel1()
	cancel1() // idempotent
	if got := r.Stats(); got.Batches != 1 {
		t.Errorf("Stats().Batches with one subscriber left = %d, want 1", got.Batches)
	}
	cancel2()
	if diff := cmp.Diff(Stats{}, r.Stats()); diff != "" {
		t.Errorf("Stats() after the last left (-want +got):\n%s", diff)
	}
}
