package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/progress"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

type sink chan Update

func (s sink) Deliver(u Update) { s <- u }

func next(t *testing.T, s sink) progress.Message {
	t.Helper()
	return nextUpdate(t, s).Message
}

func nextUpdate(t *testing.T, s sink) Update {
	t.Helper()
	select {
	case u := <-s:
		return u
	case <-time.After(60 * time.Second): // hang guard, not a timing assertion
		t.Fatal("no message")
		return Update{}
	}
}

// received sends pm over a real WebSocket connection and returns what the
// client reads: type and payload.
func received(t *testing.T, pm *websocket.PreparedMessage) (int, []byte) {
	t.Helper()
	var up websocket.Upgrader
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if err := ws.WritePreparedMessage(pm); err != nil {
			t.Errorf("WritePreparedMessage() error = %v", err)
		}
		_, _, _ = ws.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return typ, data
}

// checkFrame: u's shared frame is u's message as a JSON text message.
func checkFrame(t *testing.T, u Update) {
	t.Helper()
	if u.Frame == nil {
		t.Fatalf("update %+v has no shared frame", u.Message)
	}
	typ, data := received(t, u.Frame)
	var got progress.Message
	if err := json.Unmarshal(data, &got); typ != websocket.TextMessage || err != nil {
		t.Fatalf("frame = type %d %q (decode error %v), want a JSON text message", typ, data, err)
	}
	if diff := cmp.Diff(u.Message, got); diff != "" {
		t.Errorf("frame's message (-want +got):\n%s", diff)
	}
}

func mustSubscribe(t *testing.T, r *Registry, id string, allow Allow, s Sink) func() {
	t.Helper()
	cancel, err := r.Subscribe(id, allow, s)
	if err != nil {
		t.Fatalf("Subscribe(%q) error = %v", id, err)
	}
	return cancel
}

// TestSubscribeRefusesBadIDs: an id that names no document is an error,
// before any listener opens (a '/' made the client return a nil ref that
// a listener goroutine dereferenced, crashing the relay).
func TestSubscribeRefusesBadIDs(t *testing.T) {
	t.Parallel()
	r := New(nil, slog.Default(), nil) // no Source: nothing may reach it
	for _, id := range []string{"", "a/b", "a/lanes/x", "../x", strings.Repeat("a", 129), "a b", "é"} {
		s := make(sink, 1)
		cancel, err := r.Subscribe(id, func(string) bool { return true }, s)
		if !errors.Is(err, model.ErrInvalidID) || cancel != nil {
			t.Errorf("Subscribe(%q) = cancel %v, error %v; want nil and model.ErrInvalidID", id, cancel != nil, err)
		}
		if diff := cmp.Diff(Stats{}, r.Stats()); diff != "" {
			t.Errorf("Stats() after Subscribe(%q) (-want +got):\n%s", id, diff)
		}
	}
}

