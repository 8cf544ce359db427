package fsclient_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/shared/change"
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

func TestMain(m *testing.M) { os.Exit(harness.Run(m)) }

// alreadyCancelled is what the emulator answers a write right after a
// listener on it closed.
var alreadyCancelled = status.Error(codes.Canceled, "call already cancelled")

// fault injects alreadyCancelled into the first n calls of method (a
// suffix such as "/Commit"); landed sends the call first, as the emulator
// does (the write is applied, the answer lost).
type fault struct {
	method string
	n      int32
	landed bool
	calls  atomic.Int32 // calls of method seen
}

func (f *fault) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !strings.HasSuffix(method, f.method) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if f.calls.Add(1) > f.n {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if f.landed {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
	}
	return alreadyCancelled
}

func client(t *testing.T, project string, o ...fsclient.Option) *firestore.Client {
	t.Helper()
	c, err := fsclient.New(context.Background(), project, o...)
	if err != nil {
		t.Fatalf("fsclient.New() error = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newBatch(id string) *store.BatchDoc {
	return &store.BatchDoc{
		ID: id, Owner: "alice@example.com", Action: model.ActionLabel, Changes: change.Summary{Labels: []string{"team=ml"}},
		All: true, Total: 2, Concurrency: 1, Lanes: 1, AttemptTotal: 2, Attempt: 1, State: model.StateRunning,
		CreatedAt: now, StartedAt: now, IdempotencyKey: "k-" + id,
	}
}

// op is one of the product's writes, for TestCanceledWrites.
type op struct {
	name  string
	setup func(ctx context.Context, st *store.Store, id string) error
	write func(ctx context.Context, st *store.Store, id string) error
	check func(ctx context.Context, st *store.Store, id string) error
}

var now = time.Now().UTC() // nanoseconds: Firestore keeps microseconds

var ops = []op{
	{
		name: "set",
		write: func(ctx context.Context, st *store.Store, id string) error {
			_, err := st.Client().Doc(store.BatchPath(id)).Set(ctx, newBatch(id))
			return err
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			_, err := st.Batch(ctx, id)
			return err
		},
	},
	{
		name: "create",
		write: func(ctx context.Context, st *store.Store, id string) error {
			return st.Create(ctx, newBatch(id), []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 2}})
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			b, err := st.Batch(ctx, id)
			if err == nil && b.State != model.StateRunning {
				err = fmt.Errorf("state %s, want running", b.State)
			}
			return err
		},
	},
	{
		name:  "count node",
		setup: createBatch,
		write: func(ctx context.Context, st *store.Store, id string) error {
			l, err := st.Lane(ctx, id, 1, 0)
			if err != nil {
				return err
			}
			l.Doc.Mark(0)
			l.Doc.Counts.Succeeded++
			l.Doc.UpdatedAt = now
			return st.CountNode(ctx, id, &store.NodeDoc{Node: "n0", State: model.NodeSucceeded, Attempt: 1, FinishedAt: now}, l)
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			l, err := st.Lane(ctx, id, 1, 0)
			if err == nil && (!l.Doc.Has(0) || l.Doc.Counts.Succeeded != 1) {
				err = fmt.Errorf("lane %+v, want node 0 counted once", l.Doc)
			}
			if err == nil {
				_, err = st.Node(ctx, id, "n0")
			}
			return err
		},
	},
	{
		name:  "update lane",
		setup: createBatch,
		write: func(ctx context.Context, st *store.Store, id string) error {
			l, err := st.Lane(ctx, id, 1, 0)
			if err != nil {
				return err
			}
			l.Doc.Mark(1)
			l.Doc.Counts.Failed++
			l.Doc.UpdatedAt = now
			return st.UpdateLane(ctx, id, l, 1)
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			l, err := st.Lane(ctx, id, 1, 0)
			if err == nil && (!l.Doc.Has(1) || l.Doc.Counts.Failed != 1) {
				err = fmt.Errorf("lane %+v, want node 1 counted once", l.Doc)
			}
			return err
		},
	},
	{
		name: "start attempt",
		setup: func(ctx context.Context, st *store.Store, id string) error {
			b := newBatch(id)
			b.State, b.FinishedAt = model.StatePartiallyFailed, now
			return st.Create(ctx, b, []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 2}})
		},
		write: func(ctx context.Context, st *store.Store, id string) error {
			_, err := st.StartAttempt(ctx, id, store.Attempt{Number: 2, Lanes: 1, Total: 1, StartedAt: now},
				[]store.LaneDoc{{Attempt: 2, Lane: 0, Size: 1}})
			return err
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			b, err := st.Batch(ctx, id)
			if err == nil && (b.Attempt != 2 || b.State != model.StateRunning) {
				err = fmt.Errorf("batch at attempt %d %s, want 2 running", b.Attempt, b.State)
			}
			return err
		},
	},
	{
		name: "create revert",
		setup: func(ctx context.Context, st *store.Store, id string) error {
			b := newBatch(id)
			b.State, b.FinishedAt = model.StateSucceeded, now
			return st.Create(ctx, b, nil)
		},
		write: func(ctx context.Context, st *store.Store, id string) error {
			r := newBatch(id + "-revert")
			r.Reverts, r.IdempotencyKey = id, ""
			got, err := st.CreateRevert(ctx, r, []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 2}})
			if err == nil && got != r.ID {
				err = fmt.Errorf("CreateRevert() = %s, want %s", got, r.ID)
			}
			return err
		},
		check: func(ctx context.Context, st *store.Store, id string) error {
			b, err := st.Batch(ctx, id)
			if err == nil && b.RevertedBy != id+"-revert" {
				err = fmt.Errorf("reverted_by %q, want %s-revert", b.RevertedBy, id)
			}
			return err
		},
	},
}

