package batch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"
	"github.com/nodebatch/nodebatch/shared/auth"

	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// Service is the batch function built from its settings: the API handler,
// the authenticated handler that is served, and the clients they use.
type Service struct {
	// Handler is the API behind HTTP. Tests and the in-process product may
	// set its fields that have no setting (CancelWait, Now, a Publisher
	// wrapping the real one) before serving; settings come from config.
	Handler *Handler
	// HTTP is Handler behind auth.Middleware: what mains and entry points
	// serve.
	HTTP http.Handler
	// Deps are the clients (Firestore, Kubernetes) Handler uses; the
	// Pub/Sub client is the publisher's (closed by Close).
	Deps *deps.Deps

	stop func()
}

// New is the batch function's one constructor: the production main
// (functions/cmd/serve), the Cloud Run entry point, the in-process product
// (emulators/product, behind make run's bench and browser tests) and the
// pipeline tests all build the API with it, from cfg (config.Load) and acfg
// (auth.LoadConfig). opts replace clients, never settings (deps.Option).
// Close releases what it built.
func New(ctx context.Context, cfg config.Config, acfg auth.Config, logger *slog.Logger, opts ...deps.Option) (*Service, error) {
	acfg.Logger = logger
	v, err := auth.NewVerifier(ctx, acfg)
	if err != nil {
		return nil, err
	}
	d, err := deps.New(ctx, cfg, logger, opts...)
	if err != nil {
		return nil, err
	}
	// Pub/Sub (honouring PUBSUB_EMULATOR_HOST) is this function's alone.
	ps, err := pubsub.NewClient(ctx, cfg.Project)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("pubsub client for %s: %w", cfg.Project, err)
	}
	pub := NewTopicPublisher(ps, cfg.Topic)
	h := &Handler{
		Store:        d.Store,
		Kube:         d.Kube,
		Users:        d.Users,
		Publisher:    pub,
		Runner:       d.Runner,
		Limits:       cfg.Limits(),
		Protection:   cfg.Protection(),
		InlineMax:    cfg.InlineMax,
		BodyLimit:    cfg.BodyLimit,
		RateLimit:    cfg.RateLimiter(),
		PreviewLimit: cfg.PreviewLimiter(),
		Guard:        Guard{ConfirmOver: cfg.Guard.ConfirmOver, SeedNoExecuteOff: !cfg.Guard.SeedNoExecute},
		WaitMax:      time.Duration(cfg.SeedWaitSeconds) * time.Second,
		WaitPerUser:  cfg.SeedWaiters,
		Logger:       logger,
		Telemetry:    d.Telemetry,
	}
	// Outermost: the request's span (and GET /metrics), so auth's answers
	// are traced too. A nil Telemetry serves the handler as it is.
	return &Service{Handler: h, HTTP: d.Telemetry.Handler(auth.Middleware(v, h), "api"), Deps: d, stop: func() { pub.Stop(); _ = ps.Close() }}, nil
}

// Close flushes and stops the publisher, closes its Pub/Sub client, and
// closes the clients.
func (s *Service) Close() {
	s.stop()
	_ = s.Deps.Close()
}

// Serve loads the settings through getenv (config.Load, auth.LoadConfig)
// and builds the API with New. The caller owns the returned close function.
func Serve(ctx context.Context, getenv func(string) string, logger *slog.Logger) (http.Handler, func(), error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	acfg, err := auth.LoadConfig(getenv)
	if err != nil {
		return nil, nil, err
	}
	tel, err := telemetry.Setup(ctx, getenv, telemetry.WithService("nodebatch-api"))
	if err != nil {
		return nil, nil, err
	}
	logger = logging.Traced(logger, tel.Project())
	s, err := New(ctx, cfg, acfg, logger, deps.WithTelemetry(tel))
	if err != nil {
		_ = tel.Shutdown(context.Background())
		return nil, nil, err
	}
	return s.HTTP, func() { s.Close(); _ = tel.Shutdown(context.Background()) }, nil
}

// entry is the Cloud Run entry point's handler, built once, on first use,
// from the environment (Cloud Run functions have no main of ours).
var entry = sync.OnceValues(func() (http.Handler, error) {
	logger := logging.New(os.Stderr, logging.ParseLevel(os.Getenv("NODEBATCH_LOG_LEVEL")))
	h, _, err := Serve(context.Background(), os.Getenv, logger)
	return h, err
})

func init() {
	functions.HTTP("Batch", func(w http.ResponseWriter, r *http.Request) {
		h, err := entry()
		if err != nil {
			slog.Error("batch function setup", "error", err)
			http.Error(w, "batch function is misconfigured", http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}
