package batch

import (
	"net/http"
	"sync"
	"time"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/request"
)

// Defaults of the seed's waiting endpoints (Handler.WaitMax,
// Handler.WaitPerUser). DefaultWaitMax is below the 300 s function timeout
// of infra/ (NODEBATCH_SEED_WAIT_SECONDS, docs/config.md).
const (
	DefaultWaitMax     = config.DefaultSeedWaitSeconds * time.Second
	DefaultWaitPerUser = config.DefaultSeedWaiters
)

// seedLabels serves the seed's /api/v1/nodes/labels/batch-add(-progress):
// the -progress variant answers {"task_id"} at once (202), the plain one
// waits for the result.
func (h *Handler) seedLabels(progress bool) apierror.HandlerFunc {
	return seedHandler[request.SeedLabels](h, progress)
}

// seedTaints serves the seed's /api/v1/nodes/taints/batch-add(-progress).
func (h *Handler) seedTaints(progress bool) apierror.HandlerFunc {
	return seedHandler[request.SeedTaints](h, progress)
}

// seedBody is a seed request body that translates into a batch.
type seedBody[B any] interface {
	*B
	Batch() (*request.Batch, *apierror.Error)
}

// seedHandler decodes a seed body of type B and submits its batch.
func seedHandler[B any, P seedBody[B]](h *Handler, progress bool) apierror.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var body B
		if err := h.decode(w, r, &body); err != nil {
			return err
		}
		b, e := P(&body).Batch()
		if e != nil {
			return e
		}
		return h.submit(w, r, b, seedMode(progress))
	}
}

func seedMode(progress bool) submitMode {
	if progress {
		return submitTaskID
	}
	return submitWait
}

// waiters counts each principal's waiting requests. The zero value is
// ready.
type waiters struct {
	mu sync.Mutex
	n  map[string]int
}

// take claims one of max waiting slots of who; ok is false when every slot
// is taken. release gives it back.
func (ws *waiters) take(who string, max int) (release func(), ok bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.n[who] >= max {
		return nil, false
	}
	if ws.n == nil {
		ws.n = map[string]int{}
	}
	ws.n[who]++
	return func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if ws.n[who]--; ws.n[who] <= 0 {
			delete(ws.n, who)
		}
	}, true
}

// wait polls batch id until it is final (then answers its status, 200) or
// WaitMax passes or the client goes away (then answers 202 with task_id).
// Each waiting request holds one of its principal's WaitPerUser slots, a
// repeat with the same idempotency key included (the rate limit does not
// count a repeat); a request finding none free answers 202 at once.
func (h *Handler) wait(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	accepted := func() error {
		writeJSON(w, http.StatusAccepted, Created{BatchID: id, TaskID: id, State: model.StateRunning})
		return nil
	}
	who := ""
	if p, err := principal(r); err == nil {
		who = p.Subject
	}
	perUser := h.WaitPerUser
	if perUser <= 0 {
		perUser = DefaultWaitPerUser
	}
	release, ok := h.waiting.take(who, perUser)
	if !ok {
		h.logger().Info("seed wait refused: too many waiting requests", "subject", who, "batch_id", id, "limit", perUser)
		return accepted()
	}
	defer release()
	maxWait := h.WaitMax
	if maxWait <= 0 {
		maxWait = DefaultWaitMax
	}
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := h.Store.Batch(ctx, id)
		if err == nil && b.State.Final() {
			return h.answer(w, r, id, http.StatusOK)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return accepted()
		case <-tick.C:
		}
	}
}
