package batch

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/model"
	"github.com/nodebatch/nodebatch/shared/request"
	"github.com/nodebatch/nodebatch/shared/store"
)

// History page sizes.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 100
)

var knownStates = map[model.State]bool{
	model.StatePending: true, model.StateRunning: true, model.StateSucceeded: true,
	model.StatePartiallyFailed: true, model.StateFailed: true, model.StateCancelled: true,
}

func badQuery(name, value, reason string) error {
	return apierror.Field(apierror.Malformed, name, value, reason, "%s: %s", name, reason)
}

// history answers GET /v1/batches?state=&limit=&page_token=&all=: the
// caller's batches newest first; all=true lists everyone's (admins only).
func (h *Handler) history(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := principal(r)
	if err != nil {
		return err
	}
	qv := r.URL.Query()
	q := store.HistoryQuery{Owner: p.Subject, Limit: DefaultHistoryLimit}
	if v := qv.Get("all"); v != "" {
		all, err := strconv.ParseBool(v)
		if err != nil {
			return badQuery("all", v, "must be true or false")
		}
		if all && !p.Admin {
			return apierror.New(apierror.Forbidden, "only admins may list everyone's batches")
		}
		if all {
			q.Owner = ""
		}
	}
	if v := qv.Get("state"); v != "" {
		if !knownStates[model.State(v)] {
			return badQuery("state", v, "unknown state")
		}
		q.State = model.State(v)
	}
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxHistoryLimit {
			return badQuery("limit", v, "must be an integer in [1, "+strconv.Itoa(MaxHistoryLimit)+"]")
		}
		q.Limit = n
	}
	if v := qv.Get("page_token"); v != "" {
		c, err := decodeCursor(v)
		if err != nil {
			return badQuery("page_token", v, "not a token from next_page_token")
		}
		q.After = c
	}
	batches, next, err := h.Store.History(ctx, q)
	if err != nil {
		return failed("list batches", err)
	}
	page := HistoryPage{Batches: make([]Summary, 0, len(batches))}
	for i := range batches {
		b := &batches[i]
		counts := b.Counts
		if !b.State.Final() {
			// Live counts: O(lanes) reads, only for batches still running.
			if lanes, err := h.Store.Lanes(ctx, b.ID, 0); err == nil {
				counts = store.Counts(b, lanes)
			}
		}
		page.Batches = append(page.Batches, summaryOf(b, counts))
	}
	if next != nil {
		page.NextPageToken = encodeCursor(next)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// encodeCursor is the page token of a history cursor: base64url JSON.
func encodeCursor(c *store.Cursor) string {
	raw, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// decodeCursor reads a page token made by encodeCursor. The token comes from
// the client: anything else is refused (it is decoded as strictly as a
// body), and the id must be one we could have made (model.ValidateID),
// since it becomes a Firestore cursor value.
func decodeCursor(tok string) (*store.Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("decode page token: %w", err)
	}
	var c store.Cursor
	if e := request.Decode(bytes.NewReader(raw), &c); e != nil {
		return nil, fmt.Errorf("decode page token: %w", e)
	}
	if model.ValidateID(c.ID) != nil || c.CreatedAt.IsZero() {
		return nil, errors.New("decode page token: not a history position")
	}
	return &c, nil
}
