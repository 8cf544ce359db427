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

var sleepFor = 0 * time.Millisecond

func TestDbgQueries(t *testing.T) {
	env := harness.Start(t)
	in := func(fs *firestore.Client) firestore.Query {
		return fs.Collection("batches").Where("state", "in", []string{"pending", "running"})
	}
	eq := func(fs *firestore.Client) firestore.Query {
		return fs.Collection("batches").Where("state", "==", "running")
	}
	created := func(fs *firestore.Client) firestore.Query {
		return fs.Collection("batches").Where("created_at", ">=", time.Now().Add(-time.Minute))
	}
	created2 := func(fs *firestore.Client) firestore.Query {
		return fs.Collection("batches").Where("created_at", ">=", time.Now().Add(-2*time.Minute))
	}
	for _, tc := range []struct {
		name string
		qs   []func(*firestore.Client) firestore.Query
	}{
		{"warm", []func(*firestore.Client) firestore.Query{created}},
		{"eq+created", []func(*firestore.Client) firestore.Query{eq, created}},
		{"created+created2", []func(*firestore.Client) firestore.Query{created, created2}},
		{"in+in", []func(*firestore.Client) firestore.Query{in, in}},
		{"in+created", []func(*firestore.Client) firestore.Query{in, created}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := env.Firestore(t, env.ProjectID(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan error, 10)
			for _, mk := range tc.qs {
				it := mk(fs).Snapshots(ctx)
				go func() {
					for {
						snap, err := it.Next()
						if err != nil {
							got <- err
							return
						}
						if len(snap.Changes) > 0 {
							got <- nil
						}
					}
				}()
			}
			time.Sleep(sleepFor)
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			_, err := fs.Doc(store.BatchPath("b1")).Set(sctx, store.BatchDoc{ID: "b1", Owner: "x", State: batch.StateRunning, CreatedAt: time.Now().UTC()})
			if err != nil {
				t.Errorf("set: %v", err)
				return
			}
			for range tc.qs {
				select {
				case err := <-got:
					if err != nil {
						t.Errorf("listener: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("nothing")
				}
			}
		})
	}
}
