package batch

import (
	"net/http"

	"github.com/nodebatch/nodebatch/shared/request"
)

// seedLabels serves the seed's /api/v1/nodes/labels/batch-add(-progress):
// the -progress variant answers {"task_id"} at once (202), the plain one
// waits for the result.
func (h *Handler) seedLabels(progress bool) http.HandlerFunc {
	return seedHandler[request.SeedLabels](h, progress)
}

// seedTaints serves the seed's /api/v1/nodes/taints/batch-add(-progress).
func (h *Handler) seedTaints(progress bool) http.HandlerFunc {
	return seedHandler[request.SeedTaints](h, progress)
}

// seedBody is a seed request body that translates into a batch.
type seedBody[B any] interface {
	*B
	Batch() (*request.Batch, *request.Error)
}

// seedHandler decodes a seed body of type B and submits its batch.
func seedHandler[B any, P seedBody[B]](h *Handler, progress bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body B
		if e := h.decode(w, r, &body); e != nil {
			e.Write(w)
			return
		}
		b, e := P(&body).Batch()
		if e != nil {
			e.Write(w)
			return
		}
		h.submit(w, r, b, seedMode(progress))
	}
}

func seedMode(progress bool) submitMode {
	if progress {
		return submitTaskID
	}
	return submitWait
}
