package store_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// seen collects what a Feed listener was called with, for wait.For.
type seen[T any] struct {
	mu  sync.Mutex
	got []T
}

func (s *seen[T]) add(v T) {
	s.mu.Lock()
	s.got = append(s.got, v)
	s.mu.Unlock()
}

func (s *seen[T]) all() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// running is a running batch of owner with lanes of attempts 1 and 2.
func running(id, owner string, now time.Time) *store.BatchDoc {
	return &store.BatchDoc{ID: id, Owner: owner, Action: model.ActionLabel, Total: 2, Concurrency: 1, Lanes: 1, AttemptTotal: 1,
		Attempt: 2, State: model.StateRunning, CreatedAt: now, StartedAt: now, AttemptStartedAt: now}
}

func finish(ctx context.Context, t *testing.T, fs *firestore.Client, id string, at time.Time) {
	t.Helper()
	if _, err := fs.Doc(store.BatchPath(id)).Update(ctx, []firestore.Update{
		{Path: "state", Value: string(model.StateSucceeded)}, {Path: "finished_at", Value: at},
	}); err != nil {
		t.Fatalf("finish %s: %v", id, err)
	}
}

// TestFeed runs store.Feed, the relay's Source, on the Firestore emulator:
// a batch watched before it exists is nil, then the document, then its
// change; a lane likewise; earlier attempts' lanes are read once; an
// owner feed sees its owner's batch become active, then leave the active
// query and enter the finished one, and never another owner's batch.
func TestFeed(t *testing.T) {
	env := harness.Start(t)
	fs := env.Firestore(t, env.ProjectID(t))
	st := store.New(fs)
	feed := store.NewFeed(fs, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Millisecond)

	var batches seen[string] // "nil" or the state
	var lanes seen[string]   // "nil" or its attempt
	var owner seen[string]   // "active id", "active -id" (removed), "finished id"
	go feed.WatchBatch(ctx, "b1", func(b *store.BatchDoc) {
		if b == nil {
			batches.add("nil")
			return
		}
		batches.add(b.ID + " " + string(b.State))
	})
	go feed.WatchLane(ctx, "b1", store.LaneID(2, 0), func(l *store.LaneDoc) {
		if l == nil {
			lanes.add("nil")
			return
		}
		lanes.add(fmt.Sprintf("lane of attempt %d", l.Attempt))
	})
	go feed.WatchOwner(ctx, "alice", now.Add(-time.Minute), func(active bool, changes []store.BatchChange) {
		for _, c := range changes {
			switch {
			case active && c.Removed:
				owner.add("active -" + c.ID)
			case active:
				owner.add("active " + c.ID)
			case !c.FinishedAt.IsZero():
				owner.add("finished " + c.ID + " at " + c.FinishedAt.UTC().Format(time.RFC3339Nano))
			default:
				owner.add("finished " + c.ID + " without finished_at")
			}
		}
	})
	wait.For(ctx, t, "the batch and lane listeners' first call", func() error {
		return wait.True(len(batches.all()) > 0 && len(lanes.all()) > 0, "batch %v, lane %v", batches.all(), lanes.all())
	})

	lanesDocs := []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 2}, {Attempt: 2, Lane: 0, Size: 1}}
	if err := st.Create(ctx, running("b1", "alice", now), lanesDocs); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, running("b2", "bob", now), nil); err != nil {
		t.Fatal(err)
	}
	wait.For(ctx, t, "b1 running and its lane", func() error {
		return wait.True(slices.Contains(batches.all(), "b1 running") && slices.Contains(lanes.all(), "lane of attempt 2"),
			"batch %v, lane %v", batches.all(), lanes.all())
	})
	before, err := feed.LanesBefore(ctx, "b1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{store.LaneID(1, 0)}, slices.Sorted(maps.Keys(before))); diff != "" {
		t.Errorf("LanesBefore(b1, 2) lane ids (-want +got):\n%s", diff)
	}

	done := now.Add(time.Second)
	finish(ctx, t, fs, "b1", done)
	finish(ctx, t, fs, "b2", done)
	wantOwner := []string{"active b1", "active -b1", "finished b1 at " + done.Format(time.RFC3339Nano)}
	wait.For(ctx, t, "alice's feed to see b1 become active, then finish", func() error {
		got := owner.all()
		return wait.True(slices.Contains(got, wantOwner[2]) && slices.Contains(got, wantOwner[1]), "%v", got)
	})
	wait.For(ctx, t, "b1 succeeded", func() error {
		return wait.True(slices.Contains(batches.all(), "b1 succeeded"), "%v", batches.all())
	})
	if diff := cmp.Diff([]string{"nil", "b1 running", "b1 succeeded"}, batches.all()); diff != "" {
		t.Errorf("WatchBatch calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"nil", "lane of attempt 2"}, lanes.all()); diff != "" {
		t.Errorf("WatchLane calls (-want +got):\n%s", diff)
	}
	got := owner.all()
	slices.Sort(got)
	want := slices.Clone(wantOwner)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WatchOwner(alice) calls (-want +got; bob's b2 must not appear):\n%s", diff)
	}
}
