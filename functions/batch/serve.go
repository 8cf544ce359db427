package batch

import (
	"errors"
	"net/http"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
)

// serve adapts a handler that returns its error answer: the error is
// written by apierror.Write, and a backend failure's cause (never shown to
// the client) is logged here, once.
func (h *Handler) serve(f apierror.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		e := apierror.From(err)
		if cause := errors.Unwrap(e); cause != nil && e.Status() >= 500 {
			h.logger().Error(e.Message, "error", cause)
		}
		apierror.Write(w, e)
	})
}

// failed is the answer to a backend failure during op: 503, safe to retry.
func failed(op string, err error) *apierror.Error {
	return apierror.Wrap(apierror.Unavailable, err, "%s failed; try again", op)
}

// principal is the caller; 401 without one.
func principal(r *http.Request) (auth.Principal, error) {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.Subject == "" {
		return p, apierror.New(apierror.Unauthenticated, "a bearer token is required")
	}
	return p, nil
}
