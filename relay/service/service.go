// Package service is the relay's one constructor: relay/cmd/relay, the
// in-process product (emulators/product: make run's tests, the bench and
// the browser tests) and tests build the relay with New from a
// relay/config.Config, so what is tested is what runs.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodebatch/nodebatch/relay"
	"github.com/nodebatch/nodebatch/relay/config"
	"github.com/nodebatch/nodebatch/relay/ui"
	"github.com/nodebatch/nodebatch/shared/auth"
	"github.com/nodebatch/nodebatch/shared/fsclient"
	"github.com/nodebatch/nodebatch/shared/kubeclient"
	"github.com/nodebatch/nodebatch/shared/ratelimit"
	"github.com/nodebatch/nodebatch/shared/store"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Service is a relay built from its settings.
type Service struct {
	// Relay is the relay configuration New built: relay.New(Relay) makes
	// a fresh server over the same clients (the product's RestartRelay).
	Relay relay.Config
	// Server is the relay server New started from Relay.
	Server *relay.Server

	closers []func() error
}

// Option replaces a client New would build from the settings; only the
// in-process product and tests use them.
type Option func(*options)

type options struct {
	kube *rest.Config
	tel  *telemetry.Telemetry
}

// WithKube makes GET /v1/nodes list through rc (nodebatch's own identity,
// impersonating the signed-in user) instead of Config.Kubeconfig.
func WithKube(rc *rest.Config) Option { return func(o *options) { o.kube = rc } }

// WithTelemetry makes the relay record its metrics (and serve /metrics)
// with tel; its owner shuts tel down.
func WithTelemetry(tel *telemetry.Telemetry) Option { return func(o *options) { o.tel = tel } }

// New builds the relay from cfg: the token verifier, its own Firestore
// client and the watchers' feed over it (store.Feed), the UI with
// /config.json, the API proxy, and GET /v1/nodes when a Kubernetes
// identity is configured. Close releases the clients (after the server's
// Shutdown).
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (*Service, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	acfg := cfg.Auth
	acfg.Logger = logger
	verifier, err := auth.NewVerifier(ctx, acfg)
	if err != nil {
		return nil, fmt.Errorf("create verifier: %w", err)
	}
	fs, err := fsclient.New(ctx, cfg.Project)
	if err != nil {
		return nil, fmt.Errorf("create Firestore client for %s: %w", cfg.Project, err)
	}
	s := &Service{closers: []func() error{fs.Close}}
	s.Relay = relay.Config{
		MaxTicketsPerUser: cfg.MaxTicketsPerUser,
		MaxConnsPerUser:   cfg.MaxConnsPerUser,
		Source:            store.NewFeed(fs, logger),
		Verifier:          verifier,
		Logger:            logger,
		AllowedOrigins:    cfg.AllowedOrigins,
		SeedTokenQuery:    cfg.SeedTokenQuery,
		APIURL:            cfg.APIURL,
		UI:                ui.FS(),
		Handlers:          map[string]http.Handler{"GET /config.json": ui.ConfigHandler(cfg.UI())},
		Telemetry:         o.tel,
	}
	rc := o.kube
	if rc == nil && cfg.Kubeconfig != "" {
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			s.Close()
			return nil, fmt.Errorf("load KUBECONFIG: %w", err)
		}
	}
	if rc != nil {
		nodes, err := NodesHandler(rc, nodesLimiter(cfg))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Relay.Handlers["GET /v1/nodes"] = auth.Middleware(verifier, nodes)
	}
	s.Server = relay.New(s.Relay)
	return s, nil
}

// Close closes the clients New created. Shut the server down first.
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
	s.closers = nil
}

// nodesLimiter is the per-user limit on node lists, nil (none) when
// NodesPerMinute is 0.
func nodesLimiter(cfg config.Config) *ratelimit.Limiter {
	if cfg.NodesPerMinute == 0 {
		return nil
	}
	return ratelimit.New(ratelimit.Config{PerMinute: cfg.NodesPerMinute, Burst: cfg.NodesBurst})
}

// NodesHandler serves the UI's node list (behind auth.Middleware) as the
// signed-in user: the relay's own identity rc may only impersonate (to list
// nodes: infra/k8s/impersonator-viewer.yaml), so the table shows what that
// user may list; lim, when not nil, is the per-user limit around it.
func NodesHandler(rc *rest.Config, lim *ratelimit.Limiter) (http.Handler, error) {
	users, err := kubeclient.New(rc)
	if err != nil {
		return nil, fmt.Errorf("create kube pool: %w", err)
	}
	h := users.Handler(caller, ui.NodesHandler)
	if lim == nil {
		return h, nil
	}
	return ui.LimitNodes(lim, h), nil
}

// caller is the request's principal as Kubernetes sees them (set by
// auth.Middleware); a principal without a Kubernetes user maps to none, and
// the pool answers 403 without calling the API server.
func caller(r *http.Request) kubeclient.User {
	p, _ := auth.FromContext(r.Context())
	return kubeclient.User{Name: p.KubeUser, Groups: p.KubeGroups}
}
