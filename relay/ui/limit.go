package ui

import (
	"net/http"

	"github.com/nodebatch/nodebatch/shared/apierror"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
)

// Defaults of the per-user limit on GET /v1/nodes (per relay instance).
const (
	DefaultNodesPerMinute = 60
	DefaultNodesBurst     = 20
)

// NodesLimit is the limit's name in a refusal.
const NodesLimit = "nodes_per_user_per_minute"

// LimitNodes limits each user's node lists with lim (one token bucket per
// token subject): every list pages through every node on the API server, so
// one user must not be able to keep it busy for everyone. A refusal is 429
// rate_limited with Retry-After, shaped like the API's. Mount it inside
// auth.Middleware, which puts the principal in the context; a request
// without one passes through (the handler behind refuses it anyway).
func LimitNodes(lim *ratelimit.Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if allowed, wait := lim.Allow(p.Subject); !allowed {
			l := apierror.Limit{Name: NodesLimit, PerMinute: lim.PerMinute(), Burst: lim.Burst(), RetryAfter: wait}
			apierror.Write(w, apierror.Limited(l, "too many node lists: at most %d per minute per user (bursts of %d); retry in %d s", lim.PerMinute(), lim.Burst(), l.RetryAfterSeconds()))
			return
		}
		next.ServeHTTP(w, r)
	})
}
