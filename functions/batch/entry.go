package batch

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"
	"github.com/nodebatch/nodebatch/shared/auth"

	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// FromDeps returns the API handler wired to d, publishing to d.Config.Topic.
// stop flushes and stops the publisher.
func FromDeps(d *deps.Deps, logger *slog.Logger) (h *Handler, stop func()) {
	pub := NewTopicPublisher(d.PubSub, d.Config.Topic)
	return &Handler{
		Store:        d.Store,
		Kube:         d.Kube,
		Users:        d.Users,
		Publisher:    pub,
		Runner:       d.Runner,
		Limits:       d.Config.Limits(),
		Protection:   d.Config.Protection(),
		InlineMax:    d.Config.InlineMax,
		BodyLimit:    d.Config.BodyLimit,
		RateLimit:    d.Config.RateLimiter(),
		PreviewLimit: d.Config.PreviewLimiter(),
		Guard:        Guard{ConfirmOver: d.Config.Guard.ConfirmOver, SeedNoExecuteOff: !d.Config.Guard.SeedNoExecute},
		WaitMax:      time.Duration(d.Config.SeedWaitSeconds) * time.Second,
		WaitPerUser:  d.Config.SeedWaiters,
		Logger:       logger,
		Telemetry:    d.Telemetry,
	}, pub.Stop
}

// Serve builds the authenticated API from the environment read through
// getenv: the handler behind auth.Middleware. The caller owns the returned
// close function.
func Serve(ctx context.Context, getenv func(string) string, logger *slog.Logger) (http.Handler, func(), error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	acfg, err := auth.LoadConfig(getenv)
	if err != nil {
		return nil, nil, err
	}
	acfg.Logger = logger
	v, err := auth.NewVerifier(ctx, acfg)
	if err != nil {
		return nil, nil, err
	}
	tel, err := telemetry.Setup(ctx, getenv, telemetry.WithService("nodebatch-api"))
	if err != nil {
		return nil, nil, err
	}
	logger = logging.Traced(logger, tel.Project())
	d, err := deps.New(ctx, cfg, logger, deps.WithTelemetry(tel))
	if err != nil {
		return nil, nil, err
	}
	h, stop := FromDeps(d, logger)
	// Outermost: the request's span (and GET /metrics), so auth's answers
	// are traced too.
	return tel.Handler(auth.Middleware(v, h), "api"), func() { stop(); _ = d.Close(); _ = tel.Shutdown(context.Background()) }, nil
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
