package batch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/kubeproxy"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Tests that act on a batch "mid-batch" hold it there with a kubeproxy
// gate in front of the patch function's API traffic rather than racing
// it: a node whose write is held cannot finish, so neither can its batch,
// however fast the pipeline is.

// newGate returns a gate that lets n mutations through and then holds
// the rest; it is opened when the test ends, so nothing stays stuck.
func newGate(t *testing.T, n int) *kubeproxy.Gate {
	t.Helper()
	g := kubeproxy.NewGate()
	g.CloseAfter(n)
	t.Cleanup(g.Open)
	return g
}

// waitHeld waits until n patches are held at the gate: with n the
// batch's concurrency, every lane is stopped in front of the API server.
func waitHeld(t *testing.T, g *kubeproxy.Gate, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := g.WaitHeld(ctx, n); err != nil {
		t.Fatalf("batch never reached the gate: %v", err)
	}
}

// answer is what a request sent in the background got.
type answer struct {
	code int
	raw  []byte
	err  error
	at   time.Time // when the answer arrived
}

// cancelWhileHeld cancels batch id while g holds every lane's next patch.
// A cancel waits for the patches in flight to settle, so it cannot answer
// while they are held: send runs in the background, and once the cancel is
// recorded in st (the batch necessarily still running) the gate opens, the
// held patches finish, and the cancel answers. The test fails if the cancel
// answered before it was recorded or found the batch already final.
func cancelWhileHeld(t *testing.T, st *store.Store, id string, g *kubeproxy.Gate, send func() (int, []byte, error)) answer {
	t.Helper()
	if g.Held() == 0 {
		t.Fatalf("cancel of %s: no patch is held, so the batch may be over", id)
	}
	done := make(chan answer, 1)
	go func() {
		code, raw, err := send()
		done <- answer{code: code, raw: raw, err: err, at: time.Now()}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		b, err := st.Batch(ctx, id)
		if err == nil && b.Cancel != nil {
			if b.State.Final() {
				t.Fatalf("batch %s was already %s when the cancel was recorded, want it running", id, b.State)
			}
			break
		}
		select {
		case a := <-done:
			t.Fatalf("cancel of %s answered %d %s (%v) before it was recorded", id, a.code, a.raw, a.err)
		case <-ctx.Done():
			t.Fatalf("cancel of %s not recorded within a minute (last read error %v)", id, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	g.Open()
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("cancel of %s: %v", id, a.err)
		}
		return a
	case <-ctx.Done():
		t.Fatalf("cancel of %s did not answer within a minute of opening the gate", id)
	}
	return answer{}
}
