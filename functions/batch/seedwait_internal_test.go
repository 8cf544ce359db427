package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nodebatch/nodebatch/emulators/harness"
	"github.com/nodebatch/nodebatch/emulators/wait"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/store"
)

// slots is how many waiting slots who holds now.
func (ws *waiters) slots(who string) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n[who]
}

// TestWaitPerUser: a seed waiting request holds one of its user's slots
// while it waits; one more (a repeat with the same idempotency key, which
// the rate limit does not count, lands here too) answers 202 {task_id} at
// once; other users are not limited by it; the slot is free again when the
// wait ends.
func TestWaitPerUser(t *testing.T) {
	env := harness.Start(t)
	st := store.New(env.Firestore(t, env.ProjectID(t)))
	ctx := context.Background()
	now := time.Now()
	b := &store.BatchDoc{ID: "w1", Owner: "wendy", Action: model.ActionLabel, Total: 1, Concurrency: 1, Lanes: 1,
		AttemptTotal: 1, Attempt: 1, State: model.StateRunning, CreatedAt: now, StartedAt: now}
	if err := st.Create(ctx, b, []store.LaneDoc{{Attempt: 1, Lane: 0, Size: 1}}); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Store: st, WaitPerUser: 1, WaitMax: time.Hour}
	request := func(ctx context.Context, who string) *http.Request {
		return httptest.NewRequest(http.MethodPost, "/api/v1/nodes/labels/batch-add", nil).WithContext(auth.WithPrincipal(ctx, auth.Principal{Subject: who}))
	}
	waitSlots := func(who string, n int) {
		t.Helper()
		wait.For(ctx, t, fmt.Sprintf("%s holding %d waiting slots", who, n), func() error {
			got := h.waiting.slots(who)
			return wait.True(got == n, "%d slots", got)
		})
	}

	first := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); h.wait(first, request(ctx, "wendy"), "w1") }()
	waitSlots("wendy", 1)

	again := httptest.NewRecorder()
	h.wait(again, request(ctx, "wendy"), "w1")
	var c Created
	if err := json.Unmarshal(again.Body.Bytes(), &c); err != nil || again.Code != http.StatusAccepted || c.TaskID != "w1" {
		t.Errorf("second waiting request = %d %s, want 202 with task_id w1 at once", again.Code, again.Body)
	}

	bctx, stopBob := context.WithCancel(ctx)
	bobDone := make(chan struct{})
	go func() { defer close(bobDone); h.wait(httptest.NewRecorder(), request(bctx, "bob"), "w1") }()
	waitSlots("bob", 1) // bob waits although wendy's slot is taken
	stopBob()
	<-bobDone
	waitSlots("bob", 0)

	if _, err := st.Finish(ctx, "w1", func(cur *store.BatchDoc) *store.BatchDoc {
		nb := *cur
		nb.State, nb.FinishedAt = model.StateSucceeded, time.Now()
		return &nb
	}); err != nil {
		t.Fatal(err)
	}
	<-done
	if first.Code != http.StatusOK {
		t.Errorf("first waiting request = %d %s, want 200 once the batch ended", first.Code, first.Body)
	}
	waitSlots("wendy", 0)
}
