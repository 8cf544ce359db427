package batch

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Page sizes of GET /v1/batches/{id} results.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	after, size, err := pageParams(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := validID(id); err != nil {
		return err
	}
	return h.status(w, r, id, http.StatusOK, after, size)
}

// validID is nil for a batch id (model.ValidateID), else 400 naming the
// path parameter "id": such an id must never reach a Firestore path ("a/b"
// would make the document path a collection path).
func validID(id string) error {
	err := model.ValidateID(id)
	if err == nil {
		return nil
	}
	shown := request.Truncate(id, 2*model.MaxIDLen)
	return apierror.Field(apierror.Malformed, "id", shown, err.Error(), "batch id %q: %v", shown, err)
}

// pageParams reads page_size (1..MaxPageSize, default DefaultPageSize) and
// page_token (a node name, base64url) from the query; a bad value is a 400.
func pageParams(r *http.Request) (after string, size int, err error) {
	size = DefaultPageSize
	if v := r.URL.Query().Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return "", 0, apierror.Field(apierror.Malformed, "page_size", v, "out of range", "page_size must be an integer in [1, %d]", MaxPageSize)
		}
		size = n
	}
	if tok := r.URL.Query().Get("page_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return "", 0, apierror.Field(apierror.Malformed, "page_token", tok, "malformed", "page_token is not a token from next_page_token")
		}
		after = string(b)
	}
	return after, size, nil
}

// answer writes the status of batch id with the first page of results.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, id string, code int) error {
	return h.status(w, r, id, code, "", MaxPageSize)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, id string, code int, after string, size int) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	b, err := h.visible(ctx, p, id)
	if err != nil {
		return err
	}
	lanes, err := h.Store.Lanes(ctx, id, 0)
	if err != nil {
		return failed("read lanes", err)
	}
	if !b.State.Final() && store.AttemptDone(b, lanes) && h.Runner != nil {
		// Every node is counted but the finishing call failed: finish now.
		if _, err := h.Runner.Finish(ctx, id); err != nil {
			h.logger().Warn("reconcile finish", "batch_id", id, "error", err)
		} else if nb, err := h.Store.Batch(ctx, id); err == nil {
			b = nb
		}
	}
	counts := b.Counts
	if !b.State.Final() {
		counts = store.Counts(b, lanes)
	}
	failures := []model.Failure{}
	for _, l := range lanes {
		// A retry re-ran every failed node: only its failures still stand.
		if b.Adjust.Failed > 0 && l.Attempt != b.Attempt {
			continue
		}
		failures = append(failures, l.Failures...)
	}
	results, next, err := h.Store.Nodes(ctx, id, after, size)
	if err != nil {
		return failed("read node results", err)
	}
	token := ""
	if next != "" {
		token = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	writeJSON(w, code, statusOf(b, counts, failures, results, token))
	return nil
}