func createBatch(ctx context.Context, st *store.Store, id string) error {
	return st.Create(ctx, newBatch(id), []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 2}})
}

// TestCanceledWrites: a write the server answers Canceled while the
// caller's context is live is retried and counts once: whether it had
// landed before its answer was lost (what the emulator does) or not, and
// for each of the product's create and conditional-update paths, whose
// retry fails its own precondition when the first try landed.
func TestCanceledWrites(t *testing.T) {
	env := harness.Start(t)
	for _, o := range ops {
		for _, landed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/landed=%v", o.name, landed), func(t *testing.T) {
				project := env.ProjectID(t)
				ctx := context.Background()
				plain := store.New(client(t, project))
				id := "b" + strings.ReplaceAll(o.name, " ", "")
				if o.setup != nil {
					if err := o.setup(ctx, plain, id); err != nil {
						t.Fatalf("setup: %v", err)
					}
				}
				f := &fault{method: "/Commit", n: 1, landed: landed}
				faulty := store.New(client(t, project, fsclient.WithInner(f.unary, nil)))
				if err := o.write(ctx, faulty, id); err != nil {
					t.Fatalf("%s with an injected Canceled: %v, want it retried to success", o.name, err)
				}
				if got := f.calls.Load(); got < 2 {
					t.Errorf("Commit calls = %d, want a retry after the injected Canceled", got)
				}
				if err := o.check(ctx, plain, id); err != nil {
					t.Errorf("after %s: %v", o.name, err)
				}
			})
		}
	}
}

// TestCanceledBegin: a transaction whose BeginTransaction is answered
// Canceled is retried too.
func TestCanceledBegin(t *testing.T) {
	env := harness.Start(t)
	project := env.ProjectID(t)
	f := &fault{method: "/BeginTransaction", n: 2}
	st := store.New(client(t, project, fsclient.WithInner(f.unary, nil)))
	if err := createBatch(context.Background(), st, "begin"); err != nil {
		t.Fatalf("Create with two injected Canceled: %v, want it retried to success", err)
	}
}

// TestCallerCancelIsFinal: a Canceled the caller caused (its context
// ended) is not retried.
func TestCallerCancelIsFinal(t *testing.T) {
	env := harness.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	inner := func(ictx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Commit") {
			calls.Add(1)
			cancel()
			return status.FromContextError(ictx.Err()).Err()
		}
		return invoker(ictx, method, req, reply, cc, opts...)
	}
	c := client(t, env.ProjectID(t), fsclient.WithInner(inner, nil))
	_, err := c.Doc("batches/x").Set(ctx, map[string]any{"a": 1})
	if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Errorf("Set with the caller's context cancelled = %v, want Canceled", err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("Commit calls = %d, want 1 (no retry)", got)
	}
}

// cancelOnce ends the first Listen stream that has delivered a message with
// Canceled, as the server does.
type cancelOnce struct{ done atomic.Bool }

func (c *cancelOnce) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || !strings.HasSuffix(method, "/Listen") {
		return cs, err
	}
	return &cancellingStream{ClientStream: cs, c: c}, nil
}

type cancellingStream struct {
	grpc.ClientStream
	c    *cancelOnce
	recv int
}

func (s *cancellingStream) RecvMsg(m any) error {
	if s.recv > 0 && s.c.done.CompareAndSwap(false, true) {
		return alreadyCancelled
	}
	s.recv++
	return s.ClientStream.RecvMsg(m)
}

// TestCanceledListenerReopens: a listener the server ends with Canceled
// is reopened by the client library; the snapshot iterator never fails and
// the next change arrives.
func TestCanceledListenerReopens(t *testing.T) {
	env := harness.Start(t)
	project := env.ProjectID(t)
	inj := &cancelOnce{}
	c := client(t, project, fsclient.WithInner(nil, inj.stream))
	ctx := context.Background()
	ref := c.Doc("batches/listen")
	if _, err := ref.Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithTimeout(ctx, time.Minute) // hang guard, not a timing assertion
	defer stop()
	it := ref.Snapshots(lctx)
	defer it.Stop()
	seen := 0
	for seen < 2 {
		snap, err := it.Next()
		if err != nil {
			t.Fatalf("snapshot iterator: %v (injected: %v), want the listener reopened", err, inj.done.Load())
		}
		if !snap.Exists() {
			continue
		}
		n, _ := snap.Data()["n"].(int64)
		if n == 1 && seen == 0 {
			seen = 1 // the injection fires on the stream's next receive
			if _, err := ref.Set(ctx, map[string]any{"n": 2}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if n == 2 {
			seen = 2
		}
	}
	if !inj.done.Load() {
		t.Error("no Canceled was injected; the test proved nothing")
	}
}
