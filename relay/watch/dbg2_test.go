package watch

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestDbgQueries(t *testing.T) {
	env := harness.Start(t)
	for name, mk := range map[string]func(*firestore.Client) firestore.Query{
		"in": func(fs *firestore.Client) firestore.Query {
			return fs.Collection("batches").Where("state", "in", []string{"pending", "running"})
		},
		"created": func(fs *firestore.Client) firestore.Query {
			return fs.Collection("batches").Where("created_at", ">=", time.Now().Add(-time.Minute))
		},
		"owner-in": func(fs *firestore.Client) firestore.Query {
			return fs.Collection("batches").Where("state", "in", []string{"pending", "running"}).Where("owner", "==", "x")
		},
		"owner-created": func(fs *firestore.Client) firestore.Query {
			return fs.Collection("batches").Where("owner", "==", "x").Where("created_at", ">=", time.Now().Add(-time.Minute))
		},
	} {
		t.Run(name, func(t *testing.T) {
			fs := env.Firestore(t, env.ProjectID(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan error, 10)
			for _, q := range []firestore.Query{mk(fs), fs.Collection("batches").Where("created_at", ">=", time.Now().Add(-time.Minute))} {
			it := q.Snapshots(ctx)
			go func() {
				for {
					snap, err := it.Next()
					if err != nil {
						got <- err
						return
					}
					t.Logf("%s: snapshot %d changes", name, len(snap.Changes))
					if len(snap.Changes) > 0 {
						got <- nil
					}
				}
			}()
			}
			now := time.Now().UTC()
			_, err := fs.Doc(store.BatchPath("b1")).Set(context.Background(), store.BatchDoc{ID: "b1", Owner: "x", State: batch.StateRunning, CreatedAt: now})
			if err != nil {
				t.Errorf("set: %v", err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Errorf("listener: %v", err)
				}
				if err := <-got; err != nil {
					t.Errorf("listener 2: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("nothing")
			}
		})
	}
}
