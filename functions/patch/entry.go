package patch

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/nodebatch/nodebatch/functions/config"
	"github.com/nodebatch/nodebatch/functions/deps"

	"github.com/nodebatch/nodebatch/shared/logging"
	"github.com/nodebatch/nodebatch/shared/telemetry"
)

// New is the patch function's one constructor (the dead-letter entry point
// is the same handler): the production main (functions/cmd/serve), the
// Cloud Run entry points, the in-process product and the pipeline tests
// build it from cfg (config.Load). opts replace clients, never settings
// (deps.Option). The caller owns the returned close function.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...deps.Option) (*Handler, func(), error) {
	d, err := deps.New(ctx, cfg, logger, opts...)
	if err != nil {
		return nil, nil, err
	}
	return &Handler{Runner: d.Runner, Logger: logger, Telemetry: d.Telemetry}, func() { _ = d.Close() }, nil
}

// FromEnv loads the settings through getenv (config.Load) and builds the
// handler with New.
func FromEnv(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*Handler, func(), error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	tel, err := telemetry.Setup(ctx, getenv, telemetry.WithService("nodebatch-patch"))
	if err != nil {
		return nil, nil, err
	}
	logger = logging.Traced(logger, tel.Project())
	h, closeFn, err := New(ctx, cfg, logger, deps.WithTelemetry(tel))
	if err != nil {
		_ = tel.Shutdown(context.Background())
		return nil, nil, err
	}
	return h, func() { closeFn(); _ = tel.Shutdown(context.Background()) }, nil
}

// entry is the Cloud Run entry points' handler, built once, on first use,
// from the environment (Cloud Run functions have no main of ours).
var entry = sync.OnceValues(func() (*Handler, error) {
	h, _, err := FromEnv(context.Background(), os.Getenv, entryLogger())
	return h, err
})

var entryLogger = sync.OnceValue(func() *slog.Logger {
	return logging.New(os.Stderr, logging.ParseLevel(os.Getenv("NODEBATCH_LOG_LEVEL")))
})

// The entry points are HTTP functions serving HTTPHandler, not
// functions.CloudEvent: the framework's CloudEvent path can wedge after a
// caller hangs up (see HTTPHandler). HTTPHandler takes both the push
// envelope a push subscription sends and a CloudEvent.
func init() {
	functions.HTTP("Patch", serve(func(h *Handler) func(context.Context, event.Event) error { return h.Patch }))
	functions.HTTP("DeadLetter", serve(func(h *Handler) func(context.Context, event.Event) error { return h.DeadLetter }))
}

// serve builds the entry point's handler on its first request.
func serve(pick func(*Handler) func(context.Context, event.Event) error) http.HandlerFunc {
	handler := sync.OnceValues(func() (http.Handler, error) {
		h, err := entry()
		if err != nil {
			return nil, err
		}
		hh, err := HTTPHandler(context.Background(), pick(h))
		return h.Telemetry.Handler(hh, "patch"), err
	})
	return func(w http.ResponseWriter, r *http.Request) {
		hh, err := handler()
		if err != nil {
			entryLogger().Error("patch function cannot start", "error", err)
			http.Error(w, "patch function cannot start", http.StatusInternalServerError)
			return
		}
		hh.ServeHTTP(w, r)
	}
}
