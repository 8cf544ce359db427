// Package kubeclient builds Kubernetes clients that act for a person: every
// request carries Impersonate-User, Impersonate-Group and, for a batch,
// the extra nodebatch.dev/batch-id, so the API server's RBAC, admission
// policies and audit log see the person (and the batch), while nodebatch's
// own identity only holds the right to impersonate.
//
// All clients of a Pool share ONE base transport (one TLS connection pool)
// and one client-side rate limiter: impersonation is a header added by a
// round tripper in front of that transport, never a connection per user or
// per node.
package kubeclient

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/flowcontrol"
)

// BatchIDExtra is the user extra that carries the batch id. Its header is
// Impersonate-Extra-nodebatch.dev%2Fbatch-id (client-go escapes the "/").
const BatchIDExtra = "nodebatch.dev/batch-id"

// User is a person as the API server will see them: the user name and
// groups of auth.Principal's Kubernetes mapping.
type User struct {
	Name   string
	Groups []string
}

// String is "name" or "name (groups a, b)", for messages.
func (u User) String() string {
	if len(u.Groups) == 0 {
		return u.Name
	}
	return u.Name + " (groups " + strings.Join(u.Groups, ", ") + ")"
}

// ErrNoUser means a client was asked for without a user name: nodebatch
// never sends a request for a person under its own identity.
var ErrNoUser = errors.New("no Kubernetes user to impersonate")

// maxCached bounds the clients kept for reuse; past it the cache starts
// over (a clientset is cheap to build again, the transport is shared).
const maxCached = 512

// Pool hands out impersonating clients over one shared transport.
type Pool struct {
	cfg  *rest.Config      // nodebatch's own identity, with the shared rate limiter
	base http.RoundTripper // the one transport (TLS, nodebatch's credentials)

	mu    sync.Mutex
	cache map[string]kubernetes.Interface
}

// New returns a pool over cfg (nodebatch's own identity). cfg must not set
// Impersonate itself. One rate limiter built from cfg.QPS/Burst is shared
// by every client of the pool.
func New(cfg *rest.Config) (*Pool, error) {
	if cfg.Impersonate.UserName != "" || len(cfg.Impersonate.Groups) > 0 || len(cfg.Impersonate.Extra) > 0 {
		return nil, errors.New("kubeclient: the base config must not impersonate")
	}
	c := rest.CopyConfig(cfg)
	if c.RateLimiter == nil && c.QPS > 0 {
		burst := c.Burst
		if burst <= 0 {
			burst = rest.DefaultBurst
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, burst)
	}
	base, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubeclient: build transport: %w", err)
	}
	return &Pool{cfg: c, base: base, cache: map[string]kubernetes.Interface{}}, nil
}

// Transport is the pool's one shared base transport.
func (p *Pool) Transport() http.RoundTripper { return p.base }

// RoundTripper returns the impersonating round tripper for u (and batchID
// as the extra BatchIDExtra when not empty) in front of the shared
// transport.
func (p *Pool) RoundTripper(u User, batchID string) (http.RoundTripper, error) {
	ic, err := impersonation(u, batchID)
	if err != nil {
		return nil, err
	}
	return transport.NewImpersonatingRoundTripper(ic, p.base), nil
}

// Client returns a clientset acting as u, with batchID (if not empty) as
// the extra BatchIDExtra. Clients are cached per (user, groups, batch).
func (p *Pool) Client(u User, batchID string) (kubernetes.Interface, error) {
	key := cacheKey(u, batchID)
	p.mu.Lock()
	c, ok := p.cache[key]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	rt, err := p.RoundTripper(u, batchID)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: rt, Timeout: p.cfg.Timeout}
	cs, err := kubernetes.NewForConfigAndClient(p.cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("kubeclient: client for %s: %w", u.Name, err)
	}
	p.mu.Lock()
	if len(p.cache) >= maxCached {
		clear(p.cache)
	}
	p.cache[key] = cs
	p.mu.Unlock()
	return cs, nil
}

func impersonation(u User, batchID string) (transport.ImpersonationConfig, error) {
	if u.Name == "" {
		return transport.ImpersonationConfig{}, fmt.Errorf("kubeclient: %w", ErrNoUser)
	}
	ic := transport.ImpersonationConfig{UserName: u.Name, Groups: slices.Clone(u.Groups)}
	if batchID != "" {
		ic.Extra = map[string][]string{BatchIDExtra: {batchID}}
	}
	return ic, nil
}

func cacheKey(u User, batchID string) string {
	var b strings.Builder
	b.WriteString(batchID)
	b.WriteByte(0)
	b.WriteString(u.Name)
	for _, g := range u.Groups {
		b.WriteByte(0)
		b.WriteString(g)
	}
	return b.String()
}

// Handler serves each request with the handler newHandler builds over a
// client acting as who(r) (for example the UI's node list, as the
// signed-in user). A request whose caller maps to no user is answered 403
// with a JSON error, and nothing reaches the API server.
func (p *Pool) Handler(who func(*http.Request) User, newHandler func(kubernetes.Interface) http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := p.Client(who(r), "")
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "{\"error\":{\"code\":\"forbidden\",\"message\":%q}}\n", "cannot act for you on the cluster: "+err.Error())
			return
		}
		newHandler(c).ServeHTTP(w, r)
	})
}