// TestSharedWatcher: subscribers of one batch share one watcher, each gets
// the current state first, the watcher closes when the last one leaves,
// and a refused subscriber gets "not found" and is dropped.
func TestSharedWatcher(t *testing.T) {
	env := harness.Start(t)
	fs := env.Firestore(t, env.ProjectID(t))
	ctx := context.Background()
	b := store.BatchDoc{ID: "w1", Owner: "alice", Action: model.ActionLabel, Total: 4, Lanes: 2, Attempt: 1, State: model.StateRunning}
	if _, err := fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
		t.Fatal(err)
	}
	lane := store.LaneDoc{Attempt: 1, Lane: 1, Size: 2, Counts: model.Counts{Succeeded: 1}, CurrentNode: "n1"}
	if _, err := fs.Doc(store.LanePath(b.ID, 1, 1)).Set(ctx, lane); err != nil {
		t.Fatal(err)
	}
	r := New(store.NewFeed(fs, nil), slog.Default(), nil)
	alice := func(owner string) bool { return owner == "alice" }
	s1, s2, bob := make(sink, 100), make(sink, 100), make(sink, 100)
	cancel1 := mustSubscribe(t, r, b.ID, alice, s1)
	cancel2 := mustSubscribe(t, r, b.ID, alice, s2)
	cancelBob := mustSubscribe(t, r, b.ID, func(owner string) bool { return owner == "bob" }, bob)
	firsts := map[*websocket.PreparedMessage]bool{}
	for _, s := range []sink{s1, s2} {
		u := nextUpdate(t, s)
		if m := u.Message; m.Current != 1 || m.Total != 4 {
			t.Errorf("first message = current %d total %d, want the current state 1/4", m.Current, m.Total)
		}
		checkFrame(t, u)
		firsts[u.Frame] = true
	}
	if len(firsts) != 1 {
		t.Errorf("the two subscribers got %d frames of the same state, want one shared frame", len(firsts))
	}
	refusal := nextUpdate(t, bob)
	if refusal.Frame != nil {
		t.Error("the refusal carries a shared frame, want none (it is for one subscriber)")
	}
	got := refusal.Message
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
	changes := map[*websocket.PreparedMessage]bool{}
	for _, s := range []sink{s1, s2} {
		u := nextUpdate(t, s)
		if m := u.Message; m.Current != 2 || m.CurrentNode != "n3" {
			t.Errorf("change = current %d node %q, want 2 n3", m.Current, m.CurrentNode)
		}
		checkFrame(t, u)
		changes[u.Frame] = true
	}
	if len(changes) != 1 {
		t.Errorf("the two subscribers got %d frames of one change, want one shared frame", len(changes))
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

// TestPacing: with a pacing interval longer than the test, changes after
// the first message are held and coalesced, and the final state goes out at
// once with the latest counts; with a short one, a held change still goes
// out when its wait is over.
func TestPacing(t *testing.T) {
	env := harness.Start(t)
	fs := env.Firestore(t, env.ProjectID(t))
	ctx := context.Background()
	alice := func(owner string) bool { return owner == "alice" }
	tests := []struct {
		name  string
		pace  time.Duration
		final bool // end the batch after the changes
	}{
		{name: "held changes end in the final message", pace: time.Hour, final: true},
		{name: "a held change goes out after the wait", pace: 200 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := store.BatchDoc{ID: fmt.Sprintf("pace%d", i), Owner: "alice", Action: model.ActionLabel, Total: 3, Lanes: 1, Attempt: 1, State: model.StateRunning}
			if _, err := fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
				t.Fatal(err)
			}
			lane := store.LaneDoc{Attempt: 1, Lane: 0, Size: 3}
			if _, err := fs.Doc(store.LanePath(b.ID, 1, 0)).Set(ctx, lane); err != nil {
				t.Fatal(err)
			}
			r := New(store.NewFeed(fs, nil), slog.Default(), nil)
			r.pace = func(int) time.Duration { return tt.pace }
			s := make(sink, 100)
			defer mustSubscribe(t, r, b.ID, alice, s)()
			var got []int
			got = append(got, next(t, s).Current)
			for n := 1; n <= 3; n++ {
				lane.Counts.Succeeded, lane.CurrentNode = n, fmt.Sprintf("n%d", n)
				if _, err := fs.Doc(store.LanePath(b.ID, 1, 0)).Set(ctx, lane); err != nil {
					t.Fatal(err)
				}
			}
			if tt.final {
				b.State, b.Counts = model.StateSucceeded, model.Counts{Succeeded: 3}
				if _, err := fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			// Without the wait's end (flush) the last change would never
			// arrive: next fails after its hang guard.
			for got[len(got)-1] < 3 {
				m := next(t, s)
				got = append(got, m.Current)
				if m.Final() != tt.final && m.Current == 3 {
					t.Errorf("last message final = %v, want %v", m.Final(), tt.final)
				}
			}
			if tt.final {
				if diff := cmp.Diff([]int{0, 3}, got); diff != "" {
					t.Errorf("currents received, held changes coalesced into the final message (-want +got):\n%s", diff)
				}
			}
		})
	}
}

type ownerSink chan string

func (s ownerSink) Active(id string) { s <- id }

// TestOwnerFeedSeesABatchThatEndsAsItStarts: a batch that is running when
// subscribe_all arrives but final before the feed's listeners first report
// (seconds, on a loaded machine) is still announced, however old it is.
// The registry's clock stands at the moment of the subscription; the batch
// ended just after it. Before the fix the feed's second query was
// created_at >= subscription − 10 s, so this batch (created an hour
// earlier) was never announced and its final message never sent: the
// TestIsolation flake under load.
func TestOwnerFeedSeesABatchThatEndsAsItStarts(t *testing.T) {
	env := harness.Start(t)
	ctx := context.Background()
	joined := time.Now().UTC()
	for _, owner := range []string{"alice", AllOwners} {
		fs := env.Firestore(t, env.ProjectID(t)) // a project each: the all-owners feed sees every batch
		id := "ended-as-it-started"
		b := store.BatchDoc{
			ID: id, Owner: "alice", Action: model.ActionLabel, Total: 1, Lanes: 1, Attempt: 1, State: model.StateSucceeded,
			CreatedAt: joined.Add(-time.Hour), StartedAt: joined.Add(-time.Hour), FinishedAt: joined.Add(time.Second),
		}
		if _, err := fs.Doc(store.BatchPath(b.ID)).Set(ctx, b); err != nil {
			t.Fatal(err)
		}
		r := New(store.NewFeed(fs, nil), slog.Default(), func() time.Time { return joined })
		s := make(ownerSink, 10)
		cancel := r.SubscribeOwner(owner, s)
		select {
		case got := <-s:
			if got != id {
				t.Errorf("owner %q feed announced %q, want %q", owner, got, id)
			}
		case <-time.After(60 * time.Second): // hang guard, not a timing assertion
			t.Errorf("owner %q feed never announced %s, which was running when the feed started", owner, id)
		}
		cancel()
	}
}
