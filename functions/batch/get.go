package batch

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"

	model "github.com/nodebatch/nodebatch/shared/batch"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
)

// Page sizes of GET /v1/batches/{id} results.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Status is the answer of GET /v1/batches/{id}: the batch, live counts from
// its lanes, the first failures, and one page of per-node results ordered by
// node name.
type Status struct {
	*store.BatchDoc
	TaskID        string          `json:"task_id"`
	Counts        model.Counts    `json:"counts"`
	Done          int             `json:"done"`
	Failures      []model.Failure `json:"failures"`
	Results       []store.NodeDoc `json:"results"`
	NextPageToken string          `json:"next_page_token,omitempty"`
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	after, size, ok := pageParams(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validID(w, id) {
		return
	}
	h.status(w, r, id, http.StatusOK, after, size)
}

// validID answers 400 naming the path parameter "id", and returns false,
// when id is not a batch id (model.ValidateID): such an id must never reach
// a Firestore path ("a/b" would make the document path a collection path).
func validID(w http.ResponseWriter, id string) bool {
	err := model.ValidateID(id)
	if err == nil {
		return true
	}
	shown := request.Truncate(id, 2*model.MaxIDLen)
	e := request.Errorf(http.StatusBadRequest, request.CodeMalformed, "batch id %q: %v", shown, err)
	e.Fields = []request.FieldError{{Field: "id", Value: shown, Reason: err.Error()}}
	e.Write(w)
	return false
}

// pageParams reads page_size (1..MaxPageSize, default DefaultPageSize) and
// page_token (a node name, base64url) from the query; on a bad value it
// answers 400 and returns ok == false.
func pageParams(w http.ResponseWriter, r *http.Request) (after string, size int, ok bool) {
	size = DefaultPageSize
	if v := r.URL.Query().Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			e := request.Errorf(http.StatusBadRequest, request.CodeMalformed, "page_size must be an integer in [1, %d]", MaxPageSize)
			e.Fields = []request.FieldError{{Field: "page_size", Value: v, Reason: "out of range"}}
			e.Write(w)
			return "", 0, false
		}
		size = n
	}
	if tok := r.URL.Query().Get("page_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			e := request.Errorf(http.StatusBadRequest, request.CodeMalformed, "page_token is not a token from next_page_token")
			e.Fields = []request.FieldError{{Field: "page_token", Value: tok, Reason: "malformed"}}
			e.Write(w)
			return "", 0, false
		}
		after = string(b)
	}
	return after, size, true
}

// answer writes the status of batch id with the first page of results.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, id string, code int) {
	h.status(w, r, id, code, "", MaxPageSize)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, id string, code int, after string, size int) {
	ctx := r.Context()
	p, e := principal(r)
	if e != nil {
		e.Write(w)
		return
	}
	b, err := h.Store.Batch(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.CanSee(b.Owner)) {
		// Someone else's batch is answered exactly like a missing one.
		request.Errorf(http.StatusNotFound, request.CodeNotFound, "batch %q not found", id).Write(w)
		return
	}
	if err != nil {
		h.fail(w, "read batch", err)
		return
	}
	lanes, err := h.Store.Lanes(ctx, id, 0)
	if err != nil {
		h.fail(w, "read lanes", err)
		return
	}
	if !b.State.Final() && store.AttemptDone(b, lanes) && h.Runner != nil {
		// Every node is counted but the finishing call failed: finish now.
		if _, err := h.Runner.Finish(ctx, id); err != nil {
			h.logger().Warn("reconcile finish", "batch_id", id, "error", err)
		} else if nb, err := h.Store.Batch(ctx, id); err == nil {
			b = nb
		}
	}
	st := Status{BatchDoc: b, TaskID: b.ID, Failures: []model.Failure{}}
	if b.State.Final() {
		st.Counts = b.Counts
	} else {
		st.Counts = store.Counts(b, lanes)
	}
	st.Done = st.Counts.Done()
	for _, l := range lanes {
		// A retry re-ran every failed node: only its failures still stand.
		if b.Adjust.Failed > 0 && l.Attempt != b.Attempt {
			continue
		}
		st.Failures = append(st.Failures, l.Failures...)
	}
	results, next, err := h.Store.Nodes(ctx, id, after, size)
	if err != nil {
		h.fail(w, "read node results", err)
		return
	}
	st.Results = results
	if st.Results == nil {
		st.Results = []store.NodeDoc{}
	}
	if next != "" {
		st.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	writeJSON(w, code, st)
}
