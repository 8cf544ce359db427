package watch

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/batch"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

type osink chan string

func (o osink) Active(id string) { o <- id }

func TestDbgOwner(t *testing.T) {
	env := harness.Start(t)
	fs := env.Firestore(t, env.ProjectID(t))
	r := New(fs, slog.Default(), nil)
	ch := make(osink, 10)
	cancel := r.SubscribeOwner(AllOwners, ch)
	defer cancel()
	now := time.Now().UTC()
	_, err := fs.Doc(store.BatchPath("b1")).Set(context.Background(), store.BatchDoc{ID: "b1", Owner: "x@example.com", State: batch.StateRunning,
		Action: batch.ActionLabel, Changes: store.Changes{Labels: []string{"team=ml"}},
			All: true, Total: 10, Concurrency: 2, Lanes: 2, AttemptTotal: 10,
			Attempt: 1, CreatedAt: now, StartedAt: now,
	})
	if err != nil { t.Fatal(err) }
	select {
	case id := <-ch:
		t.Logf("got %s", id)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing")
	}
}
